/* dbrecord: records the pipeline's records in MongoDB (products, image outcomes, row
 * errors, webhook deliveries) and echoes them; sets, shows and recounts a batch, and lists
 * the images it has still to do.
 *
 * This file: the command line and its dispatch, the connection and its retries, and the
 * batch command; record.c, read.c and chunks.c hold the other commands. */
#include <string.h>

#include "backoff.h"
#include "dbrecord.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

static const char usage[] =
	"usage: dbrecord [--retry-for SECONDS] [--all-rows] < RECORDS\n"
	"       dbrecord [--retry-for SECONDS] batch ID STATUS [MESSAGE]\n"
	"       dbrecord [--retry-for SECONDS] show ID [--offset N] [--limit M] [--no-products]\n"
	"       dbrecord [--retry-for SECONDS] show ID --csv\n"
	"       dbrecord [--retry-for SECONDS] pending ID [--chunk N] [--settings NAME]\n"
	"       dbrecord [--retry-for SECONDS] recount ID\n"
	"       dbrecord [--retry-for SECONDS] copies ID\n"
	"       dbrecord [--retry-for SECONDS] chunk ID ENDING JOB start HOST [ROWS]|end [TOTAL]|claim [REASON]\n"
	"       dbrecord [--retry-for SECONDS] chunks ID\n"
	"Records NDJSON records in MongoDB (MONGODB_URI) and echoes each one once recorded:\n"
	"product records create or refresh products, image records fill their slot of\n"
	"output_image_urls or record their error (and count it in the batch's progress), row\n"
	"errors (the first IMGPIPE_MAX_ROW_ERRORS) and webhook deliveries are kept on the batch.\n"
	"  --all-rows                 the input holds every row of its batch (csvsplit's\n"
	"                             output): then set the batch's row counts from it\n"
	"  batch ID STATUS [MESSAGE]  set the batch's status ('in queue', 'in progress',\n"
	"                             'completed', 'failed') and message, creating it if needed\n"
	"  show ID                    print the batch's status JSON, as GET /status/ID, with one\n"
	"                             page of products: --offset N (default 0) and --limit M\n"
	"                             (default 100, at most 1000), or none with --no-products\n"
	"  show ID --csv              print the batch's output CSV, every product\n"
	"  pending ID [--chunk N]     print an image record for every input URL (of chunk N)\n"
	"                             whose output slot is empty and that is no copy, a blank\n"
	"                             line after each product's; one whose URL sources knows,\n"
	"                             with an output under --settings NAME (default q50), gains\n"
	"                             a reuse (none with the batch's force or IMGPIPE_FORCE=1)\n"
	"  recount ID                 count the batch's products and images again and store\n"
	"                             the counts\n"
	"  copies ID                  set each copy slot (its URL is in an earlier slot of the\n"
	"                             batch) to the outcome of that first slot\n"
	"  chunk ID ENDING JOB ...    the batch's job JOB (a chunk number, or plan) of ending\n"
	"                             ENDING ('-': the batch's) starts on HOST (plan: ROWS a\n"
	"                             chunk, fixed by its first start), ends (plan: having queued\n"
	"                             TOTAL chunks), or claims the batch's end (to end it failed\n"
	"                             for REASON); prints the state: status, ending,\n"
	"                             cancel_requested, job_ended, chunk_rows, finisher, reason\n"
	"  chunks ID                  print the batch's job records, one a line\n"
	"  --retry-for SECONDS        wait this long for an unreachable MongoDB (default 60)\n"
	"  --help, --version\n";

struct config cfg;
struct db db;
static long retry_for = 60;
static bool all_rows;          /* --all-rows */

/* ---- MongoDB failures ---- */

/* "host:port,..." of MONGODB_URI for messages; never the URI, which may hold a password. */
static const char *where(void)
{
	static char buf[512];
	mongoc_uri_t *uri = mongoc_uri_new(cfg.mongodb_uri);
	const mongoc_host_list_t *h = uri ? mongoc_uri_get_hosts(uri) : NULL;
	size_t len = 0;

	snprintf(buf, sizeof buf, "%s", h ? "" : "MONGODB_URI");
	for (; h && len < sizeof buf; h = h->next)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", len ? "," : "",
					h->host_and_port);
	mongoc_uri_destroy(uri);
	return buf;
}

static int connection_lost(const bson_error_t *err, const bson_t *reply)
{
	return err->domain == MONGOC_ERROR_STREAM || err->domain == MONGOC_ERROR_SERVER_SELECTION ||
	       (reply && mongoc_error_has_label(reply, "RetryableWriteError"));
}

