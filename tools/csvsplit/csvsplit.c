/* csvsplit: a product CSV to one NDJSON record a data row (docs/design.md, "Stage records").
 * The parsing and validation are lib/csvin.c; this is the command line around it. */
#include <stdlib.h>
#include <unistd.h>

#include "csvin.h"
#include "imgpipe.h"

static const char usage[] =
	"usage: csvsplit [--batch ID] [--max-field-bytes N] [--max-urls N] [--max-rows N] [FILE]\n"
	"Reads a product CSV (FILE, or standard input) with the columns S. No., Product Name\n"
	"and Input Image Urls, and writes one NDJSON record a data row, in file order:\n"
	"  {\"line\": N, \"serial_no\": S, \"product_name\": \"...\", \"input_image_urls\": [...]}\n"
	"or {\"line\": N, \"error\": \"why\"} for an invalid row.\n"
	"  --batch ID             add \"batch_id\": ID to every record\n"
	"  --max-field-bytes N    longest field in bytes (default 65536)\n"
	"  --max-urls N           most image URLs in a row (default 64)\n"
	"  --max-rows N           most data rows (default 1000000)\n"
	"Exits 0 when the header is valid, 65 when it is not (or the input is empty or not text).\n";

/* Writes one row as its record. */
static int emit(const struct csvin_row *row, void *arg)
{
	return csvin_write(arg, row);
}

/* Parses the options into limits and the batch id; returns the index of FILE. */
static int options(int argc, char **argv, struct csvin_limits *lim, const char **batch_id)
{
	enum { BATCH = 256, MAX_FIELD, MAX_URLS, MAX_ROWS };
	static const struct option longopts[] = {
		{ "batch", required_argument, NULL, BATCH },
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
	static char buf[1 << 16], outbuf[1 << 16];
	struct csvin_writer *w;
	struct csvin *c;
	FILE *in = stdin;
	size_t n;
	int rc = CSVIN_OK, i;

	cli_common(argc, argv, usage);
	i = options(argc, argv, &lim, &batch_id);
	if (i < argc && strcmp(argv[i], "-") != 0) {
		name = argv[i];
		if (!(in = fopen(name, "rb")))
			err(EX_NOINPUT, "%s", name);
	}
	/* records are small: a larger buffer saves most write calls (a terminal keeps lines) */
	if (!isatty(STDOUT_FILENO) && setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf) != 0)
		err(EX_OSERR, "standard output");
	if (!(w = csvin_writer_new(stdout, batch_id)) || !(c = csvin_new(&lim, emit, w)))
		errx(EX_OSERR, "out of memory");
	while (rc == CSVIN_OK && (n = fread(buf, 1, sizeof buf, in)) > 0)
		rc = csvin_feed(c, buf, n);
	if (ferror(in))
		err(EX_IOERR, "%s", name);
	if (rc == CSVIN_OK)
		rc = csvin_finish(c);
	if (rc == CSVIN_EINPUT)
		errx(EX_DATAERR, "%s: %s", name, csvin_error(c));
	if (rc == CSVIN_ESTOP || fflush(stdout) == EOF || ferror(stdout))
		err(EX_IOERR, "standard output");
	csvin_free(c);
	csvin_writer_free(w);
	if (in != stdin)
		fclose(in);
	return EX_OK;
}
