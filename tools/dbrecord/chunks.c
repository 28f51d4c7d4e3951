/* dbrecord's commands for a batch spread over chunks: each job's record in the collection
 * "chunks", and the claim of the batch's end.
 *
 * For ending E of a batch (0, one more after each retry), "chunks" holds:
 *   BATCH:E:plan  {batch_id, ending, host, hosts, started, chunk_rows, ended, chunks_total}
 *   BATCH:E:N     {batch_id, ending, chunk: N, host, hosts, started, ended}     one a chunk
 *   BATCH:E:end   {batch_id, ending, finisher: "plan" or "N", at, reason}
 * (reason: why the batch ends at once, failed, when a job claims its end early: a cancel,
 * a batch that cannot run, a job given up).
 * A job's document is written only by that job's run, which its lease keeps single, and
 * the end's only by inserting it.  So nothing here needs two writers' updates of one
 * document to be atomic: FerretDB's SQLite backend loses such updates (it reads, then
 * writes the document), while inserting an _id that exists fails on every server.  The one
 * job whose insert succeeds is the finisher, the only one to end the batch. */
#include <stdlib.h>
#include <string.h>

#include "dbrecord.h"

/* The job a chunk command is about, and its documents' ids. */
struct job_ref {
	const char *batch;
	int64_t ending;            /* -1 until read: the batch's current ending */
	const char *job;           /* "plan" or the chunk number */
	int64_t chunk;             /* -1 for the planning job */
	int64_t chunk_rows;        /* the planning job's rows a chunk; -1 when not given */
	char doc_id[256], plan_id[256], end_id[256];
};

static mongoc_collection_t *chunks;

/* Finds the document _id = id of collection c into *found (NULL when there is none;
 * the caller destroys it), with only the fields of projection when it is not NULL. */
static int find_by_id(mongoc_collection_t *c, const char *id, const bson_t *projection,
		      bson_t **found, bson_error_t *err)
{
	bson_t *filter = BCON_NEW("_id", BCON_UTF8(id)), *opts = bson_new();
	mongoc_cursor_t *cur;
	const bson_t *doc;
	int rc = 0;

	if (projection)
		BSON_APPEND_DOCUMENT(opts, "projection", projection);
	cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
	*found = NULL;
	if (mongoc_cursor_next(cur, &doc))
		*found = bson_copy(doc);
	else if (mongoc_cursor_error(cur, err))
		rc = -1;
	mongoc_cursor_destroy(cur);
	bson_destroy(opts);
	bson_destroy(filter);
	return rc;
}

/* The batch's fields a job decides on, into *batch (NULL when there is no such batch). */
static int read_batch(const char *id, bson_t **batch, bson_error_t *err)
{
	bson_t *fields = BCON_NEW("status", BCON_INT32(1), "ending", BCON_INT32(1),
				  "cancel_requested", BCON_INT32(1));
	int rc = find_by_id(db.batches, id, fields, batch, err);

	bson_destroy(fields);
	return rc;
}

static void set_ids(struct job_ref *j)
{
	snprintf(j->doc_id, sizeof j->doc_id, "%s:%lld:%s", j->batch, (long long)j->ending, j->job);
	snprintf(j->plan_id, sizeof j->plan_id, "%s:%lld:plan", j->batch, (long long)j->ending);
	snprintf(j->end_id, sizeof j->end_id, "%s:%lld:end", j->batch, (long long)j->ending);
}

/* Upserts the job's document: the fields every one has, those of set (destroyed), and
 * when host is not NULL, host and the list of hosts that ran the job. */
static int write_job(const struct job_ref *j, bson_t *set, const char *host, bson_error_t *err)
{
	bson_t *sel = BCON_NEW("_id", BCON_UTF8(j->doc_id));
	bson_t *update = bson_new(), *opts = BCON_NEW("upsert", BCON_BOOL(true)), fields;
	bool ok;

	BSON_APPEND_UTF8(set, "batch_id", j->batch);
	BSON_APPEND_INT64(set, "ending", j->ending);
	if (j->chunk >= 0)
		BSON_APPEND_INT64(set, "chunk", j->chunk);
	if (host)
		BSON_APPEND_UTF8(set, "host", host);
	BSON_APPEND_DOCUMENT(update, "$set", set);
	if (host) {
		bson_append_document_begin(update, "$addToSet", -1, &fields);
		BSON_APPEND_UTF8(&fields, "hosts", host);
		bson_append_document_end(update, &fields);
	}
	ok = mongoc_collection_update_one(chunks, sel, update, opts, NULL, err);
	bson_destroy(set);
	bson_destroy(opts);
	bson_destroy(update);
	bson_destroy(sel);
	return ok ? 0 : -1;
}

