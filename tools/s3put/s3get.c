/* s3get: writes an object of the bucket to stdout, as it arrives. */
#include <string.h>

#include "s3.h"

static const char usage[] =
	"usage: s3get [--retries N] KEY\n"
	"Writes the object KEY of $S3_BUCKET to stdout, streaming.\n"
	"  --retries N  retries on 5xx answers and network errors (default 4, at most 10)\n"
	"Exit: 0 done, 64 usage, 65 no such key, 69 store refused or unreachable,\n"
	"74 stdout unwritable, 75 store failing after the retries.\n";

int main(int argc, char **argv)
{
	struct config cfg;
	struct s3 s;
	long retries = S3_RETRIES;
	int i, rc;

	cli_common(argc, argv, usage);
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (strcmp(argv[i], "--retries") == 0 && i + 1 < argc) {
			retries = cli_long("--retries", argv[++i], 0, 10);
		} else {
			cli_usage_error(usage, "unknown option or missing value: %s", argv[i]);
		}
	}
	if (argc - i != 1)
		cli_usage_error(usage, "wants one KEY");

	config_load(&cfg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		errx(EX_UNAVAILABLE, "cannot start libcurl");
	s3_open(&s, &cfg);
	s.retries = (int)retries;
	rc = s3_get(&s, argv[i], stdout);
	if (rc == 0 && fflush(stdout) != 0)
		err(EX_IOERR, "stdout");
	if (rc)
		warnx("%s", s.error);
	s3_close(&s);
	curl_global_cleanup();
	config_free(&cfg);
	return rc;
}
