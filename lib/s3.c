/* S3 requests over libcurl with its built-in SigV4 signing; see s3.h.
 * Bodies stream from files and responses stream to files: nothing holds a whole object.
 * An error document of the store is read with GLib's markup parser into one line. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>
#include <openssl/evp.h>

#include "backoff.h"
#include "http.h"
#include "s3.h"

#define S3_MAX_KEY 1024          /* S3's limit on the length of a key, in bytes */
#define S3_ERROR_DOC 16384       /* room for any S3 error document */
#define S3_BACKOFF_MS 250        /* first retry delay, doubled each time */
#define S3_BACKOFF_CAP_MS 8000

/* SigV4's payload hash of an empty body (GET, DELETE). */
static const char empty_sha256[] =
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* Where a PUT's bytes come from: an open file, else a buffer. */
struct body {
	FILE *file;
	const char *buf;
	size_t len, off;
	curl_off_t size;
};

/* Where an answer goes: a 2xx body to out, any other body into doc (bounded). */
struct sink {
	CURL *curl;
	FILE *out;
	curl_off_t written;      /* bytes of the object already in out: a retry resumes there */
	int write_errno;
	char doc[S3_ERROR_DOC];
	size_t doclen;
};

struct request {
	const char *method;
	const char *key;         /* NULL: the bucket itself */
	struct body *body;       /* PUT */
	const char *content_type;
	const char *cache_control;
	int public_read;
	FILE *out;               /* GET */
	long timeout_ms;         /* the whole request's limit; 0: none but the stall limit */
};

/* An S3 error document's Code and Message. */
struct fault {
	char code[64];
	char message[256];
};

static size_t body_read(char *dst, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t want = size * n;

	if (b->file) {
		size_t got = fread(dst, 1, want, b->file);
		return got < want && ferror(b->file) ? CURL_READFUNC_ABORT : got;
	}
	if (want > b->len - b->off)
		want = b->len - b->off;
	memcpy(dst, b->buf + b->off, want);
	b->off += want;
	return want;
}

static int body_rewind(struct body *b)
{
	b->off = 0;
	return b->file ? fseeko(b->file, 0, SEEK_SET) : 0;
}

/* SigV4 signs the payload's SHA-256 (versitygw insists on it, in x-amz-content-sha256):
 * one streaming pass over the body before it is sent. */