/* The planning job of a batch 'in queue' puts it 'in progress'.  Conditional, so that a
 * batch ended meanwhile stays ended. */
static int begin_batch(const struct job_ref *j, bson_error_t *err)
{
	bson_t *sel = BCON_NEW("_id", BCON_UTF8(j->batch), "status", BCON_UTF8("in queue"));
	bson_t *update = BCON_NEW("$set", "{", "status", BCON_UTF8("in progress"),
				  "message", BCON_UTF8("processing"), "updatedAt", BCON_DATE_TIME(db_now()), "}");
	bool ok = mongoc_collection_update_one(db.batches, sel, update, NULL, NULL, err);

	bson_destroy(update);
	bson_destroy(sel);
	return ok ? 0 : -1;
}

/* The index of the count in claim_if_done; a no-op when it exists. */
static int index_chunks(bson_error_t *err)
{
	bson_t *keys = BCON_NEW("batch_id", BCON_INT32(1), "ending", BCON_INT32(1), "chunk", BCON_INT32(1));
	int rc = db_create_index(&db, "chunks", keys, "batch_id_1_ending_1_chunk_1", err);

	bson_destroy(keys);
	return rc;
}

/* The planning job's first start fixes the rows a chunk of this ending: a planning job
 * run again, on a host set otherwise, cuts the batch the same way. */
static int fix_chunk_rows(const struct job_ref *j, bson_error_t *err)
{
	bson_t *sel = BCON_NEW("_id", BCON_UTF8(j->doc_id), "chunk_rows", "{", "$exists", BCON_BOOL(false), "}");
	bson_t *update = BCON_NEW("$set", "{", "chunk_rows", BCON_INT64(j->chunk_rows), "}");
	bool ok = mongoc_collection_update_one(chunks, sel, update, NULL, NULL, err);

	bson_destroy(update);
	bson_destroy(sel);
	return ok ? 0 : -1;
}

/* start HOST: the job runs on HOST now (unless it has ended already: a job queued twice). */
static int job_start(const struct job_ref *j, const char *host, bson_error_t *err)
{
	bson_t *doc;
	int ended;

	if (j->chunk < 0 && (index_chunks(err) != 0 || begin_batch(j, err) != 0))
		return -1;
	if (find_by_id(chunks, j->doc_id, NULL, &doc, err) != 0)
		return -1;
	ended = doc && bson_has_field(doc, "ended");
	bson_destroy(doc);
	if (ended)
		return 0;
	if (write_job(j, BCON_NEW("started", BCON_DATE_TIME(db_now())), host, err) != 0)
		return -1;
	return j->chunk_rows > 0 ? fix_chunk_rows(j, err) : 0;
}

/* Inserts the end's document in the job's name, with reason unless it is NULL; the
 * first insert wins, later ones fail on its _id and change nothing. */
static int claim_end(const struct job_ref *j, const char *reason, bson_error_t *err)
{
	bson_t *doc = BCON_NEW("_id", BCON_UTF8(j->end_id), "batch_id", BCON_UTF8(j->batch),
			       "ending", BCON_INT64(j->ending), "finisher", BCON_UTF8(j->job),
			       "at", BCON_DATE_TIME(db_now()));
	bool ok;

	if (reason)
		BSON_APPEND_UTF8(doc, "reason", reason);
	ok = mongoc_collection_insert_one(chunks, doc, NULL, NULL, err);

	bson_destroy(doc);
	return ok || err->code == DUPLICATE_KEY ? 0 : -1;
}

