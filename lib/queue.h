/* The job queue between imgpipe.cgi, process-batch and imgpipe-dispatch, on Redis through
 * hiredis: the stream imgpipe:jobs, read by the consumer group "dispatchers".  An entry is
 * a job: "batch ID" plans batch ID (process-batch records its rows and queues its chunks),
 * "batch ID chunk N ending E" runs chunk N of that batch's ending E.  A stream rather than
 * a list, so that a job a dispatcher took but did not finish stays pending until it is
 * acknowledged, and is taken again when its dispatcher falls silent.
 *
 * At most one run of a job at a time, on any host: its lease, the key imgpipe:lease:JOB
 * (JOB is BATCH, or BATCH:N for a chunk), holds the run's fencing token (INCR of
 * imgpipe:fence) and lives --claim-idle.  Renewing it, acknowledging the job and handing
 * it back happen in a WATCH/MULTI/EXEC transaction that commits only while the lease still
 * holds the run's token: a dispatcher whose job was taken over cannot take it back.
 *
 *   imgpipe.cgi:      queue_init, queue_connect, queue_push, queue_disconnect; for the
 *                     operators' routes queue_cancel, queue_ping, queue_stats
 *   imgpipe-dispatch: queue_init, then for each connection queue_connect, queue_join,
 *                     and queue_take, queue_lease_take, queue_keep, queue_ack,
 *                     queue_release, queue_lease_drop, queue_cancelled as its jobs run;
 *                     queue_lock, queue_unlock, queue_scan and queue_push for the sweeper
 *   process-batch:    XADD of chunk jobs, GET/PTTL of its lease and HINCRBY of the
 *                     counters, with redis-cli; a batch's webhook event queued (below)
 * Besides the stream and the leases: a cancelled batch's key QUEUE_CANCEL_PREFIX + id,
 * and the hash QUEUE_METRICS of counters that only grow.
 *
 * Webhook deliveries waiting for their next attempt: the hash QUEUE_WEBHOOK_PREFIX +
 * WEBHOOK_ID (fields "event", the event record notify reads, with its webhook_id;
 * "queued_at", ms since the epoch; "attempts", those begun) and its member WEBHOOK_ID in
 * the sorted set QUEUE_WEBHOOKS, scored by the time of its next attempt (ms since the
 * epoch).  process-batch queues one with a Lua script (EVAL: HSETNX of the event, then
 * queued_at and ZADD), so that announcing an ending again queues nothing more;
 * imgpipe-dispatch's deliverer claims, reschedules and removes them (queue_webhook_*). 
 * Functions return 0 (or 1 for the second outcome they name), or -1 with one line in
 * q->error: the connection's reason, or Redis's error reply after the command's name. */
#ifndef IMGPIPE_QUEUE_H
#define IMGPIPE_QUEUE_H

#include <hiredis.h>
#include "redisurl.h"

#define QUEUE_STREAM "imgpipe:jobs"
#define QUEUE_GROUP "dispatchers"
#define QUEUE_FIELD "batch"
#define QUEUE_CHUNK_FIELD "chunk"
#define QUEUE_ENDING_FIELD "ending"
#define QUEUE_LEASE_PREFIX "imgpipe:lease:"
#define QUEUE_FENCE "imgpipe:fence"
#define QUEUE_CANCEL_PREFIX "imgpipe:cancel:"
#define QUEUE_CANCEL_TTL 604800         /* seconds a cancel key lives: a week */
#define QUEUE_METRICS "imgpipe:metrics"
#define QUEUE_WEBHOOKS "imgpipe:webhooks"
#define QUEUE_WEBHOOK_PREFIX "imgpipe:webhook:"

struct queue {
	struct redis_url url;
	redisContext *redis;    /* NULL while not connected */
	long timeout_ms;        /* for both connecting and replies; 0: 2 s and 5 s */
	char claim_from[64];    /* where the next XAUTOCLAIM starts ("" for the beginning) */
	char error[512];
};

/* One job as the dispatcher takes it. */
struct queue_job {
	char id[64];            /* the stream entry's id */
	char batch[128];        /* its batch id; empty when the entry has none */
	char chunk[24];         /* a chunk job's chunk number; empty for a planning job */
	char ending[24];        /* a chunk job's ending of the batch */
	long deliveries;        /* how often it has been delivered, this time included */
};

/* A run's hold on its job. */
struct queue_lease {
	char key[192];          /* imgpipe:lease:BATCH or imgpipe:lease:BATCH:CHUNK */
	long long token;        /* the fencing token, unique to the run */
};

/* Reads REDIS_URL (NULL when unset); no connection yet. */
int queue_init(struct queue *q, const char *redis_url);
/* Connects, then AUTH and SELECT as the URL asks.  Waits at most 2 s for the connection
 * and 5 s for any reply (a dispatcher's blocking read waits less than that), or
 * q->timeout_ms for each when it is set. */
int queue_connect(struct queue *q);
void queue_disconnect(struct queue *q);

/* Queues the planning job of batch_id (XADD): the CGI for a new batch, the sweeper for
 * one that lost its jobs. */
int queue_push(struct queue *q, const char *batch_id);

/* Marks batch_id cancelled (on: SET with QUEUE_CANCEL_TTL), or clears the mark (DEL),
 * for the dispatchers that run its jobs to see. */
