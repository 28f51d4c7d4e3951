/* GET /status/ID: the batch's status JSON with one page of its products
 * (?offset=N&limit=M), or with ?format=csv its output CSV, streamed; for a browser that
 * names no format, the status page. */
#include <stdlib.h>
#include <string.h>

#include "cgi.h"
#include "db.h"
#include "ui.h"

int batch_id_valid(const char *id)
{
	return strlen(id) == BATCH_ID_LEN && strspn(id, "0123456789abcdef") == BATCH_ID_LEN;
}

/* The CSV being answered: whether its header block is out, after which an error can
 * only cut it short. */
struct csv_answer {
	const char *id;
	bool begun;
};

static void csv_begin(void *arg)
{
	struct csv_answer *a = arg;
	char disposition[128];

	snprintf(disposition, sizeof disposition,
		 "Content-Disposition: attachment; filename=\"%s.csv\"\n", a->id);
	reply_start(200, "text/csv; charset=utf-8", disposition);
	a->begun = true;
}

/* The output CSV, streamed from a cursor, so that a batch of any size costs the same memory. */
static void answer_csv(struct db *d, const char *id)
{
	struct csv_answer a = { id, false };
	bson_error_t err;
	int rc = db_status_csv(d, id, stdout, csv_begin, &a, &err);

	if (rc == 1)
		reply_error(404, NULL, "no batch %s", id);
	else if (rc && !a.begun)
		reply_unavailable("MongoDB", "%s", err.message);
	else if (rc)
		warnx("the CSV of batch %s is cut short: %s", id, err.message);
}

/* The status as JSON or as a page, without the credentials of any URL in it. */
static void answer_status(struct db *d, const char *id, const struct db_page *page, int html)
{
	bson_t status = BSON_INITIALIZER, out = BSON_INITIALIZER;
	bson_error_t err;
	int rc = db_status(d, id, page, &status, &err);

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
	static const char *const names[] = { "format", "offset", "limit", NULL };
	enum { FORMAT, OFFSET, LIMIT };
	char *values[3], why[256];
	struct db_page page;
	bson_error_t err;
	struct db d;
	bool csv;

	if (query_parse(rq->query, names, values, why, sizeof why)) {
		reply_error(400, NULL, "%s", why);
		return;
	}
	csv = values[FORMAT] && strcmp(values[FORMAT], "csv") == 0;
	if (values[FORMAT] && !csv && strcmp(values[FORMAT], "json") != 0)
		reply_error(400, NULL, "format must be csv or json");
	else if (db_page_parse(values[OFFSET], values[LIMIT], &page, why, sizeof why))
		reply_error(400, NULL, "%s", why);
	else if (csv && (values[OFFSET] || values[LIMIT]))
		reply_error(400, NULL, "format=csv is every product: no offset or limit");
	else if (!batch_id_valid(id))
		reply_error(404, NULL, "no such batch: a batch id is %d lowercase hex digits",
			    BATCH_ID_LEN);
	else if (!rq->cfg->mongodb_uri)
		reply_unavailable("MongoDB", "MONGODB_URI is not set");
	else if (db_open(&d, rq->cfg, &err))
		reply_unavailable("MongoDB", "%s", err.message);
	else {
		if (batch_owned(&d, id, rq->owner)) {
			if (csv)
				answer_csv(&d, id);
			else
				answer_status(&d, id, &page, !values[FORMAT] && wants_html());
		}
		db_close(&d);
	}
	query_free(names, values);
}