/* Claims the end when the planning job has ended, with its chunks_total, and that many
 * chunks have ended.  Whichever job ends last sees them all (each writes its end before
 * counting), so one of the last ones claims. */
static int claim_if_done(const struct job_ref *j, bson_error_t *err)
{
	bson_t *plan, *filter;
	int64_t total, done;

	if (find_by_id(chunks, j->plan_id, NULL, &plan, err) != 0)
		return -1;
	total = plan && bson_has_field(plan, "ended") ? rec_int(plan, "chunks_total", -1) : -1;
	bson_destroy(plan);
	if (total < 0)
		return 0;
	filter = BCON_NEW("batch_id", BCON_UTF8(j->batch), "ending", BCON_INT64(j->ending),
			  "chunk", "{", "$gte", BCON_INT64(0), "$lt", BCON_INT64(total), "}",
			  "ended", "{", "$exists", BCON_BOOL(true), "}");
	done = mongoc_collection_count_documents(chunks, filter, NULL, NULL, NULL, err);
	bson_destroy(filter);
	if (done < 0)
		return -1;
	return done >= total ? claim_end(j, NULL, err) : 0;
}

/* end [TOTAL]: the job has ended (the planning job having queued TOTAL chunks; without
 * TOTAL, a planning job run again keeps the number it recorded). */
static int job_end(const struct job_ref *j, int64_t total, bson_error_t *err)
{
	bson_t *set = BCON_NEW("ended", BCON_DATE_TIME(db_now()));

	if (j->chunk < 0 && total >= 0)
		BSON_APPEND_INT64(set, "chunks_total", total);
	return write_job(j, set, NULL, err) == 0 ? claim_if_done(j, err) : -1;
}

/* The state the job goes on from, as one JSON object: {batch_id, status, ending,
 * cancel_requested, job, job_ended, chunk_rows, finisher, reason} (chunk_rows: the
 * planning job's, or null; finisher and reason: the claim's, or null). */
static int describe(const struct job_ref *j, const bson_t *batch, bson_t *out, bson_error_t *err)
{
	static const char *const claim_fields[] = { "finisher", "reason" };
	bson_t *doc, *end;
	bson_iter_t it;

	if (find_by_id(chunks, j->doc_id, NULL, &doc, err) != 0)
		return -1;
	if (find_by_id(chunks, j->end_id, NULL, &end, err) != 0) {
		bson_destroy(doc);
		return -1;
	}
	BSON_APPEND_UTF8(out, "batch_id", j->batch);
	if (bson_iter_init_find(&it, batch, "status"))
		bson_append_iter(out, NULL, 0, &it);
	BSON_APPEND_INT64(out, "ending", rec_int(batch, "ending", 0));
	BSON_APPEND_BOOL(out, "cancel_requested",
			 bson_iter_init_find(&it, batch, "cancel_requested") && bson_iter_as_bool(&it));
	BSON_APPEND_UTF8(out, "job", j->job);
	BSON_APPEND_BOOL(out, "job_ended", doc && bson_has_field(doc, "ended"));
	if (doc && rec_int(doc, "chunk_rows", 0) > 0)
		BSON_APPEND_INT64(out, "chunk_rows", rec_int(doc, "chunk_rows", 0));
	else
		BSON_APPEND_NULL(out, "chunk_rows");
	for (size_t i = 0; i < sizeof claim_fields / sizeof *claim_fields; i++)
		if (end && rec_str(end, claim_fields[i]))
			BSON_APPEND_UTF8(out, claim_fields[i], rec_str(end, claim_fields[i]));
		else
			BSON_APPEND_NULL(out, claim_fields[i]);
	bson_destroy(end);
	bson_destroy(doc);
	return 0;
}

enum action { START, END, CLAIM };

/* One chunk command from start to end, repeatable as a whole (every step is).  arg is
 * the host of START, the total of END, the reason of CLAIM.  Returns 1 when there is no
 * such batch. */
