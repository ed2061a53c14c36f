// vkp_strbuf.h — a growing NUL-terminated string (JSON lines, HTML pages). An allocation failure
// sets `oom` and turns later appends into no-ops, so builders check once at the end.
#ifndef VKP_STRBUF_H
#define VKP_STRBUF_H

#include <stddef.h>

typedef struct vkp_strbuf {
  char *p;        // owned (free() it), NULL until something is appended
  size_t len, cap;
  int oom;
} vkp_strbuf;

void vkp_strbuf_put(vkp_strbuf *b, const char *s, size_t n);
void vkp_strbuf_puts(vkp_strbuf *b, const char *s);
void vkp_strbuf_printf(vkp_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Appends s (UTF-8, NUL-terminated) as a JSON string literal: quotes added, '"' and '\\' escaped,
// control characters as \u00XX; everything else as it is.
void vkp_strbuf_json_string(vkp_strbuf *b, const char *s);

#endif
