/* imgpipe's shared library: configuration, NDJSON on libbson, command-line basics.
 * Errors and logs go to stderr through <err.h> (warnx/errx print "tool: message");
 * exit codes are those of <sysexits.h>, as docs/design.md fixes them:
 *   EX_OK 0, EX_USAGE 64, EX_DATAERR 65, EX_UNAVAILABLE 69, EX_TEMPFAIL 75. */
#ifndef IMGPIPE_H
#define IMGPIPE_H

#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <sysexits.h>
#include <bson/bson.h>

/* ---- configuration (config.c) ----
 * Every tool reads the same environment names; unset optional ones get docs/design.md's defaults. */
struct config {
	const char *mongodb_uri;      /* MONGODB_URI */
	const char *redis_url;        /* REDIS_URL */
	const char *s3_endpoint;      /* S3_ENDPOINT */
	const char *s3_bucket;        /* S3_BUCKET, default "imgpipe" */
	const char *s3_public_url;    /* S3_PUBLIC_URL, default S3_ENDPOINT/S3_BUCKET */
	const char *aws_access_key;   /* AWS_ACCESS_KEY_ID */
	const char *aws_secret_key;   /* AWS_SECRET_ACCESS_KEY */
	const char *aws_region;       /* AWS_REGION, default "us-east-1" */
	const char *webhook_url;      /* WEBHOOK_URL */
	const char *webhook_secret;   /* WEBHOOK_SECRET */
	const char *home;             /* IMGPIPE_HOME, default "var" */
	const char *url;              /* IMGPIPE_URL */
	const char *api_tokens;       /* IMGPIPE_API_TOKENS: a file of access tokens; NULL: open */
	int allow_private;            /* IMGPIPE_ALLOW_PRIVATE=1 */
	int force;                    /* IMGPIPE_FORCE=1: every image made afresh, none reused */
	/* Limits; -1 when the variable is set but is not a positive number. */
	long max_upload;              /* IMGPIPE_MAX_UPLOAD, bytes, default 10 MiB */
	long max_images;              /* IMGPIPE_MAX_IMAGES, images a batch, default 100000 */
	long max_row_errors;          /* IMGPIPE_MAX_ROW_ERRORS, row errors kept on a batch,
	                               * default 1000, at most CONFIG_MAX_ROW_ERRORS_MAX */
	long host_connections;        /* IMGPIPE_HOST_CONNECTIONS, to one image host, default 8 */
	long webhook_retry_for;       /* IMGPIPE_WEBHOOK_RETRY_FOR, seconds a webhook delivery is
	                               * retried after it was queued, default 3600 */
};
#define CONFIG_MAX_ROW_ERRORS 1000          /* IMGPIPE_MAX_ROW_ERRORS when unset */
#define CONFIG_MAX_ROW_ERRORS_MAX 100000    /* keeps a batch document well under 16 MB */

/* Fills c from the environment.  The strings belong to c (free with config_free). */
void config_load(struct config *c);
void config_free(struct config *c);
/* Returns value, or exits EX_USAGE naming the variable when it is unset or empty. */
const char *config_require(const char *name, const char *value);

/* ---- NDJSON (ndjson.c) ----
 * One JSON object a line.  Lines are read into a bounded buffer: a line longer than
 * NDJSON_MAX_LINE is an error for that line, never a crash or a silent cut. */
#define NDJSON_MAX_LINE (1 << 20)

struct ndjson_reader {
	FILE *in;
	char *buf;
	size_t cap;
	unsigned long lineno;    /* line number of the record last returned */
};

void ndjson_reader_init(struct ndjson_reader *r, FILE *in);
void ndjson_reader_free(struct ndjson_reader *r);
/* Reads the next non-blank line.  Returns 1 and sets *doc (caller destroys it), 0 at end
 * of input, -1 when the line is not a JSON object (why is in err->message; *doc is NULL). */
int ndjson_read(struct ndjson_reader *r, bson_t **doc, bson_error_t *err);
/* Writes doc as one line of relaxed extended JSON.  Returns 0, or -1 on a write error. */
int ndjson_write(FILE *out, const bson_t *doc);
/* The record that stands for an input line that could not be read:
 * {"input_line": N, "error": "PROGRAM: input line N is not a JSON object: message"}
 * (caller destroys it). */
bson_t *ndjson_bad_line(unsigned long lineno, const char *message);

/* ---- records (ndjson.c) ---- */
/* The string value of key in doc, or NULL when absent or not a string. */
const char *rec_str(const bson_t *doc, const char *key);
/* The integer value of key (int32, int64 or an integral double), or fallback. */
int64_t rec_int(const bson_t *doc, const char *key, int64_t fallback);
/* Moves the array iterator it to its next document element, read into *doc (which
 * borrows its bytes); false at the end.  Elements that are not documents are passed over. */
bool rec_next_doc(bson_iter_t *it, bson_t *doc);
/* True when the record carries "error": stages pass such records through untouched. */
int rec_has_error(const bson_t *doc);
/* A copy of doc with "error" set to the formatted reason after the program's name, as
 * docs/design.md wants a stage's errors ("shrink: empty file"; caller destroys it).
 * To add fields, copy with bson_copy_to_excluding_noinit() and append. */
bson_t *rec_error(const bson_t *doc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- file descriptors (fdio.c) ---- */
/* Writes all of buf to fd, going on after EINTR and short writes; 0, or -1 with errno. */
int fd_write_all(int fd, const char *buf, size_t len);

/* ---- hex (hex.c) ---- */
/* Writes the n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). */
void hex_encode(const unsigned char *bytes, size_t n, char *out);

/* ---- command line (cli.c) ---- */
/* Handles --help and --version when argv[1] is one of them: prints usage (to stdout)
 * or "NAME VERSION" and exits 0.  Otherwise returns. */
void cli_common(int argc, char **argv, const char *usage);
/* getopt_long(3) as every tool uses it: returns the next option's code, or -1 after the
 * last; an unknown option or a missing value is a usage error ("--url wants a value"). */
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
	       const char *usage);
/* Prints usage to stderr and exits EX_USAGE. */
_Noreturn void cli_usage_error(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Parses a positive integer option value within [min, max], or exits EX_USAGE. */
long cli_long(const char *opt, const char *value, long min, long max);

#endif
