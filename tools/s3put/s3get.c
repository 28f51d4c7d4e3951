/* s3get: writes an object of the bucket to stdout, as it arrives. */
#include "s3.h"

static const char usage[] =
	"usage: s3get [--retries N] KEY\n"
	"Writes the object KEY of $S3_BUCKET to stdout, streaming.\n"
	"  --retries N  retries on 5xx answers and network errors (default 4, at most 10)\n"
	"Exit: 0 done, 64 usage, 65 no such key, 69 store refused or unreachable,\n"
	"74 stdout unwritable, 75 store failing after the retries.\n";

int main(int argc, char **argv)
{
	enum { OPT_RETRIES = 256 };
	static const struct option longopts[] = {
		{ "retries", required_argument, NULL, OPT_RETRIES },
		{ NULL, 0, NULL, 0 },
	};
	struct config cfg;
	struct s3 s;
	long retries = S3_RETRIES;
	int c, rc;

	cli_common(argc, argv, usage);
	while ((c = cli_getopt(argc, argv, "", longopts, usage)) != -1) {
		switch (c) {
		case OPT_RETRIES:
			retries = cli_long("--retries", optarg, 0, 10);
			break;
		}
	}
	if (argc - optind != 1)
		cli_usage_error(usage, "wants one KEY");

	config_load(&cfg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		errx(EX_UNAVAILABLE, "cannot start libcurl");
	s3_open(&s, &cfg);
	s.retries = (int)retries;
	rc = s3_get(&s, argv[optind], stdout);
	if (rc == 0 && fflush(stdout) != 0)
		err(EX_IOERR, "stdout");
	if (rc)
		warnx("%s", s.error);
	s3_close(&s);
	curl_global_cleanup();
	config_free(&cfg);
	return rc;
}
