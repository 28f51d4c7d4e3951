/* s3put: uploads files to S3 for anyone to read, and says where they are.
 * One file from the command line, or every output_file of a stream of image records,
 * each under a key made of its source's hash and the settings that shaped it, so that
 * the same image is stored once however many batches name it. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "format.h"
#include "s3.h"
#include "stage.h"

static const char usage[] =
	"usage: s3put [--retries N] [--private] FILE KEY\n"
	"       s3put [--retries N] [--private] [--remove-files] < records.ndjson > records.ndjson\n"
	"Uploads FILE as KEY and prints its public URL, $S3_PUBLIC_URL/KEY.\n"
	"Without arguments, reads image records: each record with output_file is uploaded\n"
	"to images/SHA256-SETTINGS.EXT (its source's hash and shrink's settings), unless that\n"
	"object is there already, and gains output_key, output_url and uploaded (true or\n"
	"false); a failed upload becomes the record's error.  Other records pass through\n"
	"untouched.\n"
	"  --retries N     retries on 5xx answers and network errors (default 4, at most 10)\n"
	"  --private       no x-amz-acl: public-read header (for buckets with ACLs disabled)\n"
	"  --remove-files  once a record is done, uploaded or not, or passed through, removes\n"
	"                  the files its \"file\" and \"output_file\" name\n"
	"Exit: 0 done, 64 usage, 65 unreadable FILE or an input line not JSON, 69 store\n"
	"refused or unreachable, 74 stdout unwritable, 75 store failing after the retries\n"
	"(in NDJSON mode 69 and 75 after every record, each failed one with its error).\n";

/* Content-addressed objects never change, so caches may keep them for a year. */
static const char immutable[] = "public, max-age=31536000, immutable";

/* The format of an upload called word, by name or suffix: an image format, or CSV (s3put
 * stores the products' CSV files too), else NULL. */
static const struct image_format *upload_format(const char *word)
{
	/* No image: only the fields s3put reads. */
	static const struct image_format csv = { .name = "csv", .suffix = "csv", .mime = "text/csv" };

	return word && strcasecmp(word, csv.name) == 0 ? &csv : format_named(word);
}

/* A record's sha256: 64 lowercase hex digits, as fetchimg writes it. */
static int sha256_ok(const char *hex)
{
	if (!hex || strlen(hex) != 64)
		return 0;
	for (; *hex; hex++)
		if (!isdigit((unsigned char)*hex) && (*hex < 'a' || *hex > 'f'))
			return 0;
	return 1;
}

/* A record's settings go into the key as they are: lowercase letters, digits, '.', '-'. */
static int settings_ok(const char *settings)
{
	if (!settings || !*settings || strlen(settings) > 64)
		return 0;
	for (; *settings; settings++)
		if (!islower((unsigned char)*settings) && !isdigit((unsigned char)*settings) &&
		    *settings != '.' && *settings != '-')
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
	rc = s3_put_file(s, file, key, f ? f->mime : NULL, NULL, public_read);
	if (rc)
		errx(rc, "%s", s->error);
	if (!(url = s3_public_url(s->cfg, key)))
		errx(EX_UNAVAILABLE, "out of memory");
	if (printf("%s\n", url) < 0 || fflush(stdout) != 0)
		err(EX_IOERR, "stdout");
	bson_free(url);
}

/* Uploads file as key unless the object is there already (same source, same settings:
 * same bytes).  Returns s3's answer; *uploaded says whether it was sent. */
static int put_new(struct s3 *s, const char *file, const char *key,
		   const struct image_format *f, int public_read, int *uploaded)
{
	int rc = s3_head(s, key);

	*uploaded = 0;
	if (rc != EX_DATAERR)
		return rc;
	*uploaded = 1;
	return s3_put_file(s, file, key, f->mime, immutable, public_read);
}

/* The record after uploading its output_file: with output_key, output_url and uploaded,
 * or error.  *rc is the store's answer (0 also when the record itself was at fault). */
