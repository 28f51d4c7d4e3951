/* csvsplit: a product CSV to one NDJSON record a data row (docs/design.md, "Stage records").
 * The parsing and validation are lib/csvin.c; this is the command line around it. */
#include <stdlib.h>
#include <unistd.h>

#include "csvin.h"
#include "imgpipe.h"

static const char usage[] =
	"usage: csvsplit [--batch ID] [--rank] [--max-field-bytes N] [--max-urls N] [--max-rows N]\n"
	"                [FILE]\n"
	"Reads a product CSV (FILE, or standard input) with the columns S. No., Product Name\n"
	"and Input Image Urls, and writes one NDJSON record a data row, in file order:\n"
	"  {\"line\": N, \"serial_no\": S, \"product_name\": \"...\", \"input_image_urls\": [...]}\n"
	"or {\"line\": N, \"error\": \"why\"} for an invalid row.\n"
	"  --batch ID             add \"batch_id\": ID to every record\n"
	"  --rank                 add \"rank\" to every valid record: its place in serial order\n"
	"                         among the valid rows, from 0 (reads the input twice, keeping\n"
	"                         standard input in a temporary file)\n"
	"  --max-field-bytes N    longest field in bytes (default 65536)\n"
	"  --max-urls N           most image URLs in a row (default 64)\n"
	"  --max-rows N           most data rows (default 1000000)\n"
	"Exits 0 when the header is valid, 65 when it is not (or the input is empty or not text).\n";

/* --rank: the serial numbers of the valid rows, gathered by a first parse and sorted, so
 * that the second can give each row its place. */
struct serials {
	int64_t *v;
	size_t n, cap;
};

static int gather(const struct csvin_row *row, void *arg)
{
	struct serials *s = arg;

	if (row->error)
		return 0;
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 1024;
		if (!(s->v = realloc(s->v, s->cap * sizeof *s->v)))
			errx(EX_OSERR, "out of memory");
	}
	s->v[s->n++] = row->serial_no;
	return 0;
}

static int serial_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

struct output {
	struct csvin_writer *w;
	const struct serials *ranks;    /* sorted; NULL without --rank */
};

/* Writes one row as its record, with its rank when ranked (valid rows' serials are unique). */
static int emit(const struct csvin_row *row, void *arg)
{
	const struct output *o = arg;
	struct csvin_row ranked = *row;
	const int64_t *at;

	if (o->ranks && !row->error) {
		at = bsearch(&row->serial_no, o->ranks->v, o->ranks->n, sizeof *at, serial_cmp);
		ranked.rank = at ? at - o->ranks->v : -1;
	}
	return csvin_write(o->w, &ranked);
}

/* One parse of in (named name), calling fn for each row; copies what it reads to spool
 * unless that is NULL.  Exits with a message when the input is not a product CSV. */
static int parse(FILE *in, const char *name, const struct csvin_limits *lim, csvin_row_fn fn,
		 void *arg, FILE *spool)
{
	static char buf[1 << 16];
	struct csvin *c = csvin_new(lim, fn, arg);
	int rc = CSVIN_OK;
	size_t n;

	if (!c)
		errx(EX_OSERR, "out of memory");
	while (rc == CSVIN_OK && (n = fread(buf, 1, sizeof buf, in)) > 0) {
		if (spool && fwrite(buf, 1, n, spool) != n)
			err(EX_IOERR, "the temporary copy of %s", name);
		rc = csvin_feed(c, buf, n);
	}
	if (ferror(in))
		err(EX_IOERR, "%s", name);
	if (rc == CSVIN_OK)
		rc = csvin_finish(c);
	if (rc == CSVIN_EINPUT)
		errx(EX_DATAERR, "%s: %s", name, csvin_error(c));
	csvin_free(c);
	return rc;
}

/* --rank's first parse: the sorted serials of in's valid rows.  Returns the stream the
 * second parse reads: in, back where it began, or a temporary copy when in cannot seek. */