int queue_cancel(struct queue *q, const char *batch_id, int on);
/* One round trip (PING), for health checks. */
int queue_ping(struct queue *q);

/* What GET /metrics shows of Redis. */
struct queue_stats {
	long long waiting;      /* entries no dispatcher has taken yet (the group's lag) */
	long long pending;      /* taken, not yet acknowledged (XPENDING) */
	double oldest_pending_s;        /* age of the oldest pending entry; 0 when none */
	long long webhooks_pending;     /* webhook deliveries not yet done (ZCARD) */
	redisReply *counters;   /* HGETALL QUEUE_METRICS: name, value, name, value... */
};
/* Fills s; free with queue_stats_free. */
int queue_stats(struct queue *q, struct queue_stats *s);
void queue_stats_free(struct queue_stats *s);

/* The dispatcher's side.  Makes sure the group exists (XGROUP CREATE), reading the stream
 * from its start, so that jobs queued before any dispatcher ran are taken too. */
int queue_join(struct queue *q);
/* Takes one job for consumer: first one whose dispatcher has been silent for idle_ms
 * (XAUTOCLAIM, going on round the pending list from one call to the next), else a new
 * one (XREADGROUP), waiting up to block_ms for it once the round is complete.  Returns 1
 * with job filled in, 0 when none came. */
int queue_take(struct queue *q, const char *consumer, long idle_ms, long block_ms,
	       struct queue_job *job);
/* Takes the job's lease for ttl_ms with a new fencing token (INCR, then SET NX PX).
 * Returns 1 with lease filled in, 0 when another run still holds it. */
int queue_lease_take(struct queue *q, const struct queue_job *job, long ttl_ms,
		     struct queue_lease *lease);
/* The heartbeat of a running job: while the lease holds its token, renews it for ttl_ms
 * and resets the entry's idle time (PEXPIRE, XCLAIM JUSTID).  Returns 1, changing
 * nothing, when the lease was lost (expired, or taken by another run). */
int queue_keep(struct queue *q, const char *consumer, const struct queue_job *job,
	       const struct queue_lease *lease, long ttl_ms);
/* Acknowledges a job done with for good, deletes its entry (XACK, XDEL) and its lease.
 * With a lease, only while it holds its token (else returns 1, acknowledging nothing);
 * NULL for an entry that never ran (one without a batch). */
int queue_ack(struct queue *q, const struct queue_job *job, const struct queue_lease *lease);
/* Gives a taken job back undone, without counting the delivery (XCLAIM RETRYCOUNT),
 * idle for idle_ms: with idle_ms the claim idle time, any dispatcher takes it at once.
 * With a lease, only while it holds its token (else returns 1), and the lease goes. */
int queue_release(struct queue *q, const char *consumer, const struct queue_job *job,
		  const struct queue_lease *lease, long idle_ms);
/* Deletes the lease while it holds its token, so that the job's next run need not wait
 * for it to expire.  Returns 1 when it was lost already. */
int queue_lease_drop(struct queue *q, const struct queue_lease *lease);

/* Adds by to the counter name of QUEUE_METRICS (HINCRBY). */
int queue_count(struct queue *q, const char *name, long by);

/* Whether batch_id has been cancelled (EXISTS): 1 or 0, or -1. */
int queue_cancelled(struct queue *q, const char *batch_id);

/* Takes the lock key for ttl_ms in owner's name (SET NX PX): 1 when taken, 0 when another
 * holds it.  For work one dispatcher of all should do in each period. */
int queue_lock(struct queue *q, const char *key, const char *owner, long ttl_ms);
/* Gives the lock up while owner holds it, so that another takes it at once.  Returns 1
 * when owner held it no longer. */
int queue_unlock(struct queue *q, const char *key, const char *owner);
/* Calls each for every entry on the stream, oldest first (XRANGE, a page at a time); the
 * entries are the jobs queued or running, since acknowledged ones are deleted.  Stops
 * when each returns non-zero. */
int queue_scan(struct queue *q, int (*each)(const struct queue_job *job, void *arg), void *arg);

/* The deliverer's side: one webhook delivery claimed for its attempt. */
struct queue_webhook {
	char id[160];           /* its webhook-id */
	char *event;            /* the event record (JSON), to free with queue_webhook_free */
	long long queued_at_ms;
	long attempt;           /* this attempt's number, from 1 */
};
/* Claims the delivery due first (its next attempt at or before now_ms) for one attempt:
 * moves its next attempt to until_ms and counts the attempt, in a WATCH/MULTI/EXEC
 * transaction, so that no two deliverers attempt it at once, and a deliverer that dies
 * mid-attempt only delays it.  A member left without its hash is removed.  Returns 1
 * with w filled in, 0 when none is due. */
int queue_webhook_claim(struct queue *q, long long now_ms, long long until_ms,
			struct queue_webhook *w);
/* Sets the delivery's next attempt to at_ms (ZADD XX). */
int queue_webhook_retry(struct queue *q, const char *id, long long at_ms);
/* Removes the delivery, delivered or given up (ZREM and DEL, in one transaction). */
int queue_webhook_remove(struct queue *q, const char *id);
void queue_webhook_free(struct queue_webhook *w);

#endif
