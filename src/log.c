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

void log_set_level(ConfigLogLevel level)
{
	if (settings)
		settings->level = level;
}

static const char *json_level_name(ConfigLogLevel level)
{
	switch (level) {
	case CONFIG_LOG_DEBUG: return "debug";
	case CONFIG_LOG_INFO: return "info";
	case CONFIG_LOG_WARNING: return "warning";
	case CONFIG_LOG_ERROR: return "error";
	}
	return "info";
}

/* The length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

size_t log_json_escape(char *out, size_t len, size_t cap, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	while (*s) {
		char tmp[8];
		const char *piece = tmp;
		size_t n;
		size_t adv = 1;
		unsigned char c = *s;
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			n = 2;
		} else if (c == '\n') {
			piece = "\\n";
			n = 2;
		} else if (c == '\r') {
			piece = "\\r";
			n = 2;
		} else if (c == '\t') {
			piece = "\\t";
			n = 2;
		} else if (c < 0x20 || c == 0x7f) {
			n = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", c);
		} else if (c < 0x80) {
			tmp[0] = (char)c;
			n = 1;
		} else if ((adv = utf8_len(s)) != 0) {
			piece = (const char *)s;
			n = adv;
		} else {
			piece = "\\ufffd";
			n = 6;
			adv = 1;
		}
		if (len + n + 1 > cap)
			break;
		memcpy(out + len, piece, n);
		len += n;
		s += adv;
	}
	out[len] = 0;
	return len;
}

size_t log_text_escape(char *out, size_t len, size_t cap, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	while (*s) {
		char tmp[8];
		const char *piece = tmp;
		size_t n, adv = 1;
		unsigned char c = *s;
		if (c == '\n') {
			piece = "\\n";
			n = 2;
		} else if (c == '\r') {
			piece = "\\r";
			n = 2;
		} else if (c == '\t') {
			piece = "\\t";
			n = 2;
		} else if (c < 0x20 || c == 0x7f) {
			n = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
		} else if (c < 0x80) {
			tmp[0] = (char)c;
			n = 1;
		} else if ((adv = utf8_len(s)) == 0) {
			n = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
			adv = 1;
		} else if ((adv == 2 && c == 0xC2 && s[1] < 0xA0) ||
			   (adv == 3 && c == 0xE2 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9))) {
			/* C1 controls, LINE SEPARATOR, PARAGRAPH SEPARATOR */
			unsigned cp = adv == 2 ? (unsigned)(s[1] & 0x3F) | 0x80u : 0x2000u | (unsigned)(s[2] & 0x3F);
			n = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", cp);
		} else {
			piece = (const char *)s;
			n = adv;
		}
		if (len + n + 1 > cap)
			break;
		memcpy(out + len, piece, n);
		len += n;
		s += adv;
	}
	out[len] = 0;
	return len;
}

void log_vmsg(ConfigLogLevel level, const char *who, const char *fmt, va_list ap)
{
	if (level < log_level())
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	if (settings && settings->json) {
		char msg[2048];
		vsnprintf(msg, sizeof msg, fmt, ap);
		char line[8192];
		size_t n = strftime(line, sizeof line, "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ\",\"level\":\"%s\",\"pid\":%d,\"who\":",
				      (int)(tv.tv_usec / 1000), json_level_name(level), (int)getpid());
		if (who && *who) {
			line[n++] = '"';
			n = log_json_escape(line, n, 256 + n, who);
			line[n++] = '"';
		} else {
			memcpy(line + n, "null", 4);
			n += 4;
		}
		memcpy(line + n, ",\"msg\":\"", 8);
		n += 8;
		n = log_json_escape(line, n, sizeof line - 3, msg);
		line[n++] = '"';
		line[n++] = '}';
		line[n++] = '\n';
		fwrite(line, 1, n, stderr);
		return;
	}
	/* Text: the message is escaped (log_text_escape), so that names a client chose (user,
	 * database, application_name) cannot start a forged line or carry terminal controls. */
	char msg[2048];
	vsnprintf(msg, sizeof msg, fmt, ap);
	char line[4096];
	size_t n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03d UTC [%d] %s ", (int)(tv.tv_usec / 1000),
			      (int)getpid(), level_name(level));
	if (who && *who) {
		n = log_text_escape(line, n, n + 256, who);
		line[n++] = ':';
		line[n++] = ' ';
	}
	n = log_text_escape(line, n, sizeof line - 1, msg);
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
