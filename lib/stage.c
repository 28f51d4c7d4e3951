/* The NDJSON stage driver (stage.h): reading, passing on and writing records. */
#include "stage.h"

void stage_init(struct stage *s, const char *needs)
{
	*s = (struct stage){ .needs = needs };
	ndjson_reader_init(&s->in, stdin);
}

/* Shows a record that passes through to the stage's hook, then frees it. */
static void pass_record(struct stage *s, bson_t *doc)
{
	if (s->passing)
		s->passing(doc, s->passing_arg);
	bson_destroy(doc);
}

enum stage_line stage_read(struct stage *s, bson_t **rec)
{
	bson_error_t why;
	bson_t *doc;
	int got = ndjson_read(&s->in, &doc, &why);

	*rec = NULL;
	if (got == 0) {
		if (ferror(s->in.in))
			err(EX_IOERR, "stdin");
		return STAGE_END;
	}
	if (got < 0) {
		warnx("input line %lu: %s", s->in.lineno, why.message);  /* why it exits 65 */
		s->reply = ndjson_bad_line(s->in.lineno, why.message);
		stage_raise(s, EX_DATAERR);
		return STAGE_PASS;
	}
	if ((rec_has_error(doc) && !s->takes_errors) ||
	    (s->needs && !bson_has_field(doc, s->needs))) {
		pass_record(s, doc);    /* stage_pass writes the line as it came */
		return STAGE_PASS;
	}
	if (s->needs && !rec_str(doc, s->needs)) {
		s->reply = rec_error(doc, "\"%s\" is not a string", s->needs);
		pass_record(s, doc);
		return STAGE_PASS;
	}
	*rec = doc;
	return STAGE_WORK;
}

void stage_pass(struct stage *s)
{
	if (!s->reply) {
		stage_write_line(stage_line(s));
		return;
	}
	stage_write(s->reply);
	bson_destroy(s->reply);
	s->reply = NULL;
}

const char *stage_line(const struct stage *s)
{
	return s->in.buf;
}

void stage_write(const bson_t *rec)
{
	if (ndjson_write(stdout, rec) != 0 || fflush(stdout) == EOF)
		err(EX_IOERR, "stdout");
}

void stage_write_line(const char *line)
{
	if (fputs(line, stdout) == EOF || putchar('\n') == EOF || fflush(stdout) == EOF)
		err(EX_IOERR, "stdout");
}

void stage_raise(struct stage *s, int status)
{
	if (status > s->status)
		s->status = status;
}

int stage_end(struct stage *s)
{
	ndjson_reader_free(&s->in);
	return s->status;
}

int stage_run(const char *needs, stage_work *work, void *arg)
{
	struct stage s;

	stage_init(&s, needs);
	return stage_loop(&s, work, arg);
}

int stage_loop(struct stage *s, stage_work *work, void *arg)
{
	bson_t *rec, *out;
	enum stage_line got;

	while ((got = stage_read(s, &rec)) != STAGE_END) {
		if (got == STAGE_PASS) {
			stage_pass(s);
			continue;
		}
		out = work(s, rec, arg);
		stage_write(out);
		bson_destroy(out);
		bson_destroy(rec);
	}
	return stage_end(s);
}
