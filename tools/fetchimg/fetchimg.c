/* fetchimg: downloads the image behind each NDJSON record's "url", many at once.
 *
 * One curl multi handle runs up to --parallel transfers while stdin keeps being read, so
 * records stream through: each leaves on stdout as soon as its download ends.  Every
 * connection is checked by lib/netpolicy.c on the address actually connected, so neither
 * DNS tricks nor redirects reach loopback, private or metadata hosts; bodies are capped
 * while they stream, and hashed (SHA-256) as they are written; the type is sniffed from
 * the first bytes, never taken from the server.  Connections to one host are bounded over
 * every fetchimg of the machine (host_slot_take), and a 429 or 503's Retry-After is
 * honoured.  A record that dbrecord pending gave a "reuse" (what an earlier batch made of
 * the same URL) is asked for conditionally: a 304, or the same bytes again, reuses that
 * output instead of keeping a file for shrink and s3put (finish_reused). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "backoff.h"
#include "format.h"
#include "netpolicy.h"
#include "stage.h"

#define MAX_REDIRECTS  5
#define SPEED_LIMIT    1024   /* bytes a second; slower than this for --speed-time aborts */
#define BACKOFF_MS     500    /* first retry's wait, doubled each time (see backoff.h) */
#define BACKOFF_MAX_MS 30000
#define WAIT_MS        50     /* how often a download waiting for a host slot or a file looks again */

static const char usage[] =
	"usage: fetchimg [--parallel N] [--dir DIR] [--max-bytes N] [--timeout SEC]\n"
	"                [--connect-timeout SEC] [--speed-time SEC] [--retries N]\n"
	"                [--max-retry-after SEC] [--max-files N]\n"
	"Reads NDJSON records on stdin; each one with a \"url\" is downloaded and written to\n"
	"stdout with \"file\", \"sha256\", \"input_bytes\" and \"content_type\" added (and the\n"
	"server's \"etag\" and \"last_modified\"), or with \"error\".  A record with \"reuse\"\n"
	"is fetched with If-None-Match / If-Modified-Since: a 304 or the same bytes give it\n"
	"\"reused\": true and the reuse's output fields, and no file (and \"source_unchanged\":\n"
	"true when the validators and size are the reuse's too).  Records without \"url\"\n"
	"or carrying \"error\" pass through untouched.\n"
	"  --parallel N           downloads at once (default 8)\n"
	"  --dir DIR              directory for the files (default: the current one)\n"
	"  --max-bytes N          largest body accepted (default 52428800)\n"
	"  --timeout SEC          limit for a whole download, each try (default 120)\n"
	"  --connect-timeout SEC  limit for connecting (default 10)\n"
	"  --speed-time SEC       abort when slower than 1024 bytes/s this long (default 30)\n"
	"  --retries N            retries of a 5xx, 429, timeout or reset, with backoff (default 3)\n"
	"  --max-retry-after SEC  longest wait a 429 or 503's Retry-After gets (default 60)\n"
	"  --max-files N          start no download while N of the files written are still\n"
	"                         there (default: no limit; for s3put --remove-files downstream)\n"
	"Only http and https, at most 5 redirects.  Every address connected is checked first:\n"
	"loopback and private ones are refused unless IMGPIPE_ALLOW_PRIVATE=1; cloud metadata,\n"
	"link-local, multicast, broadcast, unspecified and reserved ones always.\n"
	"At most IMGPIPE_HOST_CONNECTIONS (default 8) downloads from one host at once, over\n"
	"all the fetchimg processes of this machine (lock files in $IMGPIPE_HOME/run/hosts).\n";

static struct {
	long parallel;
	const char *dir;          /* NULL: the current directory */
	long max_bytes;
	long timeout;
	long connect_timeout;
	long speed_time;
	long retries;
	long max_retry_after;
	long max_files;           /* 0: no limit */
	int allow_private;
	int host_connections;
	char *hosts_dir;          /* $IMGPIPE_HOME/run/hosts */
} opt = { 8, NULL, 50L << 20, 120, 10, 30, 3, 60, 0, 0, 8, NULL };

/* ---- what an image is ---- */

