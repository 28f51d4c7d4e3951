/* The dispatcher's log: one logfmt line an event (log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "log.h"

static char log_host[64] = "localhost";

void log_init(const char *host)
{
	snprintf(log_host, sizeof log_host, "%s", host);
}

void log_event(const char *batch, const char *chunk, const char *event, const char *fmt, ...)
{
	char msg[1024], ts[32];
	struct timespec now;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &now);
	if (!gmtime_r(&now.tv_sec, &tm) || !strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(ts, sizeof ts, "%lld", (long long)now.tv_sec);
	fprintf(stderr, "ts=%s.%03ldZ host=%s", ts, now.tv_nsec / 1000000, log_host);
	if (batch && *batch)
		fprintf(stderr, " batch=%s", batch);
	if (chunk && *chunk)
		fprintf(stderr, " chunk=%s", chunk);
	fprintf(stderr, " stage=dispatch event=%s msg=\"", event);
	for (const char *p = msg; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', stderr);
		fputc(*p == '\n' ? ' ' : *p, stderr);
	}
	fputs("\"\n", stderr);
}