static int run_chunk(struct job_ref *j, enum action action, const char *arg, bson_t *out,
		     bson_error_t *err)
{
	bson_t *batch;
	int rc;

	if (read_batch(j->batch, &batch, err) != 0)
		return -1;
	if (!batch)
		return 1;
	if (j->ending < 0)
		j->ending = rec_int(batch, "ending", 0);
	bson_destroy(batch);
	set_ids(j);
	rc = action == START ? job_start(j, arg, err)
	   : action == END ? job_end(j, arg ? strtoll(arg, NULL, 10) : -1, err)
	   : claim_end(j, arg, err);
	/* the state after the change */
	if (rc == 0 && (rc = read_batch(j->batch, &batch, err)) == 0) {
		rc = batch ? describe(j, batch, out, err) : 1;
		bson_destroy(batch);
	}
	return rc;
}

void chunk_command(int argc, char **argv, const char *usage)
{
	static const char want[] = "chunk wants ID ENDING JOB start HOST [ROWS] | end [TOTAL] | claim [REASON]";
	struct job_ref j = { .chunk_rows = -1 };
	struct retry r = { 0 };
	bson_t out = BSON_INITIALIZER;
	bson_error_t error;
	enum action action;
	int rc, plan, arity;

	if (argc < 5 || !*argv[1])
		cli_usage_error(usage, "%s", want);
	plan = strcmp(argv[3], "plan") == 0;
	action = strcmp(argv[4], "start") == 0 ? START : strcmp(argv[4], "end") == 0 ? END : CLAIM;
	arity = action == START ? 6 : 5;
	if ((action == CLAIM || (action == END && plan)) && argc == 6)
		arity = 6;
	if (action == START && plan && argc == 7)
		arity = 7;
	if (argc != arity || (action == CLAIM && strcmp(argv[4], "claim") != 0))
		cli_usage_error(usage, "%s", want);
	j.batch = argv[1];
	j.ending = strcmp(argv[2], "-") == 0 ? -1 : cli_long("the ending", argv[2], 0, INT32_MAX);
	j.job = argv[3];
	j.chunk = plan ? -1 : cli_long("the chunk", j.job, 0, INT32_MAX);
	if (action == END && arity == 6)
		cli_long("the total", argv[5], 0, INT32_MAX);
	if (arity == 7)
		j.chunk_rows = cli_long("the rows a chunk", argv[6], 1, INT32_MAX);
	connect_db();
	chunks = mongoc_database_get_collection(db.database, "chunks");
	while ((rc = run_chunk(&j, action, arity >= 6 ? argv[5] : NULL, &out, &error)) < 0) {
		bson_reinit(&out);
		retry_or_exit(&r, &error, NULL);
	}
	mongoc_collection_destroy(chunks);
	if (rc == 1)
		errx(EX_DATAERR, "no batch %s", j.batch);
	if (ndjson_write(stdout, &out) < 0)
		err(EX_IOERR, "stdout");
	bson_destroy(&out);
}

/* Writes the batch's documents of "chunks", by ending and chunk, from a cursor; false
 * with error when MongoDB fails, *written telling whether some were written already. */
static bool list_chunks(const char *id, bool *written, bson_error_t *error)
{
	bson_t *filter = BCON_NEW("batch_id", BCON_UTF8(id));
	bson_t *opts = BCON_NEW("sort", "{", "ending", BCON_INT32(1), "chunk", BCON_INT32(1), "}");
	mongoc_cursor_t *c = mongoc_collection_find_with_opts(chunks, filter, opts, NULL);
	const bson_t *doc;
	bool ok;

	while (mongoc_cursor_next(c, &doc)) {
		if (ndjson_write(stdout, doc) < 0)
			err(EX_IOERR, "stdout");
		*written = true;
	}
	ok = !mongoc_cursor_error(c, error);
	mongoc_cursor_destroy(c);
	bson_destroy(opts);
	bson_destroy(filter);
	return ok;
}

void chunks_command(int argc, char **argv, const char *usage)
{
	struct retry r = { 0 };
	bson_error_t error;
	bool written = false;

	if (argc != 2 || !*argv[1])
		cli_usage_error(usage, "chunks wants one batch ID");
	connect_db();
	chunks = mongoc_database_get_collection(db.database, "chunks");
	while (!list_chunks(argv[1], &written, &error))
		retry_read(&r, written, &error);
	mongoc_collection_destroy(chunks);
}
