/* The job queue on a Redis stream and its consumer group, and the jobs' leases (queue.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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
	struct timeval connect_timeout = { 2, 0 }, reply_timeout = { 5, 0 };
	const struct redis_url *u = &q->url;

	if (q->timeout_ms > 0) {
		connect_timeout.tv_sec = reply_timeout.tv_sec = q->timeout_ms / 1000;
		connect_timeout.tv_usec = reply_timeout.tv_usec = q->timeout_ms % 1000 * 1000;
	}

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

/* Copies the string reply r into buf; "" when it is not a string. */
static void copy_str(char *buf, size_t len, const redisReply *r)
{
	snprintf(buf, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
}

/* Reads one stream entry ([id, [field, value, ...]]) into job, but for its deliveries.
 * Returns 1 when it is one. */
static int parse_entry(const redisReply *e, struct queue_job *job)
{
	const redisReply *fields;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
		return 0;
	memset(job, 0, sizeof *job);
	copy_str(job->id, sizeof job->id, e->element[0]);
	fields = e->element[1];
	for (size_t i = 0; fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements; i += 2) {
		const redisReply *name = fields->element[i], *value = fields->element[i + 1];
		if (name->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(name->str, QUEUE_FIELD) == 0)
			copy_str(job->batch, sizeof job->batch, value);
		else if (strcmp(name->str, QUEUE_CHUNK_FIELD) == 0)
			copy_str(job->chunk, sizeof job->chunk, value);
		else if (strcmp(name->str, QUEUE_ENDING_FIELD) == 0)
			copy_str(job->ending, sizeof job->ending, value);
	}
	return 1;
}

/* Reads the first entry of an XREADGROUP or XAUTOCLAIM entry list into job (but for its
 * deliveries).  Returns 1 when there was one. */
static int first_entry(const redisReply *entries, struct queue_job *job)
{
	if (!entries || entries->type != REDIS_REPLY_ARRAY || entries->elements == 0)
		return 0;
	return parse_entry(entries->element[0], job);
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

/* XAUTOCLAIM looks at a few pending entries a call (ten for each one it may return), so
 * each call goes on from where the last stopped, round the whole pending list: jobs
 * that are still running do not hide the idle ones behind them. */
static int claim_idle(struct queue *q, const char *consumer, long idle_ms, struct queue_job *job)
{
	redisReply *r = command(q, "XAUTOCLAIM %s %s %s %ld %s COUNT 1", QUEUE_STREAM, QUEUE_GROUP,
				consumer, idle_ms, q->claim_from[0] ? q->claim_from : "0-0");
	int got;

	if (!r)
		return -1;
	got = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && first_entry(r->element[1], job);
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1)
		copy_str(q->claim_from, sizeof q->claim_from, r->element[0]);
	freeReplyObject(r);
	return got;
}

int queue_take(struct queue *q, const char *consumer, long idle_ms, long block_ms,
	       struct queue_job *job)
{
	redisReply *r;
	int got = claim_idle(q, consumer, idle_ms, job);

	if (got < 0)
		return -1;
	if (!got) {
		/* no waiting while XAUTOCLAIM has not been round the pending list yet */
		if (strcmp(q->claim_from, "0-0") != 0)
			r = command(q, "XREADGROUP GROUP %s %s COUNT 1 STREAMS %s >", QUEUE_GROUP,
				    consumer, QUEUE_STREAM);
		else
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

int queue_lease_take(struct queue *q, const struct queue_job *job, long ttl_ms,
		     struct queue_lease *lease)
{
	redisReply *r;
	int taken;

	if (job->chunk[0])
		snprintf(lease->key, sizeof lease->key, "%s%s:%s", QUEUE_LEASE_PREFIX, job->batch, job->chunk);
	else
		snprintf(lease->key, sizeof lease->key, "%s%s", QUEUE_LEASE_PREFIX, job->batch);
	if (!(r = command(q, "INCR %s", QUEUE_FENCE)))
		return -1;
	lease->token = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	freeReplyObject(r);
	if (!(r = command(q, "SET %s %lld NX PX %ld", lease->key, lease->token, ttl_ms)))
		return -1;
	taken = r->type == REDIS_REPLY_STATUS;       /* OK; a null reply when the key exists */
	freeReplyObject(r);
	return taken;
}

/* Starts a transaction that commits only while key holds value: WATCH, GET, MULTI.
 * Returns 0 within the transaction, 1 (outside it) when key holds something else. */
static int begin_while_held(struct queue *q, const char *key, const char *value)
{
	redisReply *r;
	int ours;

	if (simple_command(q, "WATCH %s", key) || !(r = command(q, "GET %s", key)))
		return -1;
	ours = r->type == REDIS_REPLY_STRING && strcmp(r->str, value) == 0;
	freeReplyObject(r);
	if (!ours)
		return simple_command(q, "UNWATCH") ? -1 : 1;
	return simple_command(q, "MULTI") ? -1 : 0;
}

/* The same while the lease holds its token. */
static int lease_begin(struct queue *q, const struct queue_lease *lease)
{
	char token[32];

	snprintf(token, sizeof token, "%lld", lease->token);
	return begin_while_held(q, lease->key, token);
}

/* Commits the transaction (EXEC), handing its replies to *replies when asked (the
 * caller frees them; set only when it ran).  Returns 1 when it did not run because a
 * watched key (the lease, after lease_begin) changed. */
static int commit_replies(struct queue *q, redisReply **replies)
{
	redisReply *r = command(q, "EXEC");
	int rc = 0;

	if (!r)
		return -1;
	if (r->type == REDIS_REPLY_NIL)
		rc = 1;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_ERROR) {
			snprintf(q->error, sizeof q->error, "EXEC: %s", r->element[i]->str);
			rc = -1;
		}
	if (rc == 0 && replies)
		*replies = r;
	else
		freeReplyObject(r);
	return rc;
}

static int lease_commit(struct queue *q)
{
	return commit_replies(q, NULL);
}

int queue_keep(struct queue *q, const char *consumer, const struct queue_job *job,
	       const struct queue_lease *lease, long ttl_ms)
{
	int rc = lease_begin(q, lease);

	if (rc != 0)
		return rc;
	if (simple_command(q, "PEXPIRE %s %ld", lease->key, ttl_ms) ||
	    simple_command(q, "XCLAIM %s %s %s 0 %s JUSTID", QUEUE_STREAM, QUEUE_GROUP, consumer, job->id))
		return -1;
	return lease_commit(q);
}

int queue_ack(struct queue *q, const struct queue_job *job, const struct queue_lease *lease)
{
	int rc = lease ? lease_begin(q, lease) : 0;

	if (rc != 0)
		return rc;
	if (simple_command(q, "XACK %s %s %s", QUEUE_STREAM, QUEUE_GROUP, job->id) ||
	    simple_command(q, "XDEL %s %s", QUEUE_STREAM, job->id) ||
	    (lease && simple_command(q, "DEL %s", lease->key)))
		return -1;
	return lease ? lease_commit(q) : 0;
}

int queue_release(struct queue *q, const char *consumer, const struct queue_job *job,
		  const struct queue_lease *lease, long idle_ms)
{
	long undone = job->deliveries > 0 ? job->deliveries - 1 : 0;
	int rc = lease ? lease_begin(q, lease) : 0;

	if (rc != 0)
		return rc;
	if (simple_command(q, "XCLAIM %s %s %s 0 %s IDLE %ld RETRYCOUNT %ld JUSTID", QUEUE_STREAM,
			   QUEUE_GROUP, consumer, job->id, idle_ms, undone) ||
	    (lease && simple_command(q, "DEL %s", lease->key)))
		return -1;
	return lease ? lease_commit(q) : 0;
}

int queue_lease_drop(struct queue *q, const struct queue_lease *lease)
{
	int rc = lease_begin(q, lease);

	if (rc != 0)
		return rc;
	return simple_command(q, "DEL %s", lease->key) ? -1 : lease_commit(q);
}

int queue_lock(struct queue *q, const char *key, const char *owner, long ttl_ms)
{
	redisReply *r = command(q, "SET %s %s NX PX %ld", key, owner, ttl_ms);
	int taken;

	if (!r)
		return -1;
	taken = r->type == REDIS_REPLY_STATUS;
	freeReplyObject(r);
	return taken;
}

int queue_unlock(struct queue *q, const char *key, const char *owner)
{
	int rc = begin_while_held(q, key, owner);

	if (rc != 0)
		return rc;
	return simple_command(q, "DEL %s", key) ? -1 : lease_commit(q);
}

int queue_scan(struct queue *q, int (*each)(const struct queue_job *job, void *arg), void *arg)
{
	char from[72] = "-";
	struct queue_job job;
	redisReply *r;
	size_t n;
	int stop = 0;

	do {
		if (!(r = command(q, "XRANGE %s %s + COUNT 500", QUEUE_STREAM, from)))
			return -1;
		n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
		for (size_t i = 0; i < n && !stop; i++)
			if (parse_entry(r->element[i], &job)) {
				stop = each(&job, arg);
				snprintf(from, sizeof from, "(%s", job.id);  /* the next page starts after it */
			}
		freeReplyObject(r);
	} while (n == 500 && !stop);
	return 0;
}

/* The webhook delivery due first at now_ms, into id: 1, or 0 when none is due. */
static int webhook_due(struct queue *q, long long now_ms, char *id, size_t len)
{
	redisReply *r = command(q, "ZRANGEBYSCORE %s -inf %lld LIMIT 0 1", QUEUE_WEBHOOKS, now_ms);
	int due;

	if (!r)
		return -1;
	due = r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_STRING;
	if (due)
		copy_str(id, len, r->element[0]);
	freeReplyObject(r);
	return due;
}

/* Reads the delivery's event and queued_at into w (event NULL when its hash is gone). */
static int webhook_read(struct queue *q, struct queue_webhook *w)
{
	redisReply *r = command(q, "HMGET %s%s event queued_at", QUEUE_WEBHOOK_PREFIX, w->id);
	int rc = 0;

	if (!r)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING) {
		if (!(w->event = strdup(r->element[0]->str))) {
			snprintf(q->error, sizeof q->error, "out of memory");
			rc = -1;
		}
		if (r->element[1]->type == REDIS_REPLY_STRING)
			w->queued_at_ms = strtoll(r->element[1]->str, NULL, 10);
	}
	freeReplyObject(r);
	return rc;
}

/* One try at a claim, within WATCH of the sorted set: 1 claimed, 0 none due, 2 when
 * another deliverer changed the set meanwhile or the member had no hash (try again). */
static int webhook_claim_once(struct queue *q, long long now_ms, long long until_ms,
			      struct queue_webhook *w)
{
	redisReply *done = NULL;
	int rc;

	if (simple_command(q, "WATCH %s", QUEUE_WEBHOOKS))
		return -1;
	if ((rc = webhook_due(q, now_ms, w->id, sizeof w->id)) <= 0)
		return rc < 0 || simple_command(q, "UNWATCH") ? -1 : 0;
	if (webhook_read(q, w) || simple_command(q, "MULTI"))
		return -1;
	if (w->event ? simple_command(q, "ZADD %s XX %lld %s", QUEUE_WEBHOOKS, until_ms, w->id) ||
		       simple_command(q, "HINCRBY %s%s attempts 1", QUEUE_WEBHOOK_PREFIX, w->id)
		     : simple_command(q, "ZREM %s %s", QUEUE_WEBHOOKS, w->id))
		return -1;
	if ((rc = commit_replies(q, &done)) != 0)
		return rc < 0 ? -1 : 2;
	if (w->event && done->type == REDIS_REPLY_ARRAY && done->elements == 2 &&
	    done->element[1]->type == REDIS_REPLY_INTEGER)
		w->attempt = (long)done->element[1]->integer;
	freeReplyObject(done);
	return w->event ? 1 : 2;
}

/* Tries a few times: each failed try means another deliverer got a delivery first. */
#define WEBHOOK_CLAIM_TRIES 10

int queue_webhook_claim(struct queue *q, long long now_ms, long long until_ms,
			struct queue_webhook *w)
{
	for (int i = 0; i < WEBHOOK_CLAIM_TRIES; i++) {
		int rc;

		memset(w, 0, sizeof *w);
		if ((rc = webhook_claim_once(q, now_ms, until_ms, w)) != 2) {
			if (rc != 1)
				queue_webhook_free(w);
			return rc;
		}
		queue_webhook_free(w);
	}
	return 0;
}

int queue_webhook_retry(struct queue *q, const char *id, long long at_ms)
{
	return simple_command(q, "ZADD %s XX %lld %s", QUEUE_WEBHOOKS, at_ms, id);
}

int queue_webhook_remove(struct queue *q, const char *id)
{
	if (simple_command(q, "MULTI") || simple_command(q, "ZREM %s %s", QUEUE_WEBHOOKS, id) ||
	    simple_command(q, "DEL %s%s", QUEUE_WEBHOOK_PREFIX, id))
		return -1;
	return lease_commit(q) < 0 ? -1 : 0;
}

void queue_webhook_free(struct queue_webhook *w)
{
	free(w->event);
	w->event = NULL;
}

int queue_count(struct queue *q, const char *name, long by)
{
	return simple_command(q, "HINCRBY %s %s %ld", QUEUE_METRICS, name, by);
}

int queue_cancelled(struct queue *q, const char *batch_id)
{
	redisReply *r = command(q, "EXISTS %s%s", QUEUE_CANCEL_PREFIX, batch_id);
	int on;

	if (!r)
		return -1;
	on = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
	freeReplyObject(r);
	return on;
}

/* ---- the operators' side ---- */

int queue_cancel(struct queue *q, const char *batch_id, int on)
{
	if (on)
		return simple_command(q, "SET %s%s 1 EX %d", QUEUE_CANCEL_PREFIX, batch_id,
				      QUEUE_CANCEL_TTL);
	return simple_command(q, "DEL %s%s", QUEUE_CANCEL_PREFIX, batch_id);
}

int queue_ping(struct queue *q)
{
	return simple_command(q, "PING");
}

/* An integer reply's value, or fallback. */
static long long integer_of(const redisReply *r, long long fallback)
{
	return r && r->type == REDIS_REPLY_INTEGER ? r->integer : fallback;
}

/* The group's lag and pending count, from XINFO GROUPS (a flat name, value list a group).
 * Leaves s as it is when the group is not there yet (no dispatcher has run). */
static int group_counts(struct queue *q, struct queue_stats *s)
{
	redisReply *r = command(q, "XINFO GROUPS %s", QUEUE_STREAM);

	if (!r)
		return strstr(q->error, "no such key") ? 0 : -1;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *g = r->element[i];
		int ours = 0;

		for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2)
			if (!strcmp(g->element[k]->str, "name"))
				ours = !strcmp(g->element[k + 1]->str, QUEUE_GROUP);
		for (size_t k = 0; ours && k + 1 < g->elements; k += 2) {
			if (!strcmp(g->element[k]->str, "lag"))
				s->waiting = integer_of(g->element[k + 1], -1);  /* nil: unknown */
			else if (!strcmp(g->element[k]->str, "pending"))
				s->pending = integer_of(g->element[k + 1], 0);
		}
	}
	freeReplyObject(r);
	return 0;
}

