/* Exponential backoff with jitter; see backoff.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "backoff.h"

void backoff_sleep(long first_ms, long cap_ms, int retry)
{
	long ms = first_ms;
	struct timespec ts;

	for (int i = 1; i < retry && ms < cap_ms; i++)
		ms *= 2;
	if (ms > cap_ms)
		ms = cap_ms;
	if (ms <= 0)
		return;
	ms = ms / 2 + (long)arc4random_uniform((uint32_t)(ms / 2 + 1));
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = ms % 1000 * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}
