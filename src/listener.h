/*
 * listener — the listening sockets: bind to listen.host/port, accept clients, enforce
 * max_client_conn.
 */
#ifndef PGRELAY_LISTENER_H
#define PGRELAY_LISTENER_H

#include <stdbool.h>

#include "runtime.h"

bool listener_start(Runtime *rt);
/* Stops accepting and closes the listening sockets (safe to call twice). */
void listener_stop(Runtime *rt);

/* Accepts on the sockets already in rt->listen_fds (handed over by a previous pgrelay). */
void listener_watch(Runtime *rt);

#endif