static bson_t *put_record(struct s3 *s, const bson_t *rec, int public_read, int *rc)
{
	const char *file = rec_str(rec, "output_file"), *sha256 = rec_str(rec, "sha256");
	const char *settings = rec_str(rec, "settings");
	const struct image_format *f = upload_format(rec_str(rec, "format"));
	char *key, *url;
	bson_t *out;
	int uploaded;

	*rc = 0;
	if (!sha256_ok(sha256) || !settings_ok(settings))
		return rec_error(rec, "a record with output_file needs %s", !sha256_ok(sha256) ?
				 "sha256 (64 lowercase hex digits, from fetchimg)" :
				 "settings (lowercase letters, digits, . and -, from shrink)");
	if (!f)
		f = upload_format(path_suffix(file));
	if (!f)
		return rec_error(rec, "unknown format of %s (no known format or extension)", file);
	key = bson_strdup_printf("images/%s-%s.%s", sha256, settings, f->suffix);
	*rc = put_new(s, file, key, f, public_read, &uploaded);
	url = *rc ? NULL : s3_public_url(s->cfg, key);
	if (*rc || !url) {
		out = rec_error(rec, "%s", *rc ? s->error : "out of memory");
	} else {
		out = bson_new();
		bson_copy_to_excluding_noinit(rec, out, "output_key", "output_url", "uploaded", NULL);
		BSON_APPEND_UTF8(out, "output_key", key);
		BSON_APPEND_UTF8(out, "output_url", url);
		BSON_APPEND_BOOL(out, "uploaded", uploaded);
	}
	bson_free(url);
	bson_free(key);
	return out;
}

/* --remove-files: the record's download and output are not needed past s3put, so a
 * batch holds only the files of the records in flight, whatever its size. */
static void remove_files(const bson_t *rec, void *arg)
{
	const char *fields[] = { "file", "output_file" };

	(void)arg;
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
		const char *path = rec_str(rec, fields[i]);
		if (path && unlink(path) != 0 && errno != ENOENT)
			warn("cannot remove %s", path);
	}
}

/* NDJSON mode's state: the store, and the retries a record gets while it answers. */
struct uploader {
	struct s3 s3;
	int public_read;
	int retries;
	int remove_files;
};

/* Uploads one record's output_file.  While the store is down, later records try once
 * instead of waiting out every retry again; a success restores the retries.  A record
 * the store failed (unreachable, or 5xx past the retries) makes the run exit 69 or 75 at
 * its end, so that process-batch tries those images again later rather than count them
 * failed for good. */
static bson_t *put_next(struct stage *s, const bson_t *rec, void *arg)
{
	struct uploader *u = arg;
	int rc;
	bson_t *out = put_record(&u->s3, rec, u->public_read, &rc);

	if (rc == EX_UNAVAILABLE || rc == EX_TEMPFAIL) {
		stage_raise(s, rc);
		u->s3.retries = 0;
	} else if (rc == 0)
		u->s3.retries = u->retries;
	if (u->remove_files)
		remove_files(rec, NULL);
	return out;
}

/* NDJSON mode: every record through put_next, and with --remove-files also the files
 * of those passing through (failed in an earlier stage). */
static int put_records(struct uploader *u)
{
	struct stage s;

	stage_init(&s, "output_file");
	if (u->remove_files)
		s.passing = remove_files;
	return stage_loop(&s, put_next, u);
}

int main(int argc, char **argv)
{
	enum { OPT_RETRIES = 256, OPT_PRIVATE, OPT_REMOVE_FILES };
	static const struct option longopts[] = {
		{ "retries", required_argument, NULL, OPT_RETRIES },
		{ "private", no_argument, NULL, OPT_PRIVATE },
		{ "remove-files", no_argument, NULL, OPT_REMOVE_FILES },
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
		case OPT_REMOVE_FILES:
			u.remove_files = 1;
			break;
		}
	}
	if (argc - optind != 0 && argc - optind != 2)
		cli_usage_error(usage, "wants FILE KEY, or no arguments for NDJSON mode");
	if (argc - optind == 2 && u.remove_files)
		cli_usage_error(usage, "--remove-files is for NDJSON mode");

	config_load(&cfg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		errx(EX_UNAVAILABLE, "cannot start libcurl");
	s3_open(&u.s3, &cfg);
	u.s3.retries = u.retries;
	if (argc - optind == 2)
		put_one(&u.s3, argv[optind], argv[optind + 1], u.public_read);
	else
		rc = put_records(&u);
	s3_close(&u.s3);
	curl_global_cleanup();
	config_free(&cfg);
	return rc;
}
