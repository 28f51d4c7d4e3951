/* The dispatcher's sweeper (sweep.c). */
#ifndef IMGPIPE_SWEEP_H
#define IMGPIPE_SWEEP_H

#include "imgpipe.h"

/* Queues again the planning job of every batch 'in queue' or 'in progress' that has not
 * changed for after_ms and has no job on the stream, unless another dispatcher swept
 * within period_ms.  Returns the exit status for the sweep's process: 0, or 1 when a
 * backend failed (logged; the next sweep tries again). */
int sweep(const struct config *cfg, const char *owner, long after_ms, long period_ms);

#endif
