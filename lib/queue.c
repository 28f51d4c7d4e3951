/* The job queue on a Redis stream and its consumer group (queue.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "queue.h"

/* Sends one command (fmt as for redisCommand, starting with the command's name; only the
 * conversions printf shares with it, so that the compiler checks them).  Returns
 * its reply, or NULL with the reason in q->error. */
static redisReply *vcommand(struct queue *q, const char *fmt, va_list ap)
{
	redisReply *r = redisvCommand(q->redis, fmt, ap);

	if (!r) {
		snprintf(q->error, sizeof q->error, "%s",
			 q->redis->errstr[0] ? q->redis->errstr : "no reply");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(q->error, sizeof q->error, "%.*s: %s", (int)strcspn(fmt, " "), fmt, r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

__attribute__((format(printf, 2, 3)))
static redisReply *command(struct queue *q, const char *fmt, ...)
{
	redisReply *r;
	va_list ap;

	va_start(ap, fmt);
	r = vcommand(q, fmt, ap);
	va_end(ap);
	return r;
}

/* A command whose reply says no more than that it worked.  Returns 0, or -1 as command(). */
__attribute__((format(printf, 2, 3)))
static int simple_command(struct queue *q, const char *fmt, ...)
{
	redisReply *r;
	va_list ap;

	va_start(ap, fmt);
	r = vcommand(q, fmt, ap);
	va_end(ap);
	if (!r)
		return -1;
	freeReplyObject(r);
	return 0;
}

int queue_init(struct queue *q, const char *redis_url)
{
	memset(q, 0, sizeof *q);
	if (!redis_url) {
		snprintf(q->error, sizeof q->error, "REDIS_URL is not set");
		return -1;
	}
	if (redis_url_parse(redis_url, &q->url)) {
		snprintf(q->error, sizeof q->error,
			 "REDIS_URL is not redis://[:PASSWORD@]HOST[:PORT][/DB]");
		return -1;
	}
	return 0;
}

int queue_connect(struct queue *q)
{
	const struct timeval connect_timeout = { 2, 0 }, reply_timeout = { 5, 0 };
	const struct redis_url *u = &q->url;

	q->redis = redisConnectWithTimeout(u->host, u->port, connect_timeout);
	if (!q->redis || q->redis->err || redisSetTimeout(q->redis, reply_timeout) != REDIS_OK) {
		snprintf(q->error, sizeof q->error, "%s:%d: %s", u->host, u->port,
			 q->redis ? q->redis->errstr : "out of memory");
		goto fail;
	}
	if ((u->password[0] && simple_command(q, "AUTH %s", u->password)) ||
	    (u->db && simple_command(q, "SELECT %d", u->db)))
		goto fail;
	return 0;
fail:
	queue_disconnect(q);
	return -1;
}

void queue_disconnect(struct queue *q)
{
	redisFree(q->redis);
	q->redis = NULL;
}

int queue_push(struct queue *q, const char *batch_id)
{
	return simple_command(q, "XADD %s * %s %s", QUEUE_STREAM, QUEUE_FIELD, batch_id);
}

int queue_join(struct queue *q)
{
	if (simple_command(q, "XGROUP CREATE %s %s 0 MKSTREAM", QUEUE_STREAM, QUEUE_GROUP) == 0)
		return 0;
	/* a group that exists already is what we wanted */
	return strstr(q->error, ": BUSYGROUP ") ? 0 : -1;
}

/* Reads the first entry of an XREADGROUP or XAUTOCLAIM entry list into job (but for its
 * deliveries).  Returns 1 when there was one. */
static int first_entry(const redisReply *entries, struct queue_job *job)
{
	const redisReply *e, *fields;

	if (!entries || entries->type != REDIS_REPLY_ARRAY || entries->elements == 0)
		return 0;
	e = entries->element[0];
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
		return 0;
	snprintf(job->id, sizeof job->id, "%s", e->element[0]->str);
	job->batch[0] = '\0';
	fields = e->element[1];
	for (size_t i = 0; fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements; i += 2)
		if (strcmp(fields->element[i]->str, QUEUE_FIELD) == 0)
			snprintf(job->batch, sizeof job->batch, "%s", fields->element[i + 1]->str);
	return 1;
}

/* How often the entry has been delivered (XPENDING's counter), or 1 when unknown. */
static long deliveries(struct queue *q, const char *id)
{
	redisReply *r = command(q, "XPENDING %s %s %s %s 1", QUEUE_STREAM, QUEUE_GROUP, id, id);
	long n = 1;

	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 4)
		n = (long)r->element[0]->element[3]->integer;
	if (r)
		freeReplyObject(r);
	return n;
}

int queue_take(struct queue *q, const char *consumer, long idle_ms, long block_ms,
	       struct queue_job *job)
{
	redisReply *r;
	int got;

	r = command(q, "XAUTOCLAIM %s %s %s %ld 0-0 COUNT 1", QUEUE_STREAM, QUEUE_GROUP, consumer,
		    idle_ms);
	if (!r)
		return -1;
	got = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && first_entry(r->element[1], job);
	freeReplyObject(r);
	if (!got) {
		r = command(q, "XREADGROUP GROUP %s %s COUNT 1 BLOCK %ld STREAMS %s >", QUEUE_GROUP,
			    consumer, block_ms, QUEUE_STREAM);
		if (!r)
			return -1;
		got = r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 2 &&
		      first_entry(r->element[0]->element[1], job);
		freeReplyObject(r);
	}
	if (got)
		job->deliveries = deliveries(q, job->id);
	return got;
}

int queue_keep(struct queue *q, const char *consumer, const char *id)
{
	return simple_command(q, "XCLAIM %s %s %s 0 %s JUSTID", QUEUE_STREAM, QUEUE_GROUP,
			      consumer, id);
}

int queue_ack(struct queue *q, const char *id)
{
	return simple_command(q, "XACK %s %s %s", QUEUE_STREAM, QUEUE_GROUP, id);
}
