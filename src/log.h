/*
 * log — one line per event on stderr: time, level, the object it concerns (C-n for a client,
 * S-n for a server connection), and the message.
 *
 * Owns: formatting (text, or one JSON object per line with log.format: json: ts, level, pid, who,
 * msg; in text, control characters and invalid UTF-8 escaped so that no client-chosen name forges a
 * line) and level filtering (changeable at run time: log_set_level). Callers never pass secrets:
 * passwords, SCRAM messages and query parameters are not logged anywhere.
 */
#ifndef PGRELAY_LOG_H
#define PGRELAY_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

typedef struct LogSettings {
	ConfigLogLevel level;
	bool json; /* log.format: json */
} LogSettings;

void log_configure(LogSettings *settings);
void log_msg(ConfigLogLevel level, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(ConfigLogLevel level, const char *who, const char *fmt, va_list ap);
ConfigLogLevel log_level(void);
/* Changes the level at run time (the admin console's SET log_level); a reload sets log.level again. */
void log_set_level(ConfigLogLevel level);
/* Appends s as the inside of a JSON string (quotes, backslashes, control characters escaped;
 * invalid UTF-8 bytes become U+FFFD) to out, which has room for cap bytes in all (NUL included);
 * returns the new length. Stops before a character that does not fit. */
size_t log_json_escape(char *out, size_t len, size_t cap, const char *s);

/* Appends s to out for a text log line: line breaks and tabs as \n \r \t, other control
 * characters and invalid UTF-8 bytes as \xNN, C1 controls and U+2028/2029 as \uNNNN; returns the
 * new length (same contract as log_json_escape). */
size_t log_text_escape(char *out, size_t len, size_t cap, const char *s);

#define log_debug(who, ...) do { if (log_level() <= CONFIG_LOG_DEBUG) log_msg(CONFIG_LOG_DEBUG, who, __VA_ARGS__); } while (0)
#define log_info(who, ...) log_msg(CONFIG_LOG_INFO, who, __VA_ARGS__)
#define log_warning(who, ...) log_msg(CONFIG_LOG_WARNING, who, __VA_ARGS__)
#define log_error(who, ...) log_msg(CONFIG_LOG_ERROR, who, __VA_ARGS__)

/* Copies src into dst as one line: runs of blanks and line breaks (libpq's messages span lines)
 * become one space. */
void log_one_line(char *dst, size_t len, const char *src);

#endif
