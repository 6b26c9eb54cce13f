/*
 * listener — the listening sockets: bind to listen.host/port, accept clients, enforce
 * max_client_conn.
 */
#ifndef PGRELAY_LISTENER_H
#define PGRELAY_LISTENER_H

#include <stdbool.h>

#include "types.h"

bool listener_start(Runtime *rt);
/* Raises the soft RLIMIT_NOFILE to the hard limit; warns when max_client_conn and the pools
 * cannot fit in it. */
void listener_raise_fd_limit(const Config *cfg);
/* Stops accepting and closes the listening sockets (safe to call twice). */
void listener_stop(Runtime *rt);

/* Accepts on the sockets already in rt->listen_fds (handed over by a previous pgrelay). */
void listener_watch(Runtime *rt);

#endif
