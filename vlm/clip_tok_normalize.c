// clip_tok_normalize.c — text normalisation before the split: OpenAI's basic_clean +
// whitespace_clean + lower (with ftfy.fix_text's deterministic fixes) and HF's normalizer.
#include <stdlib.h>
#include <string.h>

#include "clip_tok_internal.h"

// Runs pass(in -> out) and swaps the result into *text.
typedef vkp_status (*text_pass)(const clip_cps *in, clip_cps *out);
static vkp_status apply(clip_cps *text, text_pass pass, clip_cps *tmp) {
  VKP_TRY(pass(text, tmp));
  clip_cps t = *text;
  *text = *tmp;
  *tmp = t;
  return VKP_OK;
}

// ---- ftfy.fix_text ---------------------------------------------------------------------------

// ftfy's LIGATURES: Latin typographic ligatures and legacy digraphs, split into their letters.
static const struct { uint32_t cp; const char *letters; } ligatures[] = {
    {0x0132, "IJ"}, {0x0133, "ij"}, {0x0149, "\xCA\xBCn"}, {0x01C4, "D\xC5\xBD"}, {0x01C5, "D\xC5\xBE"},
    {0x01C6, "d\xC5\xBE"}, {0x01C7, "LJ"}, {0x01C8, "Lj"}, {0x01C9, "lj"}, {0x01CA, "NJ"}, {0x01CB, "Nj"},
    {0x01CC, "nj"}, {0x01F1, "DZ"}, {0x01F2, "Dz"}, {0x01F3, "dz"}, {0xFB00, "ff"}, {0xFB01, "fi"},
    {0xFB02, "fl"}, {0xFB03, "ffi"}, {0xFB04, "ffl"}, {0xFB05, "\xC5\xBFt"}, {0xFB06, "st"},
};

// ftfy's remove_control_chars set.
static bool ftfy_control(uint32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

// ANSI escape `\033[` (digit|;)* letter at v[i]: its length, or 0.
static int32_t terminal_escape(const uint32_t *v, int32_t n, int32_t i) {
  if (v[i] != 0x1B || i + 1 >= n || v[i + 1] != '[') return 0;
  int32_t k = i + 2;
  while (k < n && (v[k] == ';' || (clip_tok_class(v[k]) & CLIP_TOK_ND))) k++;
  return k < n && v[k] < 0x80 && ((v[k] | 0x20) >= 'a' && (v[k] | 0x20) <= 'z') ? k + 1 - i : 0;
}

// One round of ftfy's per-character fixes, in its order: fix_c1_controls, fix_latin_ligatures,
// fix_character_width, uncurl_quotes, fix_line_breaks, remove_terminal_escapes,
// remove_control_chars. Each fix sees the output of the previous one.
static vkp_status c1_ligatures_width_quotes(const clip_cps *in, clip_cps *out) {
  out->n = 0;
  vkp_status st = VKP_OK;
  for (int32_t i = 0; i < in->n && !st; i++) {
    uint32_t c = clip_tok_cp1252(in->v[i]);
    const char *rep = NULL;
    for (size_t k = 0; k < sizeof ligatures / sizeof *ligatures && c >= 0x132; k++)
      if (ligatures[k].cp == c) rep = ligatures[k].letters;
    if (c == 0x3000) rep = " ";
    if (c >= CLIP_TOK_WIDTH_FIRST && c <= CLIP_TOK_WIDTH_LAST) rep = clip_tok_width_map[c - CLIP_TOK_WIDTH_FIRST];
    if (!rep) {
      st = clip_tok_push(out, c);
      continue;
    }
    st = clip_tok_push_utf8(out, rep);
  }
  for (int32_t k = 0; k < out->n; k++) {   // uncurl_quotes, after the replacements above
    uint32_t c = out->v[k];
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) out->v[k] = '\'';
    else if (c >= 0x201C && c <= 0x201F) out->v[k] = '"';
  }
  return st;
}

static vkp_status breaks_escapes_controls(const clip_cps *in, clip_cps *out) {
  out->n = 0;
  vkp_status st = VKP_OK;
  clip_cps lines = {0};   // fix_line_breaks first: the escape and control passes see its output
  for (int32_t i = 0; i < in->n && !st; i++) {
    uint32_t c = in->v[i];
    if (c == '\r' && i + 1 < in->n && in->v[i + 1] == '\n') continue;
    if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
    st = clip_tok_push(&lines, c);
  }
  for (int32_t i = 0; i < lines.n && !st;) {
    int32_t esc = terminal_escape(lines.v, lines.n, i);
    if (esc) {
      i += esc;
      continue;
    }
    uint32_t c = lines.v[i++];
    if (!ftfy_control(c)) st = clip_tok_push(out, c);
  }
  free(lines.v);
  return st;
}

