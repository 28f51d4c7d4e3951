/* s3put: uploads files to S3 for anyone to read, and says where they are.
 * One file from the command line, or every output_file of a stream of image records. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "format.h"
#include "s3.h"
#include "stage.h"

static const char usage[] =
	"usage: s3put [--retries N] [--private] FILE KEY\n"
	"       s3put [--retries N] [--private] < records.ndjson > records.ndjson\n"
	"Uploads FILE as KEY and prints its public URL, $S3_PUBLIC_URL/KEY.\n"
	"Without arguments, reads image records: each record with output_file is uploaded\n"
	"to images/BATCH_ID/SERIAL_NO-INDEX.EXT and gains output_key and output_url;\n"
	"a failed upload becomes the record's error.  Other records pass through untouched.\n"
	"  --retries N  retries on 5xx answers and network errors (default 4, at most 10)\n"
	"  --private    no x-amz-acl: public-read header (for buckets with ACLs disabled)\n"
	"Exit: 0 done, 64 usage, 65 unreadable FILE or an input line not JSON, 69 store\n"
	"refused or unreachable, 74 stdout unwritable, 75 store failing after the retries.\n";

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
		return rec_error(rec, "a record with output_file needs batch_id (letters, "
				 "digits, - and _), serial_no and index");
	if (!f)
		f = upload_format(path_suffix(file));
	if (!f)
		return rec_error(rec, "unknown format of %s (no known format or extension)", file);
	key = bson_strdup_printf("images/%s/%" PRId64 "-%" PRId64 ".%s", batch, serial, index,
				 f->suffix);
	*rc = s3_put_file(s, file, key, f->mime, public_read);
	url = *rc ? NULL : s3_public_url(s->cfg, key);
	if (*rc || !url) {
		out = rec_error(rec, "%s", *rc ? s->error : "out of memory");
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

/* NDJSON mode's state: the store, and the retries a record gets while it answers. */
struct uploader {
	struct s3 s3;
	int public_read;
	int retries;
};

/* Uploads one record's output_file.  While the store is down, later records try once
 * instead of waiting out every retry again; a success restores the retries. */
static bson_t *put_next(struct stage *s, const bson_t *rec, void *arg)
{
	struct uploader *u = arg;
	int rc;
	bson_t *out = put_record(&u->s3, rec, u->public_read, &rc);

	(void)s;
	if (rc == EX_UNAVAILABLE || rc == EX_TEMPFAIL)
		u->s3.retries = 0;
	else if (rc == 0)
		u->s3.retries = u->retries;
	return out;
}

int main(int argc, char **argv)
{
	enum { OPT_RETRIES = 256, OPT_PRIVATE };
	static const struct option longopts[] = {
		{ "retries", required_argument, NULL, OPT_RETRIES },
		{ "private", no_argument, NULL, OPT_PRIVATE },
		{ NULL, 0, NULL, 0 },
	};
	struct config cfg;
	struct uploader u = { .public_read = 1, .retries = S3_RETRIES };
	int c, rc = EX_OK;

	cli_common(argc, argv, usage);
	while ((c = cli_getopt(argc, argv, "", longopts, usage)) != -1) {
		switch (c) {
		case OPT_RETRIES:
			u.retries = (int)cli_long("--retries", optarg, 0, 10);
			break;
		case OPT_PRIVATE:
			u.public_read = 0;
			break;
		}
	}
	if (argc - optind != 0 && argc - optind != 2)
		cli_usage_error(usage, "wants FILE KEY, or no arguments for NDJSON mode");

	config_load(&cfg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		errx(EX_UNAVAILABLE, "cannot start libcurl");
	s3_open(&u.s3, &cfg);
	u.s3.retries = u.retries;
	if (argc - optind == 2)
		put_one(&u.s3, argv[optind], argv[optind + 1], u.public_read);
	else
		rc = stage_run("output_file", put_next, &u);
	s3_close(&u.s3);
	curl_global_cleanup();
	config_free(&cfg);
	return rc;
}
