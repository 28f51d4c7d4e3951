/* Exponential backoff with jitter: the one wait of every retry loop (S3 requests, webhook
 * deliveries, MongoDB, downloads, the dispatcher's reconnections to Redis). */
#ifndef IMGPIPE_BACKOFF_H
#define IMGPIPE_BACKOFF_H

/* The wait in milliseconds before retry number `retry` (1 for the first retry): first_ms
 * doubled for each retry after the first, capped at cap_ms, then jittered to between half
 * and all of it, so that many clients failing together do not retry in step. */
long backoff_ms(long first_ms, long cap_ms, int retry);

/* Sleeps backoff_ms(first_ms, cap_ms, retry).  A signal caught meanwhile ends the wait
 * early, so that a process told to stop is not kept waiting. */
void backoff_sleep(long first_ms, long cap_ms, int retry);

/* For a loop of at most max_attempts tries: after failed try number `attempt` (from 1),
 * returns 0 when that was the last, else sleeps before the next (backoff_sleep with
 * attempt as the retry number) and returns 1. */
int backoff_retry(long first_ms, long cap_ms, int attempt, int max_attempts);

/* Sleeps ms milliseconds, or less when a signal is caught (as backoff_sleep). */
void sleep_ms(long ms);

#endif
