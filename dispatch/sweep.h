/* The dispatcher's sweeper (sweep.c). */
#ifndef IMGPIPE_SWEEP_H
#define IMGPIPE_SWEEP_H

#include "imgpipe.h"
#include "queue.h"

/* Queues again the planning job of every batch 'in queue' or 'in progress' that has not
 * changed for after_ms and has no job on the stream, unless another dispatcher swept
 * within period_ms.  Returns the exit status for the sweep's process: 0, or 1 when a
 * backend failed (logged; the next sweep tries again). */
int sweep(const struct config *cfg, const char *owner, long after_ms, long period_ms);
/* Gives up the period's sweep, when owner took it, for a dispatcher that stops: the
 * others (perhaps with a shorter --sweep-after) need not wait for it to expire. */
int sweep_unlock(struct queue *q, const char *owner);

#endif
