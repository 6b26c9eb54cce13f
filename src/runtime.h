/*
 * runtime — creates the Runtime (types.h) and wires the modules: the event loop, signals (HUP
 * reload, TERM graceful shutdown, INT now), the janitor, configuration reload. Only main calls it.
 */
#ifndef PGRELAY_RUNTIME_H
#define PGRELAY_RUNTIME_H

#include <stdbool.h>

#include "types.h"

bool runtime_init(Runtime *rt, Config *cfg, const char *config_path);
/* Runs the loop until shutdown; returns the exit status. */
int runtime_run(Runtime *rt);
void runtime_free(Runtime *rt);

#endif
