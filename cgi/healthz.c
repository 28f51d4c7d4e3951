/* GET /healthz: one real round trip to each backend (a MongoDB ping, a Redis PING, an S3
 * HEAD of the bucket), each bounded by BACKEND_TIMEOUT_MS, so that a backend that hangs
 * (stopped, or its network gone) answers "unavailable" rather than hanging the check.
 * 200 {"ok": true, "backends": {"mongodb": "ok", "redis": "ok", "s3": "ok"}}, or 503 with
 * "ok": false and "error" naming each backend that did not answer.  The route is public
 * (load balancers call it), so the reasons go to the server's error log only. */
#include "backend.h"
#include "cgi.h"
#include "s3.h"

static int check_mongodb(const struct config *cfg, char *why, size_t len)
{
	struct db d;

	if (backend_db(&d, cfg, why, len))
		return -1;
	db_close(&d);
	return 0;
}

static int check_redis(const struct config *cfg, char *why, size_t len)
{
	struct queue q;
	int rc = backend_queue(&q, cfg, why, len);

	if (rc == 0 && (rc = queue_ping(&q)) != 0)
		snprintf(why, len, "%s", q.error);
	queue_disconnect(&q);
	return rc;
}

static int check_s3(const struct config *cfg, char *why, size_t len)
{
	struct s3 s;
	int rc;

	if (!cfg->s3_endpoint || !cfg->aws_access_key || !cfg->aws_secret_key) {
		snprintf(why, len, "S3_ENDPOINT or the AWS keys are not set");
		return -1;
	}
	s3_open(&s, cfg);
	s.retries = 0;          /* a health check reports; the clients retry */
	rc = s3_head_bucket(&s, BACKEND_TIMEOUT_MS);
	if (rc)
		snprintf(why, len, "%s", s.error);
	s3_close(&s);
	return rc ? -1 : 0;
}

static const struct backend {
	const char *name;
	int (*check)(const struct config *, char *, size_t);
} backends[] = {
	{ "mongodb", check_mongodb },
	{ "redis", check_redis },
	{ "s3", check_s3 },
};

void healthz(const struct request *rq, const char *rest)
{
	bson_t doc = BSON_INITIALIZER, states = BSON_INITIALIZER;
	bson_string_t *down = bson_string_new(NULL);
	char why[512];

	(void)rest;
	for (size_t i = 0; i < sizeof backends / sizeof *backends; i++) {
		const struct backend *b = &backends[i];
		int ok = b->check(rq->cfg, why, sizeof why) == 0;

		BSON_APPEND_UTF8(&states, b->name, ok ? "ok" : "unavailable");
		if (!ok) {
			warnx("healthz: %s unavailable: %s", b->name, why);
			bson_string_append_printf(down, "%s%s: unavailable", down->len ? ", " : "",
						  b->name);
		}
	}
	BSON_APPEND_BOOL(&doc, "ok", down->len == 0);
	if (down->len)
		BSON_APPEND_UTF8(&doc, "error", down->str);
	BSON_APPEND_DOCUMENT(&doc, "backends", &states);
	reply_json(down->len ? 503 : 200, NULL, &doc);
	bson_string_free(down, true);
	bson_destroy(&states);
	bson_destroy(&doc);
}
