/* s3put: uploads files to S3 for anyone to read, and says where they are.
 * One file from the command line, or every output_file of a stream of image records. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "format.h"
#include "s3.h"

static const char usage[] =
	"usage: s3put [--retries N] [--private] FILE KEY\n"
	"       s3put [--retries N] [--private] < records.ndjson > records.ndjson\n"
	"Uploads FILE as KEY and prints its public URL, $S3_PUBLIC_URL/KEY.\n"
	"Without arguments, reads image records: each record with output_file is uploaded\n"
	"to images/BATCH_ID/SERIAL_NO-INDEX.EXT and gains output_key and output_url;\n"
	"a failed upload becomes the record's error.  Other records pass through untouched.\n"
	"  --retries N  retries on 5xx answers and network errors (default 4, at most 10)\n"
	"  --private    no x-amz-acl: public-read header (for buckets with ACLs disabled)\n"
	"Exit: 0 done, 64 usage, 65 unreadable FILE, 69 store refused or unreachable,\n"
	"74 stdout unwritable, 75 store failing after the retries.\n";

/* The format of an upload called word, by name or suffix: an image format, or CSV (s3put
 * stores the products' CSV files too), else NULL. */
static const struct image_format *upload_format(const char *word)
{
	/* No image: only the fields s3put reads. */
	static const struct image_format csv = { .name = "csv", .suffix = "csv", .mime = "text/csv" };

	return word && strcasecmp(word, csv.name) == 0 ? &csv : format_named(word);
}

/* A batch id goes into keys and URLs as it is: letters, digits, '-' and '_' only. */
static int batch_id_ok(const char *id)
{
	if (!id || !*id || strlen(id) > 128)
		return 0;
	for (; *id; id++)
		if (!isalnum((unsigned char)*id) && *id != '-' && *id != '_')
			return 0;
	return 1;
}

static void put_one(struct s3 *s, const char *file, const char *key, int public_read)
{
	const struct image_format *f = upload_format(path_suffix(key));
	char *url;
	int rc;

	if (!f)
		f = upload_format(path_suffix(file));
	rc = s3_put_file(s, file, key, f ? f->mime : NULL, public_read);
	if (rc)
		errx(rc, "%s", s->error);
	if (!(url = s3_public_url(s->cfg, key)))
		errx(EX_UNAVAILABLE, "out of memory");
	if (printf("%s\n", url) < 0 || fflush(stdout) != 0)
		err(EX_IOERR, "stdout");
	bson_free(url);
}

/* The record after uploading its output_file: with output_key and output_url, or error.
 * *rc is s3_put_file's answer (0 also when the record itself was at fault). */
static bson_t *put_record(struct s3 *s, const bson_t *rec, int public_read, int *rc)
{
	const char *file = rec_str(rec, "output_file"), *batch = rec_str(rec, "batch_id");
	int64_t serial = rec_int(rec, "serial_no", -1), index = rec_int(rec, "index", -1);
	const struct image_format *f = upload_format(rec_str(rec, "format"));
	char *key, *url;
	bson_t *out;

	*rc = 0;
	if (!batch_id_ok(batch) || serial < 0 || index < 0)
		return rec_error(rec, "s3put: a record with output_file needs batch_id (letters, "
				 "digits, - and _), serial_no and index");
	if (!f)
		f = upload_format(path_suffix(file));
	if (!f)
		return rec_error(rec, "s3put: unknown format of %s (no known format or extension)",
				 file);
	key = bson_strdup_printf("images/%s/%" PRId64 "-%" PRId64 ".%s", batch, serial, index,
				 f->suffix);
	*rc = s3_put_file(s, file, key, f->mime, public_read);
	url = *rc ? NULL : s3_public_url(s->cfg, key);
	if (*rc || !url) {
		out = rec_error(rec, "s3put: %s", *rc ? s->error : "out of memory");
	} else {
		out = bson_new();
		bson_copy_to_excluding_noinit(rec, out, "output_key", "output_url", NULL);
		BSON_APPEND_UTF8(out, "output_key", key);
		BSON_APPEND_UTF8(out, "output_url", url);
	}
	bson_free(url);
	bson_free(key);
	return out;
}

/* Uploads each record's output_file.  While the store is down, later records try once
 * instead of waiting out every retry again; a success restores the retries. */
static void put_stream(struct s3 *s, int public_read)
{
	struct ndjson_reader r;
	bson_error_t error;
	bson_t *rec, *out;
	int got, retries = s->retries, wrote, rc;

	ndjson_reader_init(&r, stdin);
	while ((got = ndjson_read(&r, &rec, &error)) != 0) {
		if (got < 0) {
			wrote = ndjson_write_bad_line(stdout, r.lineno, error.message);
		} else if (rec_has_error(rec) || !rec_str(rec, "output_file")) {
			wrote = ndjson_write(stdout, rec);
		} else {
			out = put_record(s, rec, public_read, &rc);
			if (rc == EX_UNAVAILABLE || rc == EX_TEMPFAIL)
				s->retries = 0;
			else if (rc == 0)
				s->retries = retries;
			wrote = ndjson_write(stdout, out);
			bson_destroy(out);
		}
		if (rec)
			bson_destroy(rec);
		if (wrote != 0 || fflush(stdout) != 0)
			err(EX_IOERR, "stdout");
	}
	if (ferror(stdin))
		err(EX_IOERR, "stdin");
	ndjson_reader_free(&r);
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct s3 s;
	long retries = S3_RETRIES;
	int public_read = 1, i;

	cli_common(argc, argv, usage);
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (strcmp(argv[i], "--private") == 0) {
			public_read = 0;
		} else if (strcmp(argv[i], "--retries") == 0 && i + 1 < argc) {
			retries = cli_long("--retries", argv[++i], 0, 10);
		} else {
			cli_usage_error(usage, "unknown option or missing value: %s", argv[i]);
		}
	}
	if (argc - i != 0 && argc - i != 2)
		cli_usage_error(usage, "wants FILE KEY, or no arguments for NDJSON mode");

	config_load(&cfg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		errx(EX_UNAVAILABLE, "cannot start libcurl");
	s3_open(&s, &cfg);
	s.retries = (int)retries;
	if (argc - i == 2)
		put_one(&s, argv[i], argv[i + 1], public_read);
	else
		put_stream(&s, public_read);
	s3_close(&s);
	curl_global_cleanup();
	config_free(&cfg);
	return EX_OK;
}
