/*
 * log — one line per event on stderr: time, level, the object it concerns (C-n for a client,
 * S-n for a server connection), and the message.
 *
 * Owns: formatting and level filtering. Callers never pass secrets: passwords, SCRAM messages and
 * query parameters are not logged anywhere.
 */
#ifndef PGRELAY_LOG_H
#define PGRELAY_LOG_H

#include <stdarg.h>

#include "config.h"

typedef struct LogSettings {
	ConfigLogLevel level;
} LogSettings;

void log_configure(LogSettings *settings);
void log_msg(ConfigLogLevel level, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(ConfigLogLevel level, const char *who, const char *fmt, va_list ap);
ConfigLogLevel log_level(void);

#define log_debug(who, ...) do { if (log_level() <= CONFIG_LOG_DEBUG) log_msg(CONFIG_LOG_DEBUG, who, __VA_ARGS__); } while (0)
#define log_info(who, ...) log_msg(CONFIG_LOG_INFO, who, __VA_ARGS__)
#define log_warning(who, ...) log_msg(CONFIG_LOG_WARNING, who, __VA_ARGS__)
#define log_error(who, ...) log_msg(CONFIG_LOG_ERROR, who, __VA_ARGS__)

/* Copies src into dst as one line: runs of blanks and line breaks (libpq's messages span lines)
 * become one space. */
void log_one_line(char *dst, size_t len, const char *src);

#endif