static int body_sha256(struct body *b, char hex[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char buf[65536], sum[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	size_t got;
	int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && body_rewind(b) == 0;

	while (ok && (got = body_read((char *)buf, 1, sizeof buf, b)) > 0)
		ok = got != CURL_READFUNC_ABORT && EVP_DigestUpdate(md, buf, got);
	ok = ok && EVP_DigestFinal_ex(md, sum, &len) && len == 32;
	EVP_MD_CTX_free(md);
	if (ok)
		hex_encode(sum, len, hex);
	return ok ? 0 : -1;
}

static size_t sink_write(char *p, size_t size, size_t n, void *arg)
{
	struct sink *k = arg;
	long status = 0;
	size_t room = sizeof k->doc - 1 - k->doclen;

	n *= size;
	if (curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
	    status / 100 == 2 && k->out) {
		if (fwrite(p, 1, n, k->out) != n) {
			k->write_errno = errno;
			return 0;
		}
		k->written += (curl_off_t)n;
		return n;
	}
	if (room > n)
		room = n;
	memcpy(k->doc + k->doclen, p, room);
	k->doclen += room;
	k->doc[k->doclen] = '\0';
	return n;
}

/* key with each '/'-separated segment percent-encoded (unreserved characters kept),
 * which is the form SigV4's canonical URI for S3 takes.  NULL when out of memory. */
static char *encode_key(const char *key)
{
	bson_string_t *out = bson_string_new(NULL);

	for (;;) {
		size_t n = strcspn(key, "/");
		char *seg = n ? curl_easy_escape(NULL, key, (int)n) : NULL;

		if (n && !seg) {
			bson_string_free(out, true);
			return NULL;
		}
		if (seg)
			bson_string_append(out, seg);
		curl_free(seg);
		if (!key[n])
			return bson_string_free(out, false);
		bson_string_append_c(out, '/');
		key += n + 1;
	}
}

/* The request URL of key: ENDPOINT/BUCKET/KEY, or BUCKET.HOST/KEY in virtual-host style.
 * NULL when S3_ENDPOINT is not a URL. */
static char *object_url(const struct s3 *s, const char *key)
{
	CURLU *u = curl_url();
	char *enc = encode_key(key), *host = NULL, *url = NULL, *vhost = NULL, *path;
	int ok = u && enc && curl_url_set(u, CURLUPART_URL, s->cfg->s3_endpoint, 0) == CURLUE_OK;

	if (s->virtual_host) {
		ok = ok && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
		vhost = ok ? bson_strdup_printf("%s.%s", s->cfg->s3_bucket, host) : NULL;
		ok = ok && curl_url_set(u, CURLUPART_HOST, vhost, 0) == CURLUE_OK;
		path = bson_strdup_printf("/%s", enc ? enc : "");
	} else {
		path = bson_strdup_printf("/%s/%s", s->cfg->s3_bucket, enc ? enc : "");
	}
	ok = ok && curl_url_set(u, CURLUPART_PATH, path, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_URL, &url, 0) == CURLUE_OK;
	bson_free(path);
	bson_free(vhost);
	curl_free(host);
	bson_free(enc);
	curl_url_cleanup(u);
	if (!ok) {
		curl_free(url);
		return NULL;
	}
	path = bson_strdup(url);
	curl_free(url);
	return path;
}

/* The headers SigV4 signs besides Host and X-Amz-Date. */
static struct curl_slist *request_headers(const struct request *rq, const char *sha256)
{
	struct curl_slist *h = NULL;
	const char *token = getenv("AWS_SESSION_TOKEN");
	int bad = http_header_add(&h, "x-amz-content-sha256", sha256);

	if (rq->content_type)
		bad |= http_header_add(&h, "Content-Type", rq->content_type);
	if (rq->cache_control)
		bad |= http_header_add(&h, "Cache-Control", rq->cache_control);
	if (rq->public_read)
		bad |= http_header_add(&h, "x-amz-acl", "public-read");
	if (token && *token)
		bad |= http_header_add(&h, "x-amz-security-token", token);
	if (bad) {
		curl_slist_free_all(h);
		return NULL;
	}
	return h;
}

/* One attempt of the request.  curl_easy_reset keeps the open connection for reuse. */
static CURLcode perform(struct s3 *s, const struct request *rq, const char *url,
			struct curl_slist *headers, struct sink *k)
{
	CURL *c = s->curl;
	char sigv4[128];
	int bad = 0;

	snprintf(sigv4, sizeof sigv4, "aws:amz:%s:s3", s->cfg->aws_region);
	k->doclen = 0;
	k->doc[0] = '\0';
	if (rq->body && body_rewind(rq->body) != 0)
		return CURLE_READ_ERROR;
	curl_easy_reset(c);
	bad |= curl_easy_setopt(c, CURLOPT_URL, url);
	bad |= curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	bad |= curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4);
	bad |= curl_easy_setopt(c, CURLOPT_USERNAME, s->cfg->aws_access_key);
	bad |= curl_easy_setopt(c, CURLOPT_PASSWORD, s->cfg->aws_secret_key);
	bad |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	bad |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
	bad |= curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
	bad |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	bad |= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	/* A stalled transfer fails; a slow but moving one of a big object does not. */
	bad |= curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	bad |= curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
	if (rq->body) {
		bad |= curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		bad |= curl_easy_setopt(c, CURLOPT_READFUNCTION, body_read);
		bad |= curl_easy_setopt(c, CURLOPT_READDATA, rq->body);
		bad |= curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, rq->body->size);
	} else if (strcmp(rq->method, "HEAD") == 0) {
		bad |= curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(rq->method, "GET") != 0) {
		bad |= curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
	}
	if (rq->timeout_ms > 0) {
		bad |= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, rq->timeout_ms);
		bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
	}
	if (k->written)
		bad |= curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, k->written);
	return bad ? CURLE_FAILED_INIT : curl_easy_perform(c);
}

/* Network failures worth another attempt; anything else will fail the same way again. */
static int transient(CURLcode cc, long status)
{
	switch (cc) {
	case CURLE_OK:
		return status >= 500 || status == 429;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	default:
		return 0;
	}
}

static void fault_text(GMarkupParseContext *ctx, const gchar *text, gsize len, gpointer arg,
		       GError **error)
{
	struct fault *f = arg;
	const GSList *stack = g_markup_parse_context_get_element_stack(ctx);
	const char *el = g_markup_parse_context_get_element(ctx);
	char *dst = NULL;
	size_t size = 0;

	(void)error;
	if (!stack || !stack->next || strcmp(stack->next->data, "Error") != 0)
		return;
	if (strcmp(el, "Code") == 0)
		dst = f->code, size = sizeof f->code;
	else if (strcmp(el, "Message") == 0)
		dst = f->message, size = sizeof f->message;
	if (dst)
		snprintf(dst, size, "%.*s", (int)len, text);
}

