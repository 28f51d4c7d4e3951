/* GET /status/ID: the batch's status JSON, or with ?format=csv its output CSV; for a
 * browser that names no format, the status page. */
#include <stdlib.h>
#include <string.h>

#include "cgi.h"
#include "db.h"
#include "ui.h"

int batch_id_valid(const char *id)
{
	return strlen(id) == BATCH_ID_LEN && strspn(id, "0123456789abcdef") == BATCH_ID_LEN;
}

/* The output CSV, buffered so that a failure half-way still gets a clean error. */
static void answer_csv(struct db *d, const char *id)
{
	char *buf = NULL, disposition[128];
	size_t len = 0;
	bson_error_t err;
	FILE *mem = open_memstream(&buf, &len);
	int rc;

	if (!mem) {
		reply_error(500, NULL, "out of memory");
		return;
	}
	rc = db_status_csv(d, id, mem, &err);
	if (fclose(mem) != 0 && rc == 0) {
		reply_error(500, NULL, "out of memory");
		free(buf);
		return;
	}
	if (rc == 1) {
		reply_error(404, NULL, "no batch %s", id);
	} else if (rc) {
		reply_unavailable("MongoDB", "%s", err.message);
	} else {
		snprintf(disposition, sizeof disposition,
			 "Content-Disposition: attachment; filename=\"%s.csv\"\n", id);
		reply(200, "text/csv; charset=utf-8", disposition, buf, len);
	}
	free(buf);
}

/* The status as JSON or as a page, without the credentials of any URL in it. */
static void answer_status(struct db *d, const char *id, int html)
{
	bson_t status = BSON_INITIALIZER, out = BSON_INITIALIZER;
	bson_error_t err;
	int rc = db_status(d, id, &status, &err);

	if (rc == 0)
		redact_credentials(&status, &out);
	if (rc == 1)
		reply_error(404, NULL, "no batch %s", id);
	else if (rc)
		reply_unavailable("MongoDB", "%s", err.message);
	else if (html)
		ui_status(&out);
	else
		reply_json(200, NULL, &out);
	bson_destroy(&status);
	bson_destroy(&out);
}

int batch_owned(struct db *d, const char *id, const char *owner)
{
	bson_error_t err;
	int rc = owner ? db_batch_owned(d, id, owner, &err) : 0;

	if (rc == 1)
		reply_error(404, NULL, "no batch %s", id);
	else if (rc)
		reply_unavailable("MongoDB", "%s", err.message);
	return rc == 0;
}

void status(const struct request *rq, const char *id)
{
	static const char *const names[] = { "format", NULL };
	char *format = NULL, why[256];
	bson_error_t err;
	struct db d;

	if (query_parse(rq->query, names, &format, why, sizeof why)) {
		reply_error(400, NULL, "%s", why);
		return;
	}
	if (format && strcmp(format, "csv") != 0 && strcmp(format, "json") != 0)
		reply_error(400, NULL, "format must be csv or json");
	else if (!batch_id_valid(id))
		reply_error(404, NULL, "no such batch: a batch id is %d lowercase hex digits",
			    BATCH_ID_LEN);
	else if (!rq->cfg->mongodb_uri)
		reply_unavailable("MongoDB", "MONGODB_URI is not set");
	else if (db_open(&d, rq->cfg, &err))
		reply_unavailable("MongoDB", "%s", err.message);
	else {
		if (batch_owned(&d, id, rq->owner)) {
			if (format && strcmp(format, "csv") == 0)
				answer_csv(&d, id);
			else
				answer_status(&d, id, !format && wants_html());
		}
		db_close(&d);
	}
	query_free(names, &format);
}