static FILE *rank_rows(FILE *in, const char *name, const struct csvin_limits *lim,
		       struct serials *s)
{
	off_t start = ftello(in);
	FILE *spool = start < 0 ? tmpfile() : NULL;

	if (start < 0 && !spool)
		err(EX_CANTCREAT, "a temporary copy of %s", name);
	parse(in, name, lim, gather, s, spool);
	qsort(s->v, s->n, sizeof *s->v, serial_cmp);
	if (spool ? fseeko(spool, 0, SEEK_SET) != 0 : fseeko(in, start, SEEK_SET) != 0)
		err(EX_IOERR, "%s: cannot read it again", spool ? "the temporary copy" : name);
	return spool ? spool : in;
}

/* Parses the options into limits and the batch id; returns the index of FILE. */
static int options(int argc, char **argv, struct csvin_limits *lim, const char **batch_id,
		   bool *rank)
{
	enum { BATCH = 256, RANK, MAX_FIELD, MAX_URLS, MAX_ROWS };
	static const struct option longopts[] = {
		{ "batch", required_argument, NULL, BATCH },
		{ "rank", no_argument, NULL, RANK },
		{ "max-field-bytes", required_argument, NULL, MAX_FIELD },
		{ "max-urls", required_argument, NULL, MAX_URLS },
		{ "max-rows", required_argument, NULL, MAX_ROWS },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = cli_getopt(argc, argv, "", longopts, usage)) != -1) {
		switch (opt) {
		case BATCH:
			if (!*optarg || !bson_utf8_validate(optarg, strlen(optarg), false))
				cli_usage_error(usage, "--batch wants a non-empty UTF-8 id");
			*batch_id = optarg;
			break;
		case RANK:
			*rank = true;
			break;
		case MAX_FIELD:
			lim->max_field_bytes = (size_t)cli_long("--max-field-bytes", optarg, 16, 1L << 30);
			break;
		case MAX_URLS:
			lim->max_urls = (size_t)cli_long("--max-urls", optarg, 1, 100000);
			break;
		case MAX_ROWS:
			lim->max_rows = (uint64_t)cli_long("--max-rows", optarg, 1, 1L << 40);
			break;
		}
	}
	if (argc - optind > 1)
		cli_usage_error(usage, "one FILE at most");
	return optind;
}

int main(int argc, char **argv)
{
	struct csvin_limits lim = { CSVIN_MAX_FIELD_BYTES, CSVIN_MAX_URLS, CSVIN_MAX_ROWS };
	const char *name = "standard input", *batch_id = NULL;
	static char outbuf[1 << 16];
	struct serials ranks = { 0 };
	struct output o = { 0 };
	FILE *in = stdin, *rows;
	bool rank = false;
	int i;

	cli_common(argc, argv, usage);
	i = options(argc, argv, &lim, &batch_id, &rank);
	if (i < argc && strcmp(argv[i], "-") != 0) {
		name = argv[i];
		if (!(in = fopen(name, "rb")))
			err(EX_NOINPUT, "%s", name);
	}
	/* records are small: a larger buffer saves most write calls (a terminal keeps lines) */
	if (!isatty(STDOUT_FILENO) && setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf) != 0)
		err(EX_OSERR, "standard output");
	rows = rank ? rank_rows(in, name, &lim, &ranks) : in;
	o.ranks = rank ? &ranks : NULL;
	if (!(o.w = csvin_writer_new(stdout, batch_id, rank)))
		errx(EX_OSERR, "out of memory");
	if (parse(rows, name, &lim, emit, &o, NULL) == CSVIN_ESTOP || fflush(stdout) == EOF ||
	    ferror(stdout))
		err(EX_IOERR, "standard output");
	csvin_writer_free(o.w);
	free(ranks.v);
	if (rows != in)
		fclose(rows);
	if (in != stdin)
		fclose(in);
	return EX_OK;
}
