/* Connections for the operators' routes (healthz.c, metrics.c), with every wait bounded
 * by BACKEND_TIMEOUT_MS, so that a backend that hangs (stopped, or its network gone)
 * counts as unavailable in time rather than hanging the request.  Each returns 0, or -1
 * with the reason in why. */
#ifndef IMGPIPE_CGI_BACKEND_H
#define IMGPIPE_CGI_BACKEND_H

#include "db.h"
#include "queue.h"

#define BACKEND_TIMEOUT_MS 1000

/* db_open_within; close with db_close. */
int backend_db(struct db *d, const struct config *cfg, char *why, size_t len);
/* queue_init and queue_connect; disconnect with queue_disconnect (also after a failure). */
int backend_queue(struct queue *q, const struct config *cfg, char *why, size_t len);

#endif