/* Code and Message of an S3 error document; both stay empty when doc is not one. */
static void parse_fault(const char *doc, size_t len, struct fault *f)
{
	static const GMarkupParser parser = { .text = fault_text };
	GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, f, NULL);

	memset(f, 0, sizeof *f);
	if (g_markup_parse_context_parse(ctx, doc, (gssize)len, NULL))
		g_markup_parse_context_end_parse(ctx, NULL);
	g_markup_parse_context_free(ctx);
}

/* What to do about an error code the store sent, when there is something to do. */
static const char *fault_hint(const char *code)
{
	static const char *const hints[][2] = {
		{ "SignatureDoesNotMatch", "check AWS_SECRET_ACCESS_KEY" },
		{ "InvalidAccessKeyId", "check AWS_ACCESS_KEY_ID" },
		{ "NoSuchBucket", "check S3_BUCKET" },
		{ "AuthorizationHeaderMalformed", "check AWS_REGION" },
		{ "PermanentRedirect", "check S3_ENDPOINT, AWS_REGION and S3_VIRTUAL_HOST" },
		{ "AccessControlListNotSupported",
		  "the bucket has ACLs disabled: grant public reads with a bucket policy" },
	};
	for (size_t i = 0; i < sizeof hints / sizeof *hints; i++)
		if (strcmp(code, hints[i][0]) == 0)
			return hints[i][1];
	return NULL;
}

/* Sets s->error to "METHOD s3://BUCKET/KEY" and the formatted reason, on one line. */
static int fail(struct s3 *s, int exit_code, const struct request *rq, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct s3 *s, int exit_code, const struct request *rq, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(s->error, sizeof s->error, "%s s3://%s/%s", rq->method,
			 s->cfg->s3_bucket, rq->key ? rq->key : "");

	if (n > 0 && (size_t)n < sizeof s->error) {
		va_start(ap, fmt);
		vsnprintf(s->error + n, sizeof s->error - (size_t)n, fmt, ap);
		va_end(ap);
	}
	for (char *p = s->error; *p; p++)
		if ((unsigned char)*p < ' ')
			*p = ' ';
	return exit_code;
}

/* Turns the last attempt's outcome into an exit code and one line in s->error. */
static int explain(struct s3 *s, const struct request *rq, CURLcode cc, long status,
		   const struct sink *k, int attempts)
{
	/* libcurl's generic text, not its error buffer's: that names the store's address,
	 * and a record's error reaches the status a client reads (docs/design.md, 6). */
	const char *detail = curl_easy_strerror(cc);
	struct fault f;
	const char *hint;

	if (cc == CURLE_WRITE_ERROR && k->write_errno)
		return fail(s, EX_IOERR, rq, ": cannot write the object: %s",
			    strerror(k->write_errno));
	if (cc == CURLE_READ_ERROR || cc == CURLE_ABORTED_BY_CALLBACK)
		return fail(s, EX_DATAERR, rq, ": cannot read the data to upload");
	if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
		return fail(s, EX_UNAVAILABLE, rq, ": store unreachable after %d attempt%s: %s",
			    attempts, attempts == 1 ? "" : "s", detail);
	if (cc != CURLE_OK)
		return fail(s, EX_TEMPFAIL, rq, " failed after %d attempt%s: %s", attempts,
			    attempts == 1 ? "" : "s", detail);

	parse_fault(k->doc, k->doclen, &f);
	if (status == 404 && (!*f.code || strcmp(f.code, "NoSuchKey") == 0))
		return fail(s, EX_DATAERR, rq, ": no such key");
	if (transient(cc, status))
		return fail(s, EX_TEMPFAIL, rq, " failed after %d attempt%s: HTTP %ld%s%s%s%s",
			    attempts, attempts == 1 ? "" : "s", status, *f.code ? " " : "", f.code, *f.message ? ": " : "",
			    f.message);
	if (!*f.code)
		return fail(s, EX_UNAVAILABLE, rq, " refused: HTTP %ld", status);
	hint = fault_hint(f.code);
	return fail(s, EX_UNAVAILABLE, rq, " refused: %s (%s)", f.code,
		    hint ? hint : *f.message ? f.message : "no message");
}

/* One request, retried on 5xx and network errors with backoff.  A GET that broke off
 * mid-object resumes where it stopped, so out never gets a byte twice. */