/* The number a reply string starts with: the milliseconds of an entry id ("MS-SEQ"),
 * the seconds or microseconds of TIME. */
static double leading_number(const char *s)
{
	return strtod(s, NULL);
}

/* The age of the oldest pending entry, by its id's time and Redis's clock (XPENDING's
 * summary names the smallest id). */
static int oldest_pending(struct queue *q, struct queue_stats *s)
{
	redisReply *p, *t;
	int rc = 0;

	if (s->pending == 0)
		return 0;
	if (!(p = command(q, "XPENDING %s %s", QUEUE_STREAM, QUEUE_GROUP)))
		return -1;
	if (!(t = command(q, "TIME"))) {
		freeReplyObject(p);
		return -1;
	}
	if (p->type == REDIS_REPLY_ARRAY && p->elements == 4 && p->element[1]->type == REDIS_REPLY_STRING &&
	    t->type == REDIS_REPLY_ARRAY && t->elements == 2) {
		double now_ms = leading_number(t->element[0]->str) * 1000 +
				leading_number(t->element[1]->str) / 1000;
		s->oldest_pending_s = (now_ms - leading_number(p->element[1]->str)) / 1000;
	} else {
		snprintf(q->error, sizeof q->error, "XPENDING: an unexpected reply");
		rc = -1;
	}
	freeReplyObject(p);
	freeReplyObject(t);
	return rc;
}

int queue_stats(struct queue *q, struct queue_stats *s)
{
	redisReply *len;

	memset(s, 0, sizeof *s);
	if (!(len = command(q, "XLEN %s", QUEUE_STREAM)))
		return -1;
	s->waiting = integer_of(len, 0);        /* all of them, until a group reads any */
	freeReplyObject(len);
	if (group_counts(q, s) || oldest_pending(q, s))
		return -1;
	if (!(len = command(q, "ZCARD %s", QUEUE_WEBHOOKS)))
		return -1;
	s->webhooks_pending = integer_of(len, 0);
	freeReplyObject(len);
	s->counters = command(q, "HGETALL %s", QUEUE_METRICS);
	return s->counters ? 0 : -1;
}

void queue_stats_free(struct queue_stats *s)
{
	if (s->counters)
		freeReplyObject(s->counters);
	s->counters = NULL;
}
