/* The NDJSON stage driver: the loop every stage (fetchimg, shrink, s3put, dbrecord, notify)
 * runs, as docs/design.md "Stage records" fixes it.  Records come on stdin, one line goes out on
 * stdout for each, in order, flushed at once:
 *   - a line that is not a JSON object becomes {"input_line": N, "error": "STAGE: ..."}
 *     (and a warning on stderr) and the run goes on, to exit 65 at the end;
 *   - a record carrying "error", or without the field the stage needs, is written through
 *     untouched, byte for byte;
 *   - the others are the stage's work; a failure of one is an "error" on its record
 *     (rec_error names the stage), not an exit.
 * Simple stages hand stage_run a function for one record.  Stages with a loop of their own
 * (transfers in flight, write batches) call stage_read, stage_pass and stage_write, so the
 * order of their output stays theirs to keep. */
#ifndef IMGPIPE_STAGE_H
#define IMGPIPE_STAGE_H

#include "imgpipe.h"

struct stage {
	const char *needs;      /* the string field a record needs to be worked on; NULL: none */
	int takes_errors;       /* records carrying "error" are work too (dbrecord records them) */
	struct ndjson_reader in;
	bson_t *reply;          /* what stage_pass writes instead of the line read, if anything */
	int status;             /* the exit status so far */
	/* Sees each record that passes through, before it is written (s3put --remove-files
	 * removes their files too); NULL: none.  Lines that are not JSON have no record. */
	void (*passing)(const bson_t *rec, void *arg);
	void *passing_arg;
};

/* What stage_read found. */
enum stage_line {
	STAGE_END,              /* the end of the input */
	STAGE_WORK,             /* a record for this stage */
	STAGE_PASS,             /* anything else: call stage_pass before the next stage_read */
};

void stage_init(struct stage *s, const char *needs);
/* Reads the next line.  STAGE_WORK sets *rec (the caller destroys it); a line that is not
 * JSON, or a record whose needed field is not a string, is a STAGE_PASS that stage_pass
 * turns into an error record.  Exits 74 when stdin cannot be read. */
enum stage_line stage_read(struct stage *s, bson_t **rec);
/* Writes what the last STAGE_PASS becomes: the line as read, or its error record. */
void stage_pass(struct stage *s);
/* The line last read, until the next stage_read (a stage that echoes its records later
 * keeps a copy, to echo them byte for byte). */
const char *stage_line(const struct stage *s);
/* Write one record, or one line, and flush; exit 74 when stdout cannot be written. */
void stage_write(const bson_t *rec);
void stage_write_line(const char *line);
/* Raises the exit status to status unless it is higher already (notify's 75 over 65). */
void stage_raise(struct stage *s, int status);
/* Frees the reader and returns the exit status: 0, 65 after a line that was not JSON, or
 * what stage_raise set. */
int stage_end(struct stage *s);

/* One record's work: returns the record to write in its place (stage_run destroys it). */
typedef bson_t *stage_work(struct stage *s, const bson_t *rec, void *arg);
/* The whole loop for stages that work on one record at a time; returns the exit status. */
int stage_run(const char *needs, stage_work *work, void *arg);
/* The same loop on a stage set up by stage_init (and its passing hook, if any). */
int stage_loop(struct stage *s, stage_work *work, void *arg);

#endif