void retry_or_exit(struct retry *r, const bson_error_t *err, const bson_t *reply)
{
	int64_t now = bson_get_monotonic_time(), left_ms;
	int lost = connection_lost(err, reply);
	long pause_ms;

	if (!lost && err->code != DUPLICATE_KEY)
		errx(EX_UNAVAILABLE, "MongoDB at %s failed: %s", where(), err->message);
	if (!r->deadline) {
		r->deadline = now + (int64_t)retry_for * 1000000;
		if (lost && retry_for > 0)
			warnx("MongoDB at %s: %s; retrying for up to %ld s", where(), err->message,
			      retry_for);
	}
	if (now >= r->deadline)
		errx(EX_UNAVAILABLE, "MongoDB at %s unreachable for %ld s: %s", where(), retry_for,
		     err->message);
	pause_ms = backoff_ms(BACKOFF_FIRST_MS, BACKOFF_MAX_MS, ++r->retries);
	left_ms = (r->deadline - now + 999) / 1000;
	sleep_ms(pause_ms < left_ms ? pause_ms : (long)left_ms);
}

void connect_db(void)
{
	struct retry r = { 0 };
	bson_error_t error;

	while (db_open(&db, &cfg, &error) < 0)
		retry_or_exit(&r, &error, NULL);
}

void retry_read(struct retry *r, bool written, const bson_error_t *err)
{
	if (written)
		errx(EX_UNAVAILABLE, "MongoDB at %s failed half-way: %s", where(), err->message);
	retry_or_exit(r, err, NULL);
}

/* ---- commands ---- */

/* batch ID STATUS [MESSAGE]: no options, so a MESSAGE may start with '-'. */
static void set_status(int argc, char **argv)
{
	struct retry r = { 0 };
	bson_error_t error;

	if (argc < 3 || argc > 4)
		cli_usage_error(usage, "batch wants ID STATUS [MESSAGE]");
	if (!*argv[1])
		cli_usage_error(usage, "the batch id is empty");
	if (!db_status_valid(argv[2]))
		errx(EX_USAGE, "status '%s' is not one of 'in queue', 'in progress', 'completed', 'failed'",
		     argv[2]);
	connect_db();
	while (db_batch_set_status(&db, argv[1], argv[2], argc == 4 ? argv[3] : NULL, &error) < 0)
		retry_or_exit(&r, &error, NULL);
}

int main(int argc, char **argv)
{
	enum { OPT_RETRY_FOR = 256, OPT_ALL_ROWS };
	static const struct option longopts[] = {
		{ "retry-for", required_argument, NULL, OPT_RETRY_FOR },
		{ "all-rows", no_argument, NULL, OPT_ALL_ROWS },
		{ NULL, 0, NULL, 0 },
	};
	int c, rc = EX_OK;

	cli_common(argc, argv, usage);
	/* "+": dbrecord's own options end at the command, which parses the rest */
	while ((c = cli_getopt(argc, argv, "+", longopts, usage)) != -1) {
		switch (c) {
		case OPT_RETRY_FOR:
			retry_for = cli_long("--retry-for", optarg, 0, 86400);
			break;
		case OPT_ALL_ROWS:
			all_rows = true;
			break;
		}
	}
	argv += optind;
	argc -= optind;

	config_load(&cfg);
	config_require("MONGODB_URI", cfg.mongodb_uri);
	if (argc > 0 && all_rows)
		cli_usage_error(usage, "--all-rows is for records on stdin, not for '%s'", argv[0]);
	if (argc == 0) {
		if (cfg.max_row_errors < 0)
			errx(EX_USAGE, "IMGPIPE_MAX_ROW_ERRORS must be a whole number from 1 to %d",
			     CONFIG_MAX_ROW_ERRORS_MAX);
		rc = record_stream(all_rows);
	} else if (strcmp(argv[0], "batch") == 0) {
		set_status(argc, argv);
	} else if (strcmp(argv[0], "show") == 0) {
		show_command(argc, argv, usage);
	} else if (strcmp(argv[0], "pending") == 0) {
		pending_command(argc, argv, usage);
	} else if (strcmp(argv[0], "recount") == 0) {
		recount_command(argc, argv, usage);
	} else if (strcmp(argv[0], "copies") == 0) {
		copies_command(argc, argv, usage);
	} else if (strcmp(argv[0], "chunk") == 0) {
		chunk_command(argc, argv, usage);
	} else if (strcmp(argv[0], "chunks") == 0) {
		chunks_command(argc, argv, usage);
	} else {
		cli_usage_error(usage, "unknown command '%s'", argv[0]);
	}
	db_close(&db);
	config_free(&cfg);
	if (fflush(stdout) == EOF)
		err(EX_IOERR, "stdout");
	return rc;
}
