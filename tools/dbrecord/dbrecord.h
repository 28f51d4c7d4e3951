/* What dbrecord's files share: the connection, and retrying while MongoDB is away. */
#ifndef IMGPIPE_DBRECORD_H
#define IMGPIPE_DBRECORD_H

#include "db.h"

/* Exponential backoff with jitter within --retry-for seconds of the first failure. */
struct retry {
	int64_t deadline;          /* monotonic microseconds; 0 while all is well */
	int retries;
};

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

#endif
