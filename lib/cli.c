/* Command-line basics every tool shares: --help, --version, usage errors, numbers. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "imgpipe.h"

void cli_common(int argc, char **argv, const char *usage)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			exit(EX_OK);
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("%s %s\n", program_invocation_short_name, IMGPIPE_VERSION);
			exit(EX_OK);
		}
	}
}

void cli_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", program_invocation_short_name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fputs(usage, stderr);
	exit(EX_USAGE);
}

long cli_long(const char *opt, const char *value, long min, long max)
{
	char *end;
	errno = 0;
	long n = strtol(value, &end, 10);
	if (errno || end == value || *end || n < min || n > max)
		errx(EX_USAGE, "%s wants a whole number from %ld to %ld, not '%s'", opt, min, max, value);
	return n;
}
