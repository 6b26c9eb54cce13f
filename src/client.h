/*
 * client — one application connection: startup (SSLRequest/GSSENCRequest refused, StartupMessage
 * 3.0, CancelRequest), authentication against proxy.yaml's users (SCRAM-SHA-256, md5, cleartext),
 * login, then relaying the client's messages to the server the pool lends it.
 *
 * Owns: the client-side state machine, the client's wanted session parameters and its
 * BackendKeyData, asking the pool for a server at the start of each transaction, and ending the
 * client (ErrorResponse + close) cleanly.
 */
#ifndef PGRELAY_CLIENT_H
#define PGRELAY_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "session.h"

/* Takes ownership of an accepted socket. */
Client *client_accept(Runtime *rt, int fd, const char *addr);

/* Sends an ErrorResponse (FATAL) and closes. */
void client_fatal(Client *c, const char *sqlstate, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Closes without a message. reason is logged. */
void client_close(Client *c, const char *reason);

/* The pool lends the client a server. */
void client_linked(Client *c, Server *s);
/* The pool's server parameters are known: finish the login. */
void client_login_ready(Client *c);
/* The server a client waits for cannot be had (connect failure, timeout). */
void client_wait_failed(Client *c, const char *sqlstate, const char *message);
/* The server linked to the client finished a transaction (or the session ended) and let go. */
void client_unlinked(Client *c);
/* The linked server died: the client gets an error and is closed. */
void client_server_lost(Client *c, const char *message);
/* Re-examines reading/backpressure state after the peer drained. */
void client_resume(Client *c);

/* SIGTERM: close now if idle, otherwise at the next transaction boundary. */
void client_shutdown(Client *c);


#endif
