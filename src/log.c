/*
 * log — stderr logging (see log.h). The settings live in the runtime struct; this module keeps
 * only a pointer to them.
 */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static LogSettings *settings; /* points into the Runtime; NULL before start-up */

void log_configure(LogSettings *s) { settings = s; }

ConfigLogLevel log_level(void) { return settings ? settings->level : CONFIG_LOG_INFO; }

static const char *level_name(ConfigLogLevel level)
{
	switch (level) {
	case CONFIG_LOG_DEBUG: return "DEBUG";
	case CONFIG_LOG_INFO: return "LOG";
	case CONFIG_LOG_WARNING: return "WARNING";
	case CONFIG_LOG_ERROR: return "ERROR";
	}
	return "LOG";
}

void log_vmsg(ConfigLogLevel level, const char *who, const char *fmt, va_list ap)
{
	if (level < log_level())
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char line[2048];
	size_t n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03d UTC [%d] %s %s%s", (int)(tv.tv_usec / 1000),
			      (int)getpid(), level_name(level), who ? who : "", who && *who ? ": " : "");
	if (n < sizeof(line)) {
		int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (m > 0)
			n += (size_t)m;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}

void log_msg(ConfigLogLevel level, const char *who, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, who, fmt, ap);
	va_end(ap);
}

void log_one_line(char *dst, size_t len, const char *src)
{
	size_t n = 0;
	bool space = false;
	for (const char *p = src ? src : ""; *p && n + 1 < len; p++) {
		char c = *p;
		if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
			space = n > 0;
			continue;
		}
		if (space && n + 2 < len)
			dst[n++] = ' ';
		space = false;
		dst[n++] = c;
	}
	dst[n] = '\0';
}
