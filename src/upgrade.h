/*
 * upgrade — restart or upgrade without refusing a client: the running pgrelay hands its listening
 * sockets to a new one over a Unix control socket (SCM_RIGHTS), so the kernel's accept queue is
 * never closed; the old one then stops accepting and shuts down gracefully (transactions finish,
 * idle clients are closed at a transaction boundary). Also systemd readiness (sd_notify).
 *
 * The control socket (listen.upgrade_socket, default /tmp/pgrelay-<uid>/.s.pgrelay.<host>.<port>.upgrade)
 * lives in a directory only pgrelay's user can enter (created 0700; owner and mode checked, a link
 * refused): otherwise there is no hand-over. The peer's uid is checked too.
 *
 * Protocol on listen.upgrade_socket (a stream socket, one exchange):
 *   new -> old  "TAKEOVER <pid>\n"
 *   old -> new  "FDS <n>\n" with n listening sockets attached (SCM_RIGHTS)
 *   new -> old  "READY\n"          (the new one accepts on them now)
 *   old -> new  "BYE\n"            (the old one stopped accepting and removed the socket file;
 *                                   the new one creates its own control socket)
 */
#ifndef PGRELAY_UPGRADE_H
#define PGRELAY_UPGRADE_H

#include <stdbool.h>

#include "types.h"

/* At startup: if a pgrelay answers on the control socket, take its listening sockets (into
 * rt->listen_fds) and return true; false: bind them yourself. Blocking, before the loop runs. */
bool upgrade_take_over(Runtime *rt);
/* After the listeners run: tell the old pgrelay (if any) to let go, then serve the control socket
 * for the next upgrade. */
void upgrade_start(Runtime *rt);
/* Closes the control socket (shutdown). */
void upgrade_stop(Runtime *rt);
/* systemd: READY=1 (with MAINPID), STOPPING=1, STATUS=... (no-ops without NOTIFY_SOCKET). */
void upgrade_notify_ready(Runtime *rt);
void upgrade_notify_stopping(void);

#endif