static int s3_request(struct s3 *s, const struct request *rq)
{
	char sha256[65];
	struct sink *k = bson_malloc0(sizeof *k);
	struct curl_slist *headers = NULL;
	char *url = NULL;
	CURLcode cc;
	long status;
	int rc;

	s->error[0] = '\0';
	k->curl = s->curl;
	k->out = rq->out;
	if (rq->key && (!*rq->key || strlen(rq->key) > S3_MAX_KEY)) {
		rc = fail(s, EX_DATAERR, rq, ": a key has 1 to %d bytes", S3_MAX_KEY);
		goto done;
	}
	memcpy(sha256, empty_sha256, sizeof sha256);
	if (rq->body && body_sha256(rq->body, sha256) != 0) {
		rc = fail(s, EX_DATAERR, rq, ": cannot read the data to upload: %s", strerror(errno));
		goto done;
	}
	if (!(url = object_url(s, rq->key ? rq->key : ""))) {
		rc = fail(s, EX_USAGE, rq, ": S3_ENDPOINT is not a URL: %s", s->cfg->s3_endpoint);
		goto done;
	}
	if (!(headers = request_headers(rq, sha256))) {
		rc = fail(s, EX_UNAVAILABLE, rq, ": out of memory");
		goto done;
	}
	for (int attempt = 1;; attempt++) {
		status = 0;
		cc = perform(s, rq, url, headers, k);
		curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
		if (cc == CURLE_OK && status / 100 == 2) {
			rc = 0;
			break;
		}
		if (!transient(cc, status) ||
		    !backoff_retry(S3_BACKOFF_MS, S3_BACKOFF_CAP_MS, attempt, s->retries + 1)) {
			rc = explain(s, rq, cc, status, k, attempt);
			break;
		}
	}
	curl_easy_reset(s->curl);   /* drops its pointers into k and headers; keeps the connection */
done:
	curl_slist_free_all(headers);
	bson_free(url);
	bson_free(k);
	return rc;
}

void s3_open(struct s3 *s, const struct config *cfg)
{
	const char *vhost = getenv("S3_VIRTUAL_HOST");

	memset(s, 0, sizeof *s);
	config_require("S3_ENDPOINT", cfg->s3_endpoint);
	config_require("AWS_ACCESS_KEY_ID", cfg->aws_access_key);
	config_require("AWS_SECRET_ACCESS_KEY", cfg->aws_secret_key);
	s->cfg = cfg;
	s->retries = S3_RETRIES;
	s->virtual_host = vhost && strcmp(vhost, "1") == 0;
	if (!(s->curl = curl_easy_init()))
		errx(EX_UNAVAILABLE, "cannot start libcurl");
}

void s3_close(struct s3 *s)
{
	curl_easy_cleanup(s->curl);
	s->curl = NULL;
}

int s3_put_file(struct s3 *s, const char *path, const char *key, const char *content_type,
		const char *cache_control, int public_read)
{
	struct body b = { .file = fopen(path, "rb") };
	struct request rq = { "PUT", key, &b, content_type, cache_control, public_read, NULL, 0 };
	struct stat st;
	int rc;

	if (!b.file)
		return fail(s, EX_DATAERR, &rq, ": cannot open %s: %s", path, strerror(errno));
	if (fstat(fileno(b.file), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(b.file);
		return fail(s, EX_DATAERR, &rq, ": %s is not a regular file", path);
	}
	b.size = st.st_size;
	rc = s3_request(s, &rq);
	fclose(b.file);
	return rc;
}

int s3_put_buffer(struct s3 *s, const void *data, size_t len, const char *key,
		  const char *content_type, int public_read)
{
	struct body b = { .buf = data, .len = len, .size = (curl_off_t)len };
	struct request rq = { "PUT", key, &b, content_type, NULL, public_read, NULL, 0 };

	return s3_request(s, &rq);
}

int s3_get(struct s3 *s, const char *key, FILE *out)
{
	struct request rq = { "GET", key, NULL, NULL, NULL, 0, out, 0 };

	return s3_request(s, &rq);
}

int s3_head(struct s3 *s, const char *key)
{
	struct request rq = { "HEAD", key, NULL, NULL, NULL, 0, NULL, 0 };

	return s3_request(s, &rq);
}

int s3_delete(struct s3 *s, const char *key)
{
	struct request rq = { "DELETE", key, NULL, NULL, NULL, 0, NULL, 0 };

	return s3_request(s, &rq);
}

int s3_head_bucket(struct s3 *s, long timeout_ms)
{
	struct request rq = { "HEAD", NULL, NULL, NULL, NULL, 0, NULL, timeout_ms };

	return s3_request(s, &rq);
}

char *s3_public_url(const struct config *cfg, const char *key)
{
	const char *base = config_require("S3_PUBLIC_URL", cfg->s3_public_url);
	size_t n = strlen(base);
	char *enc = encode_key(key), *url;

	if (!enc)
		return NULL;
	while (n > 0 && base[n - 1] == '/')
		n--;
	url = bson_strdup_printf("%.*s/%s", (int)n, base, enc);
	bson_free(enc);
	return url;
}
