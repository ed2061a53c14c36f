// strbuf.c — vkp_strbuf.
#include "vkp_strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vkp_strbuf_put(vkp_strbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (n + 1 > b->cap - b->len) {
    size_t ncap = b->cap ? b->cap : 256;
    while (n + 1 > ncap - b->len) {
      if (ncap > SIZE_MAX / 2) {
        b->oom = 1;
        return;
      }
      ncap *= 2;
    }
    char *np = realloc(b->p, ncap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = ncap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void vkp_strbuf_puts(vkp_strbuf *b, const char *s) { vkp_strbuf_put(b, s, strlen(s)); }

void vkp_strbuf_printf(vkp_strbuf *b, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof buf) {
    vkp_strbuf_put(b, buf, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (!big) {
    b->oom = 1;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  vkp_strbuf_put(b, big, (size_t)n);
  free(big);
}

void vkp_strbuf_json_string(vkp_strbuf *b, const char *s) {
  vkp_strbuf_put(b, "\"", 1);
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      vkp_strbuf_put(b, e, 2);
    } else if (c < 0x20) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", c);
      vkp_strbuf_put(b, e, 6);
    } else {
      size_t run = 1;   // copy the run of plain bytes at once
      while (p[run] && (unsigned char)p[run] >= 0x20 && p[run] != '"' && p[run] != '\\') run++;
      vkp_strbuf_put(b, p, run);
      p += run - 1;
    }
  }
  vkp_strbuf_put(b, "\"", 1);
}
