/* The dispatcher's webhook deliverer (deliver.c). */
#ifndef IMGPIPE_DELIVER_H
#define IMGPIPE_DELIVER_H

#include "imgpipe.h"
#include "queue.h"

/* Makes one attempt of each webhook delivery that is due, until none is, recording each
 * on its batch.  Returns the exit status for the deliverer's process: 0, or 1 when Redis
 * failed (logged; a claimed delivery is only delayed). */
int deliver_webhooks(const struct config *cfg);

#endif
