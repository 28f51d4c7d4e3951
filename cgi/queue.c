/* The job queue: one entry a batch on the Redis stream imgpipe:jobs, which the
 * dispatcher reads with its consumer group "dispatchers".  A stream rather than a list,
 * so that a job a dispatcher took but did not finish stays pending and is taken again. */
#include <sys/time.h>
#include <hiredis/hiredis.h>

#include "cgi.h"
#include "redisurl.h"

/* One command; 0, or -1 with Redis's or the connection's reason in why. */
static int command(redisContext *c, const char *const *argv, int argc, char *why, size_t whylen)
{
	redisReply *r = redisCommandArgv(c, argc, (const char **)argv, NULL);
	int rc = 0;

	if (!r) {
		snprintf(why, whylen, "%s", c->errstr[0] ? c->errstr : "no reply");
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(why, whylen, "%s: %s", argv[0], r->str);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

struct redisContext *queue_open(const char *redis_url, char *why, size_t whylen)
{
	const struct timeval connect_timeout = { 2, 0 }, io_timeout = { 5, 0 };
	struct redis_url u;
	redisContext *c;

	if (!redis_url) {
		snprintf(why, whylen, "REDIS_URL is not set");
		return NULL;
	}
	if (redis_url_parse(redis_url, &u)) {
		snprintf(why, whylen, "REDIS_URL is not redis://[:PASSWORD@]HOST[:PORT][/DB]");
		return NULL;
	}
	c = redisConnectWithTimeout(u.host, u.port, connect_timeout);
	if (!c || c->err) {
		snprintf(why, whylen, "%s:%d: %s", u.host, u.port, c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, io_timeout) != REDIS_OK || redis_url_prepare(c, &u)) {
		snprintf(why, whylen, "%s:%d: %s", u.host, u.port,
			 c->err ? c->errstr : "AUTH or SELECT refused");
		redisFree(c);
		return NULL;
	}
	return c;
}

int queue_push(struct redisContext *q, const char *batch_id, char *why, size_t whylen)
{
	return command(q, (const char *[]){ "XADD", JOBS_STREAM, "*", "batch", batch_id }, 5,
		       why, whylen);
}

void queue_close(struct redisContext *q)
{
	redisFree(q);
}
