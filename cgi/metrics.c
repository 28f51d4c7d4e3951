/* GET /metrics: the Prometheus text exposition format (version 0.0.4).  Cheap at any
 * batch size: batches are counted by status in one aggregation of the batches collection,
 * the job queue is read with XLEN, XINFO GROUPS and XPENDING, and the counters come from
 * the Redis hash QUEUE_METRICS, which process-batch increments (HINCRBY) at the end of
 * each run with what that run recorded, so they never go down.  The metrics and example
 * alerts are documented in imgpipe.cgi(1). */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cgi.h"
#define STAGE_PREFIX "stage_errors:"

/* The counters of QUEUE_METRICS shown even before process-batch first writes them. */
static const struct counter {
	const char *field, *help;
} counters[] = {
	{ "images_done", "Images compressed, stored and recorded." },
	{ "images_failed", "Images recorded with an error." },
	{ "images_reused", "Images whose stored output was reused rather than made again." },
	{ "webhook_deliveries_failed", "Webhook events not delivered after all their attempts." },
};

/* The stages whose errors are shown even while there are none. */
static const char *const stages[] = { "fetchimg", "shrink", "s3put", "dbrecord", NULL };

/* The value of field in the HGETALL reply, or 0. */
static long long counter_value(const redisReply *hash, const char *field)
{
	for (size_t i = 0; hash->type == REDIS_REPLY_ARRAY && i + 1 < hash->elements; i += 2)
		if (strcmp(hash->element[i]->str, field) == 0)
			return strtoll(hash->element[i + 1]->str, NULL, 10);
	return 0;
}

/* A stage name as process-batch writes it (lowercase letters, digits, '_'); anything
 * else in the hash is not shown, so that a label value never needs escaping. */
static int stage_name_ok(const char *s)
{
	return *s && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(s);
}

static void header(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_batches(FILE *out, const int64_t *counts)
{
	header(out, "imgpipe_batches", "gauge", "Batches by status.");
	for (size_t i = 0; db_statuses[i]; i++)
		fprintf(out, "imgpipe_batches{status=\"%s\"} %lld\n", db_statuses[i],
			(long long)counts[i]);
}

static void write_queue(FILE *out, const struct queue_stats *st)
{
	header(out, "imgpipe_jobs_queued", "gauge", "Jobs no dispatcher has taken yet.");
	if (st->waiting >= 0)
		fprintf(out, "imgpipe_jobs_queued %lld\n", st->waiting);
	else
		fprintf(out, "imgpipe_jobs_queued NaN\n");
	header(out, "imgpipe_jobs_pending", "gauge",
	       "Jobs taken by a dispatcher and not yet acknowledged (running, or to be retried).");
	fprintf(out, "imgpipe_jobs_pending %lld\n", st->pending);
	header(out, "imgpipe_oldest_pending_job_age_seconds", "gauge",
	       "Age of the oldest pending job, since it was queued; 0 when none is pending.");
	fprintf(out, "imgpipe_oldest_pending_job_age_seconds %.3f\n", st->oldest_pending_s);
	header(out, "imgpipe_webhooks_pending", "gauge",
	       "Webhook deliveries queued and not yet delivered or given up.");
	fprintf(out, "imgpipe_webhooks_pending %lld\n", st->webhooks_pending);
}

static void write_counters(FILE *out, const redisReply *hash)
{
	const size_t plen = strlen(STAGE_PREFIX);
	char name[96];

	for (size_t i = 0; i < sizeof counters / sizeof *counters; i++) {
		snprintf(name, sizeof name, "imgpipe_%s_total", counters[i].field);
		header(out, name, "counter", counters[i].help);
		fprintf(out, "%s %lld\n", name, counter_value(hash, counters[i].field));
	}
	header(out, "imgpipe_stage_errors_total", "counter",
	       "Image errors by the stage that failed (the error's \"stage: \" prefix).");
	for (size_t i = 0; stages[i]; i++) {
		snprintf(name, sizeof name, STAGE_PREFIX "%s", stages[i]);
		fprintf(out, "imgpipe_stage_errors_total{stage=\"%s\"} %lld\n", stages[i],
			counter_value(hash, name));
	}
	for (size_t i = 0; hash->type == REDIS_REPLY_ARRAY && i + 1 < hash->elements; i += 2) {
		const char *field = hash->element[i]->str, *stage = field + plen;
		int known = 0;

		if (strncmp(field, STAGE_PREFIX, plen) != 0 || !stage_name_ok(stage))
			continue;
		for (size_t k = 0; stages[k]; k++)
			known |= strcmp(stages[k], stage) == 0;
		if (!known)
			fprintf(out, "imgpipe_stage_errors_total{stage=\"%s\"} %s\n", stage,
				hash->element[i + 1]->str);
	}
}

/* Reads both backends (each wait bounded), then writes the exposition to out.  On a
 * failure *backend names the one that failed, and why says why. */
static int collect(const struct config *cfg, FILE *out, const char **backend, char *why,
		   size_t len)
{
	int64_t counts[DB_STATUS_COUNT];
	struct queue_stats st = { 0 };
	struct queue q;
	struct db d;
	bson_error_t err;
	int rc;

	*backend = "MongoDB";
	if (backend_db(&d, cfg, why, len))
		return -1;
	rc = db_batch_counts(&d, counts, &err);
	db_close(&d);
	if (rc) {
		snprintf(why, len, "%s", err.message);
		return -1;
	}
	*backend = "Redis";
	rc = backend_queue(&q, cfg, why, len);
	if (rc == 0 && (rc = queue_stats(&q, &st)) != 0)
		snprintf(why, len, "%s", q.error);
	if (rc == 0) {
		write_batches(out, counts);
		write_queue(out, &st);
		write_counters(out, st.counters);
	}
	queue_stats_free(&st);
	queue_disconnect(&q);
	return rc ? -1 : 0;
}

void metrics(const struct request *rq, const char *rest)
{
	char *buf = NULL, why[512];
	const char *backend;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	int rc;

	(void)rest;
	if (!out) {
		reply_error(500, NULL, "out of memory");
		return;
	}
	rc = collect(rq->cfg, out, &backend, why, sizeof why);
	if (fclose(out) != 0 && rc == 0)
		reply_error(500, NULL, "out of memory");
	else if (rc)
		reply_unavailable(backend, "%s", why);
	else
		reply(200, "text/plain; version=0.0.4; charset=utf-8", NULL, buf, len);
	free(buf);
}
