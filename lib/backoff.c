/* Exponential backoff with jitter; see backoff.h. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "backoff.h"

long backoff_ms(long first_ms, long cap_ms, int retry)
{
	long ms = first_ms;

	for (int i = 1; i < retry && ms < cap_ms; i++)
		ms *= 2;
	if (ms > cap_ms)
		ms = cap_ms;
	if (ms <= 0)
		return 0;
	return ms / 2 + (long)arc4random_uniform((uint32_t)(ms / 2 + 1));
}

void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L };

	if (ms > 0)
		nanosleep(&ts, NULL);   /* EINTR: a signal handler has something to say */
}

void backoff_sleep(long first_ms, long cap_ms, int retry)
{
	sleep_ms(backoff_ms(first_ms, cap_ms, retry));
}

int backoff_retry(long first_ms, long cap_ms, int attempt, int max_attempts)
{
	if (attempt >= max_attempts)
		return 0;
	backoff_sleep(first_ms, cap_ms, attempt);
	return 1;
}
