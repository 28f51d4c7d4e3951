/* The dispatcher's log: one logfmt line an event (log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "imgpipe.h"
#include "log.h"

static char log_host[64] = "localhost";

void log_init(const char *host)
{
	snprintf(log_host, sizeof log_host, "%s", host);
}

/* Copies msg into out (size len) as a logfmt quoted value's inside: quotes and backslashes
 * escaped, newlines as spaces.  A message too long is cut short. */
static void quote_into(char *out, size_t len, const char *msg)
{
	size_t n = 0;

	for (const char *p = msg; *p; p++) {
		int escape = *p == '"' || *p == '\\';
		if (n + 1 + escape >= len)
			break;
		if (escape)
			out[n++] = '\\';
		out[n++] = *p == '\n' ? ' ' : *p;
	}
	out[n] = '\0';
}

void log_event(const char *batch, const char *chunk, const char *event, const char *fmt, ...)
{
	char msg[1024], quoted[2 * sizeof msg], ts[32], line[sizeof quoted + 512];
	struct timespec now;
	struct tm tm;
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	quote_into(quoted, sizeof quoted, msg);
	clock_gettime(CLOCK_REALTIME, &now);
	if (!gmtime_r(&now.tv_sec, &tm) || !strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(ts, sizeof ts, "%lld", (long long)now.tv_sec);
	n = snprintf(line, sizeof line, "ts=%s.%03ldZ host=%s%s%s%s%s stage=dispatch event=%s msg=\"%s\"\n",
		     ts, now.tv_nsec / 1000000, log_host, batch && *batch ? " batch=" : "",
		     batch ? batch : "", chunk && *chunk ? " chunk=" : "", chunk ? chunk : "", event, quoted);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line) {         /* cut, but still one whole line */
		n = (int)sizeof line - 1;
		line[n - 2] = '"';
		line[n - 1] = '\n';
	}
	/* one write(2) where it can: the dispatcher, its runs and other dispatchers may share
	 * one stderr (a journal, a file opened O_APPEND), and a line written in pieces would
	 * interleave with theirs.  A failing log has nowhere to be reported. */
	(void)fd_write_all(STDERR_FILENO, line, (size_t)n);
}
