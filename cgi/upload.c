/* POST /upload: checks the CSV, then stores it in S3, creates its batch "in queue" in
 * MongoDB and queues its job in Redis, in that order; when a step fails, the steps
 * before it are undone, so a failed upload leaves nothing behind. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <curl/curl.h>

#include "cgi.h"
#include "csvin.h"
#include "db.h"
#include "netpolicy.h"
#include "queue.h"
#include "ui.h"
#include "s3.h"

#define MAX_URL 2048
#define WEBHOOK_RESOLVE_S 5     /* the longest wait for the webhook host's addresses */

/* The query parameters an upload takes, in the order of upload.query. */
static const char *const query_names[] = { "webhook_url", "force", NULL };
enum { QUERY_WEBHOOK, QUERY_FORCE };

/* The CSV, the webhook and the force of an upload. */
struct upload {
	char *body;                     /* the request body */
	size_t len;
	const char *csv;                /* the body itself, or the part "file" of a form */
	size_t csv_len;
	char *query[2];                 /* ?webhook_url=, ?force= */
	struct form form;
	const char *webhook_url;        /* either, or NULL */
	bool force;                     /* every image made afresh, none reused */
};

/* Reads exactly len bytes of body from stdin; -1 when it ends before. */
static int read_body(struct upload *up, size_t len)
{
	up->body = bson_malloc(len + 1);
	up->len = fread(up->body, 1, len, stdin);
	up->body[up->len] = '\0';
	return up->len == len ? 0 : -1;
}

/* An absolute http(s) URL with a host, as curl's URL parser reads it, whose host resolves
 * (within WEBHOOK_RESOLVE_S) to an address the policy lets notify connect to.  That is
 * checked again on each delivery, on the address then connected. */
