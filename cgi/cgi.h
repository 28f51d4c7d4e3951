/* imgpipe.cgi, the HTTP endpoint (RFC 3875), laid out as cgit is: cgi.c reads the request
 * and routes it; home.c, upload.c, status.c, control.c (retry, cancel), healthz.c and
 * metrics.c (with backend.h's bounded connections) answer; for a browser, ui-*.c render
 * the web pages (ui.h) and html.c alone writes their markup (html.h); multipart.c reads
 * request bodies with GMime; reply.c writes responses; access.c decides who may ask, and
 * redact.c what a status shows.  Jobs go to the dispatcher through the library's queue
 * (queue.h). */
#ifndef IMGPIPE_CGI_H
#define IMGPIPE_CGI_H

#include <stddef.h>
#include "imgpipe.h"

#define BATCH_ID_LEN 32                 /* 128 random bits, lowercase hex */
#define OWNER_LEN 64                    /* a token's SHA-256, lowercase hex */

/* One request, from the CGI meta-variables. */
struct request {
	const char *method;             /* REQUEST_METHOD */
	const char *path;               /* PATH_INFO, "" when unset */
	const char *query;              /* QUERY_STRING, "" when unset */
	const char *content_type;       /* CONTENT_TYPE, NULL when unset or empty */
	const char *content_length;     /* CONTENT_LENGTH, NULL when unset or empty */
	const struct config *cfg;
	/* Whose batches the request may see and make: its token's digest (never the token),
	 * or NULL when the endpoint is open (IMGPIPE_API_TOKENS unset). */
	const char *owner;
	char owner_hex[OWNER_LEN + 1];  /* owner's storage */
};

/* The variable's value, or NULL when unset or empty (RFC 3875 treats both alike). */
const char *meta(const char *name);

/* ---- access (access.c) ----
 * Whether the request may go on: with IMGPIPE_API_TOKENS, a valid token (then sets
 * rq->owner), and for a POST that a browser sends, a page of this endpoint's own origin.
 * Returns 1, or 0 once it has answered 401, 403 or 500. */
int access_allow(struct request *rq);

/* ---- what a status shows (redact.c) ----
 * Copies in to out (initialised by the caller), masking the credentials of every URL in
 * its strings: in "https://user:secret@host/", "user:secret" becomes "***". */
void redact_credentials(const bson_t *in, bson_t *out);

/* Handlers; rest is what follows the route's prefix in the path. */
void home(const struct request *rq, const char *rest);
void upload(const struct request *rq, const char *rest);
void status(const struct request *rq, const char *rest);
void retry(const struct request *rq, const char *rest);         /* control.c */
void cancel(const struct request *rq, const char *rest);        /* control.c */
void healthz(const struct request *rq, const char *rest);
void metrics(const struct request *rq, const char *rest);

/* Whether id is one that upload.c makes (status.c); anything else (a path, a long id)
 * never reaches the database. */
int batch_id_valid(const char *id);
/* Whether the request's token (owner) made the batch (any batch, when the endpoint is
 * open; status.c); otherwise answers.  A batch of another token is as unknown as one
 * never made: 404. */
struct db;
int batch_owned(struct db *d, const char *id, const char *owner);

/* Whether the client asks for HTML (its Accept header names text/html, as browsers' do):
 * then answers and errors are web pages (ui.h), else JSON as before. */
int wants_html(void);

/* ---- query strings (cgi.c) ----
 * Splits query into name=value pairs.  Each name must be one of names (NULL-terminated)
 * and appear once; values[i] gets the percent-decoded value of names[i] (free with
 * query_free) or stays NULL.  Returns 0, or -1 with the reason in why. */
int query_parse(const char *query, const char *const *names, char **values,
		char *why, size_t whylen);
void query_free(const char *const *names, char **values);

/* ---- responses (reply.c) ----
 * extra is more header lines ("Name: value\n" each) or NULL. */
const char *http_reason(int status);
void reply(int status, const char *content_type, const char *extra,
	   const void *body, size_t len);
/* The header block of a body that is streamed as it is made, without Content-Length: the
 * web server chunks it, or ends it by closing the connection. */
void reply_start(int status, const char *content_type, const char *extra);
void reply_json(int status, const char *extra, const bson_t *doc);
/* {"error": message}, or an error page for a client that wants HTML; 5xx messages also
 * go to stderr, the server's error log. */
void reply_error(int status, const char *extra, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* 503 "BACKEND unavailable"; the detail, which names internal hosts and ports, goes to
 * stderr only. */
void reply_unavailable(const char *backend, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- request bodies (multipart.c) ---- */
enum body_type { BODY_UNSUPPORTED, BODY_CSV, BODY_FORM };

/* What content_type announces; for BODY_UNSUPPORTED why says what is accepted. */
enum body_type body_type(const char *content_type, char *why, size_t whylen);

/* The fields of a multipart/form-data upload. */
struct form {
	char *file;                     /* the part named "file"; NUL-terminated */
	size_t file_len;
	char *webhook_url;              /* the part named "webhook_url", or NULL */
	char *force;                    /* the part named "force", or NULL */
};

/* Reads a multipart/form-data body.  Returns 0, or -1 with a precise reason in why
 * (truncated, no boundary, a missing or doubled part).  Free f with form_free. */
int form_parse(const char *content_type, const char *body, size_t len, struct form *f,
	       char *why, size_t whylen);
void form_free(struct form *f);

#endif
