/* Exponential backoff with jitter, for the tools and the library that retry requests. */
#ifndef IMGPIPE_BACKOFF_H
#define IMGPIPE_BACKOFF_H

/* Sleeps before retry number `retry` (1 for the first retry): first_ms doubled for each
 * retry after the first, capped at cap_ms, then jittered to between half and all of it,
 * so that many clients failing together do not retry in step. */
void backoff_sleep(long first_ms, long cap_ms, int retry);

#endif
