/* Bounded connections for healthz.c and metrics.c (backend.h). */
#include "backend.h"

int backend_db(struct db *d, const struct config *cfg, char *why, size_t len)
{
	bson_error_t err;

	if (!cfg->mongodb_uri) {
		snprintf(why, len, "MONGODB_URI is not set");
		return -1;
	}
	if (db_open_within(d, cfg, BACKEND_TIMEOUT_MS, &err)) {
		snprintf(why, len, "%s", err.message);
		return -1;
	}
	return 0;
}

int backend_queue(struct queue *q, const struct config *cfg, char *why, size_t len)
{
	int rc = queue_init(q, cfg->redis_url);

	q->timeout_ms = BACKEND_TIMEOUT_MS;
	if (rc || queue_connect(q)) {
		snprintf(why, len, "%s", q->error);
		return -1;
	}
	return 0;
}