static vkp_status fix_segment(clip_cps *seg, bool unescape_html, clip_cps *tmp) {
  clip_cps before = {0};
  vkp_status st = VKP_OK;
  for (int round = 0; round < 256 && !st; round++) {   // ftfy repeats until nothing changes
    before.n = 0;
    st = vkp_vec_reserve(&before, (int64_t)seg->n + 1);
    if (st) break;
    if (seg->n) memcpy(before.v, seg->v, (size_t)seg->n * sizeof *seg->v);
    before.n = seg->n;
    if (unescape_html) st = apply(seg, clip_tok_ftfy_unescape, tmp);
    if (!st) st = apply(seg, c1_ligatures_width_quotes, tmp);
    if (!st) st = apply(seg, breaks_escapes_controls, tmp);
    if (!st) st = apply(seg, clip_tok_nfc, tmp);
    if (!st && clip_tok_cps_equal(seg, &before)) break;
  }
  free(before.v);
  return st;
}

// ftfy.fix_text with its default config, less fix_encoding (mojibake detection). The text is
// fixed line by line; HTML unescaping ("auto") stops for good at the first line holding '<'.
vkp_status clip_tok_ftfy(clip_cps *text) {
  clip_cps out = {0}, seg = {0}, tmp = {0};
  vkp_status st = VKP_OK;
  bool unescape_html = true;
  for (int32_t pos = 0; pos < text->n && !st;) {
    int32_t end = pos;
    while (end < text->n && text->v[end] != '\n') end++;
    if (end < text->n) end++;   // the segment keeps its '\n'
    seg.n = 0;
    for (int32_t i = pos; i < end && !st; i++) {
      if (text->v[i] == '<') unescape_html = false;
      st = clip_tok_push(&seg, text->v[i]);
    }
    if (!st) st = fix_segment(&seg, unescape_html, &tmp);
    for (int32_t i = 0; i < seg.n && !st; i++) st = clip_tok_push(&out, seg.v[i]);
    pos = end;
  }
  if (!st) {
    free(text->v);
    *text = out;
    out.v = NULL;
  }
  free(out.v);
  free(seg.v);
  free(tmp.v);
  return st;
}

// ---- whitespace ------------------------------------------------------------------------------

// Python's str.strip(): drops str.isspace() characters at both ends, in place.
static void strip_pyspace(clip_cps *t) {
  int32_t a = 0, b = t->n;
  while (a < b && clip_tok_is_pyspace(t->v[a])) a++;
  while (b > a && clip_tok_is_pyspace(t->v[b - 1])) b--;
  if (a) memmove(t->v, t->v + a, (size_t)(b - a) * sizeof *t->v);
  t->n = b - a;
}

// `\s+` -> ' ' in place, \s being White_Space (the regex module's and Oniguruma's \s).
static void collapse_whitespace(clip_cps *t) {
  int32_t w = 0;
  bool prev_ws = false;
  for (int32_t r = 0; r < t->n; r++) {
    bool ws = clip_tok_class(t->v[r]) & CLIP_TOK_WS;
    if (!(ws && prev_ws)) t->v[w++] = ws ? ' ' : t->v[r];
    prev_ws = ws;
  }
  t->n = w;
}

static vkp_status lower_python(const clip_cps *in, clip_cps *out) { return clip_tok_lower(in, true, out); }
static vkp_status lower_rust(const clip_cps *in, clip_cps *out) { return clip_tok_lower(in, false, out); }

vkp_status clip_tok_normalize_openai(clip_cps *text) {
  clip_cps tmp = {0};
  vkp_status st = clip_tok_ftfy(text);
  if (!st) st = apply(text, clip_tok_html_unescape, &tmp);
  if (!st) st = apply(text, clip_tok_html_unescape, &tmp);
  if (!st) {
    strip_pyspace(text);
    collapse_whitespace(text);
    strip_pyspace(text);
    st = apply(text, lower_python, &tmp);
  }
  free(tmp.v);
  return st;
}

vkp_status clip_tok_normalize_hf(clip_cps *text) {
  clip_cps tmp = {0};
  vkp_status st = apply(text, clip_tok_nfc, &tmp);
  if (!st) {
    collapse_whitespace(text);
    st = apply(text, lower_rust, &tmp);
  }
  free(tmp.v);
  return st;
}