/* Says what a body that is no image starts with, for the error. */
static void describe(const unsigned char *b, size_t n, char *out, size_t cap)
{
	size_t i, len = 0;

	if (n == 0) {
		snprintf(out, cap, "empty body");
		return;
	}
	for (i = 0; i < n; i++)
		if ((b[i] < 0x20 && b[i] != '\t' && b[i] != '\n' && b[i] != '\r') || b[i] == 0x7f)
			break;
	if (i == n) {
		snprintf(out, cap, "starts with text");
		return;
	}
	len = (size_t)snprintf(out, cap, "starts with bytes");
	for (i = 0; i < n && i < 4 && len < cap; i++)
		len += (size_t)snprintf(out + len, cap - len, " %02x", b[i]);
}

/* ---- one download ---- */

/* One record being fetched: its transfer, its output file, and why it failed. */
struct job {
	bson_t *rec;
	const char *url;                   /* inside rec */
	CURL *h;
	size_t slot;
	long attempts;
	int64_t retry_at;                  /* monotonic ms; 0 while transferring */
	char errbuf[CURL_ERROR_SIZE];
	char *fail;                        /* why this try failed, once it did */
	struct netguard guard;             /* the address policy, on every connection */
	unsigned char head[FORMAT_SNIFF_BYTES];   /* kept until the type is sniffed */
	size_t headlen;
	curl_off_t bytes;                  /* body bytes received */
	const struct image_format *type;
	char *path;                        /* output file, once the type is known */
	int fd;
	EVP_MD_CTX *sha256;                /* of the bytes written to the file */
	char sha256_hex[65];               /* once the download has succeeded */
	int host_slot;                     /* locked lock file while transferring, else -1 */
	bson_t *reuse;                     /* the record's "reuse", taken out of rec; or NULL */
	struct curl_slist *conditions;     /* If-None-Match, If-Modified-Since from reuse */
	int not_modified;                  /* the answer was a 304 to those */
};

/* Records why the job's try failed; the first reason wins. */
static void __attribute__((format(printf, 2, 3))) job_fail(struct job *j, const char *fmt, ...)
{
	va_list ap;

	if (j->fail)
		return;
	va_start(ap, fmt);
	j->fail = bson_strdupv_printf(fmt, ap);
	va_end(ap);
}

/* The name a record's file gets, from its batch_id, serial_no and index, else NULL.
 * Only [A-Za-z0-9_-] survive of batch_id, so the name stays inside --dir. */
static char *file_stem(const bson_t *rec)
{
	const char *batch = rec_str(rec, "batch_id");
	int64_t serial = rec_int(rec, "serial_no", -1), index = rec_int(rec, "index", -1);
	char stem[128] = "";
	size_t len = 0;

	for (; batch && *batch && len < 64; batch++)
		stem[len++] = isalnum((unsigned char)*batch) || *batch == '-' ? *batch : '_';
	if (serial >= 0)
		len += (size_t)snprintf(stem + len, sizeof stem - len, "%s%lld", len ? "-" : "",
					(long long)serial);
	if (index >= 0)
		snprintf(stem + len, sizeof stem - len, "%s%lld", len ? "-" : "", (long long)index);
	return stem[0] ? bson_strdup(stem) : NULL;
}

/* Creates the job's file, never over an existing one: STEM.EXT when free, else
 * STEM-XXXXXX.EXT with a random part.  Returns -1 with j->fail set on failure. */
