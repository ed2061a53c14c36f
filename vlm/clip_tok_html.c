// clip_tok_html.c — HTML character references: Python's html.unescape (which OpenAI's
// basic_clean applies twice) and ftfy's stricter unescape_html.
#include <string.h>

#include "clip_tok_internal.h"

// Windows-1252 for 0x80..0x9F; the five undefined bytes stay themselves ("sloppy" cp1252, which
// is also what html.unescape maps those numeric references to).
uint32_t clip_tok_cp1252(uint32_t c) {
  static const uint16_t map[32] = {
      0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
      0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};
  return c >= 0x80 && c <= 0x9F ? map[c - 0x80] : c;
}

static const char *entity_find(const clip_tok_entity *table, int count, const char *name) {
  int lo = 0, hi = count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2, c = strcmp(table[mid].name, name);
    if (!c) return table[mid].value;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

static bool is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool is_ascii_hex(uint32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static bool is_ascii_alnum(uint32_t c) { return is_ascii_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }
static bool is_name_char(uint32_t c) {
  return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' && c != ';';
}
static uint32_t hex_value(uint32_t c) { return is_ascii_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }

// html.unescape's replacement for a numeric reference (num saturates above U+10FFFF).
static vkp_status push_charref(clip_cps *out, uint32_t num) {
  if (num == 0) return clip_tok_push(out, 0xFFFD);
  if (num == 0x0D) return clip_tok_push(out, 0x0D);
  if (num >= 0x80 && num <= 0x9F) return clip_tok_push(out, clip_tok_cp1252(num));
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return clip_tok_push(out, 0xFFFD);
  bool invalid = (num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) ||
                 (num >= 0x7F && num <= 0x9F) || (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE;
  return invalid ? VKP_OK : clip_tok_push(out, num);
}

// One reference starting at v[0] == '&' (html.unescape's pattern
// `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`): appends its replacement and
// returns the number of code points consumed, or 0 when nothing matches here.
static int32_t unescape_one(const uint32_t *v, int32_t n, clip_cps *out, vkp_status *st) {
  if (n >= 3 && v[1] == '#') {
    bool hex = (v[2] == 'x' || v[2] == 'X');
    int32_t k = hex ? 3 : 2;
    if (k >= n || !(hex ? is_ascii_hex(v[k]) : is_ascii_digit(v[k]))) return 0;
    uint32_t num = 0;
    for (; k < n && (hex ? is_ascii_hex(v[k]) : is_ascii_digit(v[k])); k++) {
      num = num * (hex ? 16u : 10u) + (hex ? hex_value(v[k]) : v[k] - '0');
      if (num > 0x110000) num = 0x110000;   // saturate: anything above U+10FFFF is one case
    }
    if (k < n && v[k] == ';') k++;
    *st = push_charref(out, num);
    return k;
  }
  int32_t k = 1;
  while (k < n && k - 1 < 32 && is_name_char(v[k])) k++;
  if (k == 1) return 0;
  if (k < n && v[k] == ';') k++;
  // Names are ASCII: any other character becomes '\1', which no name contains.
  char name[40];
  int32_t len = k - 1;
  for (int32_t i = 0; i < len; i++) name[i] = v[1 + i] < 0x80 ? (char)v[1 + i] : '\1';
  name[len] = '\0';
  const char *value = entity_find(clip_tok_html5, clip_tok_html5_count, name);
  int32_t used = len;
  for (int32_t x = len - 1; !value && x >= 2; x--) {   // the longest known prefix (legacy names)
    name[x] = '\0';
    if ((value = entity_find(clip_tok_html5, clip_tok_html5_count, name))) used = x;
  }
  if (!value) return 0;   // left as it is
  *st = clip_tok_push_utf8(out, value);
  for (int32_t i = 1 + used; !*st && i < k; i++) *st = clip_tok_push(out, v[i]);
  return k;
}

static vkp_status html_unescape_span(const uint32_t *v, int32_t n, clip_cps *out) {
  vkp_status st = VKP_OK;
  for (int32_t i = 0; i < n && !st;) {
    int32_t used = v[i] == '&' ? unescape_one(v + i, n - i, out, &st) : 0;
    if (used) {
      i += used;
      continue;
    }
    st = clip_tok_push(out, v[i++]);
  }
  return st;
}

vkp_status clip_tok_html_unescape(const clip_cps *in, clip_cps *out) {
  out->n = 0;
  return html_unescape_span(in->v, in->n, out);
}

// ftfy: `&#?[0-9A-Za-z]{1,24};` replaced by a known entity (including capitalised forms of
// lowercase names), or by html.unescape of a numeric reference when that consumes the ';'.
vkp_status clip_tok_ftfy_unescape(const clip_cps *in, clip_cps *out) {
  out->n = 0;
  vkp_status st = VKP_OK;
  const uint32_t *v = in->v;
  for (int32_t i = 0; i < in->n && !st;) {
    int32_t j = i + 1, k;
    if (v[i] != '&') goto literal;
    if (j < in->n && v[j] == '#') j++;
    for (k = j; k < in->n && k - j < 24 && is_ascii_alnum(v[k]); k++) {}
    if (k == j || k >= in->n || v[k] != ';') goto literal;
    char name[32];
    int32_t len = k - i;   // the text after '&', ';' included
    for (int32_t t = 0; t < len; t++) name[t] = (char)v[i + 1 + t];
    name[len] = '\0';
    const char *value = entity_find(clip_tok_html5, clip_tok_html5_count, name);
    if (!value) value = entity_find(clip_tok_html_upper, clip_tok_html_upper_count, name);
    if (value) {
      st = clip_tok_push_utf8(out, value);
    } else if (name[0] == '#') {
      int32_t before = out->n;
      st = html_unescape_span(v + i, len + 1, out);
      bool partial = false;   // html.unescape left a ';': keep the original text
      for (int32_t t = before; !st && t < out->n; t++) partial |= out->v[t] == ';';
      if (partial) {
        out->n = before;
        for (int32_t t = 0; !st && t <= len; t++) st = clip_tok_push(out, v[i + t]);
      }
    } else {
      for (int32_t t = 0; !st && t <= len; t++) st = clip_tok_push(out, v[i + t]);
    }
    i = k + 1;
    continue;
  literal:
    st = clip_tok_push(out, v[i++]);
  }
  return st;
}
