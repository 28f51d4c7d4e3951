/* The dispatcher's log (log.c). */
#ifndef IMGPIPE_DISPATCH_LOG_H
#define IMGPIPE_DISPATCH_LOG_H

/* Names the host in every line from now on. */
void log_init(const char *host);
/* Writes one logfmt line to stderr: ts=... host=... [batch=... [chunk=...]] stage=dispatch
 * event=... msg="..." (batch and chunk are left out when NULL or empty), as process-batch
 * logs, so that one batch can be followed across hosts in the journal. */
void log_event(const char *batch, const char *chunk, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
