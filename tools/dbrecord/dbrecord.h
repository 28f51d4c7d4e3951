/* What dbrecord's files share: the connection, and retrying while MongoDB is away. */
#ifndef IMGPIPE_DBRECORD_H
#define IMGPIPE_DBRECORD_H

#include "db.h"

#define DUPLICATE_KEY 11000   /* MongoDB's error code: a document with that _id exists */

/* Exponential backoff with jitter within --retry-for seconds of the first failure. */
struct retry {
	int64_t deadline;          /* monotonic microseconds; 0 while all is well */
	int retries;
};

/* The configuration (MONGODB_URI, IMGPIPE_MAX_ROW_ERRORS) and its connection. */
extern struct config cfg;
extern struct db db;

/* Connects, retrying for --retry-for seconds, else exits 69. */
void connect_db(void);
/* After a failed MongoDB call: pauses and returns when the call is worth repeating (the
 * connection was lost, or a concurrent upsert won a race) and --retry-for allows it;
 * else exits 69. */
void retry_or_exit(struct retry *r, const bson_error_t *err, const bson_t *reply);
/* After a failed read: retried while it has written nothing, since its answer would
 * come twice; exit 69 once it has. */
void retry_read(struct retry *r, bool written, const bson_error_t *err);

/* The commands of chunks.c, given their arguments from the command's name on:
 *   chunk ID ENDING JOB start HOST [ROWS] | end [TOTAL] | claim [REASON]   a job's record,
 *                                              the end's claim
 *   chunks ID                                  the batch's job records */
void chunk_command(int argc, char **argv, const char *usage);
void chunks_command(int argc, char **argv, const char *usage);

/* Record mode (record.c): connects, records the NDJSON records on stdin and echoes them;
 * all_rows: the input holds every row of its batches.  Returns the exit status. */
int record_stream(bool all_rows);
/* The number of strings in the array key of rec; 0 when it is missing or holds other
 * things. */
int string_array(const bson_t *rec, const char *key);
/* The entries of errors (an array) for image index, or with others those for the rest. */
bson_t *select_entries(const bson_t *errors, int64_t index, bool others);

/* The path of the output made under settings in a document of sources, "outputs.q50",
 * into path (n bytes): '.' in settings ("q50-s0.5") becomes '_', for an update would read
 * it as a path, and settings hold no '_'.  -1 when settings is empty or too long. */
int source_output_path(const char *settings, char *path, size_t n);

/* The read commands of read.c, given their arguments from the command's name on:
 *   show ID [--offset N] [--limit M] [--no-products] | --csv   the batch's status or CSV
 *   pending ID [--chunk N]                                    its images still to do
 *   recount ID                                                its counters, counted again */
void show_command(int argc, char **argv, const char *usage);
void pending_command(int argc, char **argv, const char *usage);
void recount_command(int argc, char **argv, const char *usage);

/* copies.c: copies ID, the batch's copy slots set to their owners' outcomes; and whether
 * slot index of a product (as read, with its "copies") is a copy. */
void copies_command(int argc, char **argv, const char *usage);
bool is_copy(const bson_t *product, int64_t index);

#endif
