/* Command-line basics every tool shares: --help, --version, options, usage errors, numbers. */
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

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
	       const char *usage)
{
	int order = shortopts[0] == '+' || shortopts[0] == '-';
	char spec[64];
	int c;

	/* A ':' first (after the ordering flag) has getopt tell a missing value (':') from an
	 * unknown option ('?'), so the message can say which, naming the program as warnx
	 * does rather than by argv[0]. */
	if (snprintf(spec, sizeof spec, "%.*s:%s", order, shortopts, shortopts + order) >=
	    (int)sizeof spec)
		errx(EX_SOFTWARE, "cli_getopt: too many short options");
	opterr = 0;
	c = getopt_long(argc, argv, spec, longopts, NULL);
	if (c == ':')
		cli_usage_error(usage, "%s wants a value", argv[optind - 1]);
	if (c == '?' && optopt > 0 && optopt < 256)
		cli_usage_error(usage, "unknown option -%c", optopt);
	if (c == '?')
		cli_usage_error(usage, "unknown option %s", argv[optind - 1]);
	return c;
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