static int create_file(struct job *j)
{
	char *stem = file_stem(j->rec);
	const char *dir = opt.dir ? opt.dir : "";
	const char *slash = *dir && dir[strlen(dir) - 1] != '/' ? "/" : "";
	const char *ext = j->type->suffix;

	if (stem) {
		j->path = bson_strdup_printf("%s%s%s.%s", dir, slash, stem, ext);
		j->fd = open(j->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (j->fd < 0 && errno == EEXIST) {
			bson_free(j->path);
			j->path = NULL;
		}
	}
	if (!j->path) {
		j->path = bson_strdup_printf("%s%s%s-XXXXXX.%s", dir, slash, stem ? stem : "image", ext);
		j->fd = mkostemps(j->path, (int)strlen(ext) + 1, O_CLOEXEC);
		if (j->fd >= 0 && fchmod(j->fd, 0644) != 0) {
			int e = errno;
			close(j->fd);
			unlink(j->path);
			j->fd = -1;
			errno = e;
		}
	}
	bson_free(stem);
	if (j->fd < 0) {
		job_fail(j, "cannot create %s: %s", j->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Writes to the job's file, hashing what it writes. */
static int write_all(struct job *j, const void *buf, size_t len)
{
	const char *p = buf;

	if (!EVP_DigestUpdate(j->sha256, buf, len)) {
		job_fail(j, "SHA-256 failed");
		return -1;
	}
	while (len > 0) {
		ssize_t n = write(j->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			job_fail(j, "cannot write %s: %s", j->path, strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sniffs the head; for an image creates the file and writes the head into it. */
static int start_file(struct job *j)
{
	char what[64];

	j->type = format_sniff(j->head, j->headlen);
	if (!j->type) {
		describe(j->head, j->headlen, what, sizeof what);
		job_fail(j, "not an image (%s)", what);
		return -1;
	}
	if (create_file(j) != 0)
		return -1;
	if (!EVP_DigestInit_ex(j->sha256, EVP_sha256(), NULL)) {
		job_fail(j, "SHA-256 failed");
		return -1;
	}
	return write_all(j, j->head, j->headlen);
}

/* The hex SHA-256 of what was written, for content-addressed keys downstream. */
static int finish_sha256(struct job *j)
{
	unsigned char sum[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!EVP_DigestFinal_ex(j->sha256, sum, &len) || len != 32) {
		job_fail(j, "SHA-256 failed");
		return -1;
	}
	hex_encode(sum, len, j->sha256_hex);
	return 0;
}

/* Removes the file of a failed download. */
static void drop_file(struct job *j)
{
	if (j->fd >= 0) {
		close(j->fd);
		j->fd = -1;
	}
	if (j->path) {
		unlink(j->path);
		bson_free(j->path);
		j->path = NULL;
	}
}

static long response_code(struct job *j)
{
	long code = 0;
	curl_easy_getinfo(j->h, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

static int is_2xx(struct job *j)
{
	long code = response_code(j);
	return code >= 200 && code <= 299;
}

/* Streams the body: the first bytes to the head until it can be sniffed, the rest to the
 * file.  Returning less than given aborts the transfer (too large, no image, disk). */
static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	struct job *j = p;
	size_t len = size * n, take;

	if (j->bytes + (curl_off_t)len > opt.max_bytes) {
		job_fail(j, "larger than %ld bytes", opt.max_bytes);
		return 0;
	}
	j->bytes += (curl_off_t)len;
	if (!is_2xx(j))
		return len;    /* an error page: only its status matters */
	if (j->fd < 0) {
		take = len < FORMAT_SNIFF_BYTES - j->headlen ? len : FORMAT_SNIFF_BYTES - j->headlen;
		memcpy(j->head + j->headlen, data, take);
		j->headlen += take;
		if (j->headlen < FORMAT_SNIFF_BYTES)
			return len;
		if (start_file(j) != 0)
			return 0;
		return write_all(j, data + take, len - take) == 0 ? len : 0;
	}
	return write_all(j, data, len) == 0 ? len : 0;
}

#define SETOPT(h, o, v) do { \
		if (curl_easy_setopt(h, o, v) != CURLE_OK) \
			errx(EX_SOFTWARE, "curl_easy_setopt(%s) failed", #o); \
	} while (0)

/* A header line "NAME: VALUE" for a validator of reuse, added to *list; none when reuse
 * lacks it or it holds a control character (it came from a server, once). */
static void add_condition(struct curl_slist **list, const char *name, const bson_t *reuse,
			  const char *field)
{
	const char *value = rec_str(reuse, field);
	struct curl_slist *longer;
	char *line;

	if (!value || !*value)
		return;
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return;
	line = bson_strdup_printf("%s: %s", name, value);
	if (!(longer = curl_slist_append(*list, line)))
		errx(EX_SOFTWARE, "curl_slist_append failed");
	*list = longer;
	bson_free(line);
}

/* Takes the record's "reuse" out of it into j->reuse, and asks with its validators: the
 * record then leaves without it, whatever the answer. */
static void take_reuse(struct job *j)
{
	bson_iter_t it;
	uint32_t len;
	const uint8_t *data;
	bson_t *rest;

	if (!bson_iter_init_find(&it, j->rec, "reuse") || !BSON_ITER_HOLDS_DOCUMENT(&it))
		return;
	bson_iter_document(&it, &len, &data);
	if (!(j->reuse = bson_new_from_data(data, len)))
		errx(EX_SOFTWARE, "cannot read a record's reuse");
	rest = bson_new();
	bson_copy_to_excluding_noinit(j->rec, rest, "reuse", NULL);
	bson_destroy(j->rec);
	j->rec = rest;
	j->url = rec_str(rest, "url");
	add_condition(&j->conditions, "If-None-Match", j->reuse, "etag");
	add_condition(&j->conditions, "If-Modified-Since", j->reuse, "last_modified");
}

static struct job *job_new(bson_t *rec, size_t slot)
{
	struct job *j = bson_malloc0(sizeof *j);
	static const char agent[] = "fetchimg/" IMGPIPE_VERSION;

	j->rec = rec;
	j->url = rec_str(rec, "url");
	j->slot = slot;
	j->fd = -1;
	j->host_slot = -1;
	if (!(j->h = curl_easy_init()))
		errx(EX_SOFTWARE, "curl_easy_init failed");
	if (!(j->sha256 = EVP_MD_CTX_new()))
		errx(EX_SOFTWARE, "EVP_MD_CTX_new failed");
	take_reuse(j);
	if (j->conditions)
		SETOPT(j->h, CURLOPT_HTTPHEADER, j->conditions);
	SETOPT(j->h, CURLOPT_URL, j->url);
	SETOPT(j->h, CURLOPT_PRIVATE, j);
	SETOPT(j->h, CURLOPT_ERRORBUFFER, j->errbuf);
	SETOPT(j->h, CURLOPT_USERAGENT, agent);
	SETOPT(j->h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(j->h, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(j->h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SETOPT(j->h, CURLOPT_FOLLOWLOCATION, 1L);
	SETOPT(j->h, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
	j->guard.allow_private = opt.allow_private;
	if (netguard_attach(j->h, &j->guard) != 0)
		errx(EX_SOFTWARE, "cannot set the address policy on a curl handle");
	SETOPT(j->h, CURLOPT_FAILONERROR, 1L);
	SETOPT(j->h, CURLOPT_CONNECTTIMEOUT, opt.connect_timeout);
	SETOPT(j->h, CURLOPT_TIMEOUT, opt.timeout);
	SETOPT(j->h, CURLOPT_LOW_SPEED_LIMIT, (long)SPEED_LIMIT);
	SETOPT(j->h, CURLOPT_LOW_SPEED_TIME, opt.speed_time);
	SETOPT(j->h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)opt.max_bytes);
	SETOPT(j->h, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(j->h, CURLOPT_WRITEDATA, j);
	return j;
}

/* Frees a finished job; its file, if any, stays. */
static void job_free(struct job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	bson_free(j->path);
	bson_free(j->fail);
	curl_easy_cleanup(j->h);
	curl_slist_free_all(j->conditions);
	EVP_MD_CTX_free(j->sha256);
	bson_destroy(j->rec);
	bson_destroy(j->reuse);
	bson_free(j);
}

/* Clears what one try left behind, before the next. */
static void job_reset(struct job *j)
{
	drop_file(j);
	bson_free(j->fail);
	j->fail = NULL;
	j->errbuf[0] = '\0';
	j->guard.refused = NULL;
	j->headlen = 0;
	j->bytes = 0;
	j->type = NULL;
	j->not_modified = 0;
}

/* Records why the transfer failed and returns whether trying again may help. */
static int transfer_error(struct job *j, CURLcode rc)
{
	const char *detail = j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc);
	char *where = NULL, refused[256];
	long code = 0;
	curl_off_t connect = 0, total = 0, length = -1;

	curl_easy_getinfo(j->h, CURLINFO_EFFECTIVE_URL, &where);
	curl_easy_getinfo(j->h, CURLINFO_RESPONSE_CODE, &code);
	where = where ? where : (char *)j->url;
	switch (rc) {
	case CURLE_OK:
	case CURLE_HTTP_RETURNED_ERROR:
		job_fail(j, "HTTP %ld from %s", code, where);
		return code >= 500 || code == 408 || code == 429;
	case CURLE_COULDNT_RESOLVE_HOST:
		job_fail(j, "DNS lookup failed: %s", detail);
		return 0;
	case CURLE_COULDNT_CONNECT:
		job_fail(j, "%s", netguard_error(&j->guard, j->h, rc, refused, sizeof refused) ?
				  refused : detail);
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		/* curl says only "timed out": tell the three limits apart by the clock.  The
		 * total one ends the transfer on time; a low speed can end it any time. */
		curl_easy_getinfo(j->h, CURLINFO_CONNECT_TIME_T, &connect);
		curl_easy_getinfo(j->h, CURLINFO_TOTAL_TIME_T, &total);
		if (connect == 0)
			job_fail(j, "connect timed out after %lds",
				 opt.connect_timeout < opt.timeout ? opt.connect_timeout : opt.timeout);
		else if (total + 500000 >= (curl_off_t)opt.timeout * 1000000)
			job_fail(j, "timed out after %lds", opt.timeout);
		else
			job_fail(j, "too slow: under %d bytes/s for %lds", SPEED_LIMIT, opt.speed_time);
		return 1;
	case CURLE_TOO_MANY_REDIRECTS:
		job_fail(j, "more than %d redirects from %s", MAX_REDIRECTS, j->url);
		return 0;
	case CURLE_FILESIZE_EXCEEDED:
		job_fail(j, "larger than %ld bytes", opt.max_bytes);
		return 0;
	case CURLE_UNSUPPORTED_PROTOCOL:
		job_fail(j, "unsupported protocol (http and https only): %s", where);
		return 0;
	case CURLE_PARTIAL_FILE:
		curl_easy_getinfo(j->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
		job_fail(j, "incomplete body: got %lld of %lld bytes from %s",
			 (long long)j->bytes, (long long)length, where);
		return 1;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		job_fail(j, "connection failed: %s", detail);
		return 1;
	default:
		job_fail(j, "%s", detail);
		return 0;
	}
}

/* Completes a finished try: on success closes the file and leaves j->fail NULL, else
 * sets it and returns whether a retry may help. */
static int job_done(struct job *j, CURLcode rc)
{
	if (j->fail)
		return 0;    /* we aborted it ourselves */
	if (rc == CURLE_OK && j->reuse && response_code(j) == 304) {
		j->not_modified = 1;
		return 0;
	}
	if (rc != CURLE_OK || !is_2xx(j))
		return transfer_error(j, rc);
	if (j->fd < 0 && start_file(j) != 0)
		return 0;
	if (close(j->fd) != 0)
		job_fail(j, "cannot write %s: %s", j->path, strerror(errno));
	j->fd = -1;
	if (!j->fail)
		finish_sha256(j);
	return 0;
}

/* The wait before retrying a failed try, in ms: the backoff, or a 429 or 503's
 * Retry-After when that is longer (curl reads both its forms), up to --max-retry-after. */
static long retry_wait_ms(struct job *j, int *asked)
{
	long wait = backoff_ms(BACKOFF_MS, BACKOFF_MAX_MS, (int)j->attempts), code = response_code(j);
	curl_off_t after = 0;

	*asked = 0;
	if ((code == 429 || code == 503) &&
	    curl_easy_getinfo(j->h, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0) {
		if (after > opt.max_retry_after)
			after = opt.max_retry_after;
		if (after * 1000 > wait) {
			wait = (long)after * 1000;
			*asked = 1;
		}
	}
	return wait;
}

/* ---- connections to one host, over every fetchimg of the machine ----
 * Each host has IMGPIPE_HOST_CONNECTIONS lock files, HOST.0, HOST.1, ..., in
 * $IMGPIPE_HOME/run/hosts; a download holds one of them locked (flock) while it runs.
 * The kernel releases the lock of a process that dies, so a crash leaks no slot. */

/* The host of url as a file name: lowercase letters, digits, '.' and '-', else '_';
 * NULL when url has no host (curl then fails the download by itself). */
static char *host_name(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL, *name = NULL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && *host) {
		name = bson_strndup(host, 200);
		for (char *p = name; *p; p++) {
			*p = (char)tolower((unsigned char)*p);
			if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
				*p = '_';
		}
	}
	curl_free(host);
	curl_url_cleanup(u);
	return name;
}

/* Locks a free slot of the job's host; returns 0, or -1 when all are taken. */
static int host_slot_take(struct job *j)
{
	char *host = host_name(j->url);

	for (int i = 0; host && j->host_slot < 0 && i < opt.host_connections; i++) {
		char *path = bson_strdup_printf("%s/%s.%d", opt.hosts_dir, host, i);
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

		if (fd < 0)
			err(EX_CANTCREAT, "%s", path);
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			j->host_slot = fd;
		else if (errno == EWOULDBLOCK)
			close(fd);
		else
			err(EX_OSERR, "flock %s", path);
		bson_free(path);
	}
	bson_free(host);
	return host && j->host_slot < 0 ? -1 : 0;
}

static void host_slot_give(struct job *j)
{
	if (j->host_slot >= 0)
		close(j->host_slot);
	j->host_slot = -1;
}

/* Makes $IMGPIPE_HOME/run/hosts, and the folders above it. */
static void make_hosts_dir(const char *home)
{
	const char *levels[] = { "", "/run", "/run/hosts" };

	for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) {
		bson_free(opt.hosts_dir);
		opt.hosts_dir = bson_strdup_printf("%s%s", home, levels[i]);
		if (mkdir(opt.hosts_dir, 0755) != 0 && errno != EEXIST)
			err(EX_CANTCREAT, "cannot create %s", opt.hosts_dir);
	}
}

/* ---- the stream ---- */

struct run {
	CURLM *multi;
	struct stage in;
	struct job **slots;       /* opt.parallel of them; NULL when free */
	long busy;
	long transferring;
	char **files;             /* --max-files: the files written that may still be there */
	long nfiles;
	int eof;
};

/* libbson's monotonic clock, in milliseconds. */
static int64_t now_ms(void)
{
	return bson_get_monotonic_time() / 1000;
}

/* --max-files: forgets the files written that are gone (removed downstream), and says
 * whether one more download may start. */
static int room_for_a_file(struct run *r)
{
	long kept = 0;

	if (!opt.max_files)
		return 1;
	for (long i = 0; i < r->nfiles; i++) {
		if (access(r->files[i], F_OK) == 0)
			r->files[kept++] = r->files[i];
		else
			bson_free(r->files[i]);
	}
	r->nfiles = kept;
	return r->nfiles + r->transferring < opt.max_files;
}

/* Remembers a file written, for --max-files. */
static void count_file(struct run *r, const char *path)
{
	if (!opt.max_files)
		return;
	r->files = bson_realloc(r->files, sizeof *r->files * (size_t)(r->nfiles + 1));
	r->files[r->nfiles++] = bson_strdup(path);
}

/* Starts the job's try when a host slot and --max-files allow, else has it look again
 * in WAIT_MS. */
static void add_transfer(struct run *r, struct job *j)
{
	if (!room_for_a_file(r) || host_slot_take(j) != 0) {
		j->retry_at = now_ms() + WAIT_MS;
		return;
	}
	j->retry_at = 0;
	r->transferring++;
	if (curl_multi_add_handle(r->multi, j->h) != CURLM_OK)
		errx(EX_SOFTWARE, "curl_multi_add_handle failed");
}

/* Reads one input line: starts its download, or passes it straight through. */
static void read_record(struct run *r)
{
	bson_t *rec;
	size_t slot = 0;

	switch (stage_read(&r->in, &rec)) {
	case STAGE_END:
		r->eof = 1;
		return;
	case STAGE_PASS:
		stage_pass(&r->in);
		return;
	case STAGE_WORK:
		break;
	}
	while (r->slots[slot])
		slot++;
	r->slots[slot] = job_new(rec, slot);
	r->busy++;
	add_transfer(r, r->slots[slot]);
}

/* The fields a fetched record gets; an earlier run's are replaced. */
#define FETCHED_FIELDS "file", "sha256", "input_bytes", "content_type", "etag", "last_modified", \
		       "reused", "source_unchanged"
/* What a reused record takes of its reuse, as if shrink and s3put had made it. */
#define REUSED_FIELDS "output_url", "output_key", "output_bytes", "format", "kept", "settings"
static const char *const reused_fields[] = { REUSED_FIELDS, NULL };

/* Appends the server's validators of the answer, for dbrecord to keep in sources; for a
 * 304 that sent none, those of the reuse it confirmed. */
static void append_validators(bson_t *out, struct job *j)
{
	static const struct { const char *field, *header; } validators[] = {
		{ "etag", "ETag" }, { "last_modified", "Last-Modified" },
	};
	struct curl_header *h;
	const char *kept;

	for (size_t i = 0; i < sizeof validators / sizeof *validators; i++) {
		if (curl_easy_header(j->h, validators[i].header, 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
			BSON_APPEND_UTF8(out, validators[i].field, h->value);
		else if (j->not_modified && (kept = rec_str(j->reuse, validators[i].field)))
			BSON_APPEND_UTF8(out, validators[i].field, kept);
	}
}

/* True when the download is the source the reuse was made from: a 304, or a 200 whose
 * bytes hash alike. */
static int same_source(const struct job *j)
{
	const char *known;

	if (!j->reuse)
		return 0;
	known = rec_str(j->reuse, "sha256");
	return j->not_modified || (known && strcmp(known, j->sha256_hex) == 0);
}

/* True when out (a reused record) says of its source just what its reuse said: the same
 * validators (or none) and size, as well as the same bytes. */
static bool source_unchanged(const bson_t *out, const bson_t *reuse)
{
	static const char *const fields[] = { "etag", "last_modified", NULL };

	for (const char *const *f = fields; *f; f++) {
		const char *now = rec_str(out, *f), *then = rec_str(reuse, *f);
		if ((now == NULL) != (then == NULL) || (now && strcmp(now, then) != 0))
			return false;
	}
	return rec_int(out, "input_bytes", -1) == rec_int(reuse, "input_bytes", -2);
}

/* The record of a download whose reuse holds: the stored output's fields, reused, and no
 * file (shrink and s3put pass it through); source_unchanged when sources needs no write. */
static bson_t *finish_reused(struct job *j)
{
	bson_t *out = bson_new();
	bson_iter_t it;

	drop_file(j);
	bson_copy_to_excluding_noinit(j->rec, out, FETCHED_FIELDS, REUSED_FIELDS, NULL);
	BSON_APPEND_BOOL(out, "reused", true);
	BSON_APPEND_UTF8(out, "sha256", rec_str(j->reuse, "sha256"));
	BSON_APPEND_INT64(out, "input_bytes", j->not_modified ? rec_int(j->reuse, "input_bytes", 0)
							   : (int64_t)j->bytes);
	for (const char *const *f = reused_fields; *f; f++)
		if (bson_iter_init_find(&it, j->reuse, *f))
			bson_append_iter(out, *f, -1, &it);
	append_validators(out, j);
	if (source_unchanged(out, j->reuse))
		BSON_APPEND_BOOL(out, "source_unchanged", true);
	return out;
}

/* The record of a download kept in its file, for shrink. */
static bson_t *finish_fetched(struct run *r, struct job *j)
{
	bson_t *out = bson_new();

	bson_copy_to_excluding_noinit(j->rec, out, FETCHED_FIELDS, NULL);
	BSON_APPEND_UTF8(out, "file", j->path);
	BSON_APPEND_UTF8(out, "sha256", j->sha256_hex);
	BSON_APPEND_INT64(out, "input_bytes", (int64_t)j->bytes);
	BSON_APPEND_UTF8(out, "content_type", j->type->mime);
	append_validators(out, j);
	count_file(r, j->path);
	return out;
}

/* A try has ended: retry it later, or write its record and free its slot. */
static void finish(struct run *r, struct job *j, CURLcode rc)
{
	int transient = job_done(j, rc), asked;
	bson_t *out;
	long wait;

	curl_multi_remove_handle(r->multi, j->h);
	host_slot_give(j);
	r->transferring--;
	if (j->fail && transient && j->attempts < opt.retries) {
		j->attempts++;
		wait = retry_wait_ms(j, &asked);
		if (asked)
			warnx("%s: %s; retry %ld of %ld in %lds, as Retry-After asks", j->url, j->fail,
			      j->attempts, opt.retries, wait / 1000);
		else
			warnx("%s: %s; retry %ld of %ld", j->url, j->fail, j->attempts, opt.retries);
		job_reset(j);
		j->retry_at = now_ms() + wait;
		return;
	}
	if (j->fail) {
		drop_file(j);
		out = rec_error(j->rec, "%s", j->fail);
	} else if (same_source(j)) {
		out = finish_reused(j);
	} else {
		out = finish_fetched(r, j);
	}
	stage_write(out);
	bson_destroy(out);
	r->slots[j->slot] = NULL;
	r->busy--;
	job_free(j);
}

static void reap(struct run *r)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(r->multi, &left))) {
		struct job *j = NULL;
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		finish(r, j, msg->data.result);
	}
}

/* Restarts the retries that are due; returns ms until the next one (at most 1000).  A
 * restart that must wait again (no host slot, no room for a file) counts with its new
 * time: else the loop slept a whole second while a slot or room came free. */
static int restart_due(struct run *r)
{
	int64_t now = now_ms(), next = 1000;
	for (long i = 0; i < opt.parallel; i++) {
		struct job *j = r->slots[i];
		if (!j || !j->retry_at)
			continue;
		if (j->retry_at <= now)
			add_transfer(r, j);    /* started (retry_at 0), or to wait again, later */
		if (j->retry_at && j->retry_at - now < next)
			next = j->retry_at - now;
	}
	return (int)next;
}

static int stdin_ready(void)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	return poll(&p, 1, 0) > 0 && p.revents;
}

/* Streams stdin to stdout; returns the exit status. */
static int run(void)
{
	struct run r = { 0 };
	struct stat st;
	int running;

	/* On a pipe, read stdin unbuffered: then poll(2) tells the truth, with no records
	 * hiding in a stdio buffer while we wait for downloads. */
	if (fstat(0, &st) == 0 && !S_ISREG(st.st_mode))
		setvbuf(stdin, NULL, _IONBF, 0);
	stage_init(&r.in, "url");
	r.slots = bson_malloc0(sizeof *r.slots * (size_t)opt.parallel);
	if (!(r.multi = curl_multi_init()) ||
	    curl_multi_setopt(r.multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			      (long)opt.host_connections) != CURLM_OK)
		errx(EX_SOFTWARE, "curl_multi_init failed");

	for (;;) {
		int want_input;
		struct curl_waitfd in = { .fd = 0, .events = CURL_WAIT_POLLIN };
		int wait_ms;

		if (curl_multi_perform(r.multi, &running) != CURLM_OK)
			errx(EX_SOFTWARE, "curl_multi_perform failed");
		reap(&r);
		/* Checked here, not before the poll below: that waits up to a second when
		 * the last download has just ended, with nothing left to wake it. */
		if (r.eof && !r.busy)
			break;
		wait_ms = restart_due(&r);
		want_input = !r.eof && r.busy < opt.parallel;
		/* stdin is polled with the transfers only to wake us; stdin_ready() decides,
		 * as curl does not report a hang-up (end of input) on extra descriptors. */
		if (want_input && stdin_ready()) {
			read_record(&r);
			continue;
		}
		if (curl_multi_poll(r.multi, &in, want_input ? 1 : 0, wait_ms, NULL) != CURLM_OK)
			errx(EX_SOFTWARE, "curl_multi_poll failed");
	}
	curl_multi_cleanup(r.multi);
	bson_free(r.slots);
	for (long i = 0; i < r.nfiles; i++)
		bson_free(r.files[i]);
	bson_free(r.files);
	return stage_end(&r.in);
}

/* ---- command line ---- */

static void parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "parallel", required_argument, NULL, 'p' },
		{ "dir", required_argument, NULL, 'd' },
		{ "max-bytes", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "connect-timeout", required_argument, NULL, 'c' },
		{ "speed-time", required_argument, NULL, 's' },
		{ "retries", required_argument, NULL, 'r' },
		{ "max-retry-after", required_argument, NULL, 'a' },
		{ "max-files", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct stat st;
	int c;

	while ((c = cli_getopt(argc, argv, "", longopts, usage)) != -1) {
		switch (c) {
		case 'p': opt.parallel = cli_long("--parallel", optarg, 1, 1000); break;
		case 'd': opt.dir = optarg; break;
		case 'm': opt.max_bytes = cli_long("--max-bytes", optarg, 1, LONG_MAX); break;
		case 't': opt.timeout = cli_long("--timeout", optarg, 1, 86400); break;
		case 'c': opt.connect_timeout = cli_long("--connect-timeout", optarg, 1, 3600); break;
		case 's': opt.speed_time = cli_long("--speed-time", optarg, 1, 86400); break;
		case 'r': opt.retries = cli_long("--retries", optarg, 0, 10); break;
		case 'a': opt.max_retry_after = cli_long("--max-retry-after", optarg, 0, 3600); break;
		case 'f': opt.max_files = cli_long("--max-files", optarg, 1, 100000); break;
		}
	}
	if (optind < argc)
		cli_usage_error(usage, "unexpected argument: %s", argv[optind]);
	if (opt.dir && stat(opt.dir, &st) != 0)
		cli_usage_error(usage, "--dir %s: %s", opt.dir, strerror(errno));
	if (opt.dir && !S_ISDIR(st.st_mode))
		cli_usage_error(usage, "--dir %s: not a directory", opt.dir);
}

int main(int argc, char **argv)
{
	struct config cfg;
	int status;

	cli_common(argc, argv, usage);
	parse_options(argc, argv);
	config_load(&cfg);
	opt.allow_private = cfg.allow_private;
	if (cfg.host_connections < 0)
		errx(EX_USAGE, "IMGPIPE_HOST_CONNECTIONS wants a whole number from 1 to 1000, not '%s'",
		     getenv("IMGPIPE_HOST_CONNECTIONS"));
	opt.host_connections = (int)cfg.host_connections;
	make_hosts_dir(cfg.home);
	config_free(&cfg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		errx(EX_SOFTWARE, "curl_global_init failed");
	status = run();
	curl_global_cleanup();
	bson_free(opt.hosts_dir);
	return status;
}