static int webhook_valid(const char *url, int allow_private, char *why, size_t whylen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, refused[256];
	int ok = 1;

	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			ok = 0;
	ok = ok && strlen(url) <= MAX_URL && u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	     (!strcmp(scheme, "http") || !strcmp(scheme, "https")) &&
	     curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && *host;
	if (!ok)
		snprintf(why, whylen, "webhook_url must be an absolute http(s) URL of at most %d "
			 "printable ASCII characters", MAX_URL);
	else if (netpolicy_check_url(url, allow_private, WEBHOOK_RESOLVE_S, refused, sizeof refused)) {
		snprintf(why, whylen, "webhook_url: %s", refused);
		ok = 0;
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok ? 0 : -1;
}

/* Reads a force field, query or form ("1" or "true"; "0", "false" or empty: not forced)
 * into *force.  -1 with the reason in why for anything else. */
static int force_value(const char *value, bool *force, char *why, size_t whylen)
{
	if (!value)
		return 0;
	if (!strcmp(value, "1") || !strcmp(value, "true")) {
		*force = true;
		return 0;
	}
	if (!*value || !strcmp(value, "0") || !strcmp(value, "false"))
		return 0;
	snprintf(why, whylen, "force must be 1 or true (or 0, false), not '%.40s'", value);
	return -1;
}

/* Puts the reason in why and returns the HTTP status code. */
__attribute__((format(printf, 4, 5)))
static int refuse(int code, char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return code;
}

/* Checks the request and reads its CSV and webhook into up.  Returns 0, or the HTTP
 * status to answer with the reason in why. */
static int check(const struct request *rq, struct upload *up, char *why, size_t whylen)
{
	enum body_type type = body_type(rq->content_type, why, whylen);
	long max = rq->cfg->max_upload;
	unsigned long long len;
	uint64_t images;
	char *end;

	if (type == BODY_UNSUPPORTED)
		return 415;
	if (!rq->content_length)
		return refuse(411, why, whylen, "no Content-Length: send the body with its length");
	errno = 0;
	len = strtoull(rq->content_length, &end, 10);
	if (errno || *end || !strchr("0123456789", rq->content_length[0]))
		return refuse(400, why, whylen, "Content-Length is not a number");
	if (max < 0)
		return refuse(500, why, whylen, "IMGPIPE_MAX_UPLOAD is not a size in bytes");
	if (rq->cfg->max_images < 0)
		return refuse(500, why, whylen, "IMGPIPE_MAX_IMAGES is not a positive number");
	if (len > (unsigned long long)max)
		return refuse(413, why, whylen, "the upload has %llu bytes, more than the %ld allowed",
				len, max);
	if (query_parse(rq->query, query_names, up->query, why, whylen))
		return 400;
	if (read_body(up, len))
		return refuse(400, why, whylen, "truncated body: %zu of %llu bytes", up->len, len);

	up->csv = up->body;
	up->csv_len = up->len;
	up->webhook_url = up->query[QUERY_WEBHOOK];
	if (force_value(up->query[QUERY_FORCE], &up->force, why, whylen))
		return 400;
	if (type == BODY_FORM) {
		if (form_parse(rq->content_type, up->body, up->len, &up->form, why, whylen))
			return 400;
		/* an empty field is no webhook: a browser sends the form's empty text input */
		if (up->form.webhook_url && *up->form.webhook_url) {
			if (up->query[QUERY_WEBHOOK])
				return refuse(400, why, whylen,
					      "webhook_url given both in the query and the form");
			up->webhook_url = up->form.webhook_url;
		}
		up->csv = up->form.file;
		up->csv_len = up->form.file_len;
		if (force_value(up->form.force, &up->force, why, whylen))
			return 400;
	}
	if (up->webhook_url && webhook_valid(up->webhook_url, rq->cfg->allow_private, why, whylen))
		return 400;
	if (up->csv_len == 0)
		return refuse(400, why, whylen, "the CSV is empty");
	if (csvin_check(up->csv, up->csv_len, &images, why, whylen))
		return 400;
	if (images > (uint64_t)rq->cfg->max_images)
		return refuse(413, why, whylen, "the CSV lists %llu images; at most %ld (IMGPIPE_MAX_IMAGES)",
			      (unsigned long long)images, rq->cfg->max_images);
	return 0;
}

/* 128 bits from the OS's random source, as 32 lowercase hex digits. */
static int batch_id_new(char id[BATCH_ID_LEN + 1])
{
	unsigned char r[BATCH_ID_LEN / 2];

	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		return -1;
	hex_encode(r, sizeof r, id);
	return 0;
}

/* Answers 503 when a backend lacks its configuration; returns whether it did. */
static int unconfigured(const struct config *cfg)
{
	const struct {
		const char *value, *name, *backend;
	} needs[] = {
		{ cfg->s3_endpoint, "S3_ENDPOINT", "S3" },
		{ cfg->aws_access_key, "AWS_ACCESS_KEY_ID", "S3" },
		{ cfg->aws_secret_key, "AWS_SECRET_ACCESS_KEY", "S3" },
		{ cfg->mongodb_uri, "MONGODB_URI", "MongoDB" },
	};

	for (size_t i = 0; i < sizeof needs / sizeof *needs; i++)
		if (!needs[i].value) {
			reply_unavailable(needs[i].backend, "%s is not set", needs[i].name);
			return 1;
		}
	return 0;
}

/* Stores, records and queues the batch; on a failure undoes what was done and answers 503. */
static void submit(const struct config *cfg, const char *owner, const struct upload *up)
{
	char id[BATCH_ID_LEN + 1], key[64], path[64], why[512];
	struct queue q;
	struct db d;
	struct s3 s;
	bson_error_t err;
	bson_t doc = BSON_INITIALIZER;
	int opened_q = 0, opened_db = 0, opened_s3 = 0, stored = 0;

	if (unconfigured(cfg))
		return;
	if (batch_id_new(id)) {
		reply_error(503, NULL, "random source unavailable: %s", strerror(errno));
		return;
	}
	snprintf(key, sizeof key, "uploads/%s.csv", id);
	snprintf(path, sizeof path, "/status/%s", id);

	/* Connect to all three first, so that a backend that is down costs no undoing. */
	if (queue_init(&q, cfg->redis_url) || queue_connect(&q)) {
		reply_unavailable("Redis", "%s", q.error);
		goto out;
	}
	opened_q = 1;
	if (db_open(&d, cfg, &err)) {
		reply_unavailable("MongoDB", "%s", err.message);
		goto out;
	}
	opened_db = 1;
	s3_open(&s, cfg);
	opened_s3 = 1;

	if (s3_put_buffer(&s, up->csv, up->csv_len, key, "text/csv", 0)) {
		reply_unavailable("S3", "%s", s.error);
		goto out;
	}
	stored = 1;
	if (db_batch_create(&d, id, "in queue", key, up->webhook_url, owner, up->force, &err)) {
		reply_unavailable("MongoDB", "%s", err.message);
		goto undo;
	}
	if (queue_push(&q, id)) {
		reply_unavailable("Redis", "%s", q.error);
		if (db_batch_delete(&d, id, &err))
			warnx("batch %s left behind: %s", id, err.message);
		goto undo;
	}
	if (wants_html()) {
		ui_see_other(path);   /* a browser goes on to the status page */
	} else {
		BSON_APPEND_UTF8(&doc, "batch_id", id);
		BSON_APPEND_UTF8(&doc, "status", "in queue");
		BSON_APPEND_UTF8(&doc, "status_url", path);
		snprintf(why, sizeof why, "Location: %s\n", path);
		reply_json(202, why, &doc);
	}
	stored = 0;
undo:
	if (stored && s3_delete(&s, key))
		warnx("S3 object %s left behind: %s", key, s.error);
out:
	if (opened_s3)
		s3_close(&s);
	if (opened_db)
		db_close(&d);
	if (opened_q)
		queue_disconnect(&q);
	bson_destroy(&doc);
}

void upload(const struct request *rq, const char *rest)
{
	struct upload up;
	char why[512];
	int code;

	(void)rest;
	memset(&up, 0, sizeof up);
	code = check(rq, &up, why, sizeof why);
	if (code)
		reply_error(code, NULL, "%s", why);
	else
		submit(rq->cfg, rq->owner, &up);
	bson_free(up.body);
	query_free(query_names, up.query);
	form_free(&up.form);
}
