// clip_tok_unicode.c — UTF-8, character classes, Python's str.lower() and NFC over code-point
// arrays, from the generated tables of clip_tok_unicode_data.c.
#include <stdlib.h>
#include <string.h>

#include "clip_tok_internal.h"

vkp_status clip_tok_push(clip_cps *v, uint32_t cp) { return vkp_vec_push(v, cp); }

vkp_status clip_tok_push_utf8(clip_cps *v, const char *s) {
  clip_cps tmp = {0};
  vkp_status st = clip_tok_utf8_decode(s, strlen(s), &tmp);
  for (int32_t i = 0; !st && i < tmp.n; i++) st = vkp_vec_push(v, tmp.v[i]);
  free(tmp.v);
  return st;
}

bool clip_tok_cps_equal(const clip_cps *a, const clip_cps *b) {
  return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, (size_t)a->n * sizeof *a->v));
}

// ---- UTF-8 -----------------------------------------------------------------------------------

// Decodes as Python's bytes.decode("utf-8", "replace") does: a maximal prefix of a valid sequence
// that is cut short, or a byte that cannot start one, becomes one U+FFFD.
vkp_status clip_tok_utf8_decode(const char *s, size_t n, clip_cps *out) {
  const uint8_t *p = (const uint8_t *)s;
  out->n = 0;
  if (vkp_vec_reserve(out, (int64_t)n + 1)) return VKP_ERR_OOM;
  size_t i = 0;
  while (i < n) {
    uint8_t b = p[i];
    if (b < 0x80) {
      out->v[out->n++] = b;
      i++;
      continue;
    }
    int need;
    uint32_t cp;
    uint8_t lo = 0x80, hi = 0xBF;   // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) need = 1, cp = b & 0x1F;
    else if (b >= 0xE0 && b <= 0xEF) {
      need = 2, cp = b & 0x0F;
      if (b == 0xE0) lo = 0xA0;          // no overlongs
      if (b == 0xED) hi = 0x9F;          // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3, cp = b & 0x07;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;          // <= U+10FFFF
    } else {
      out->v[out->n++] = 0xFFFD;
      i++;
      continue;
    }
    size_t j = i + 1;
    int got = 0;
    while (got < need && j < n) {
      uint8_t c = p[j];
      if (got == 0 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
      cp = (cp << 6) | (c & 0x3F);
      got++, j++;
    }
    out->v[out->n++] = got == need ? cp : 0xFFFD;
    i = j;
  }
  return VKP_OK;
}

vkp_status clip_tok_utf8_encode(const uint32_t *cps, int32_t n, clip_bytes *bytes) {
  if (vkp_vec_reserve(bytes, (int64_t)bytes->n + 4 * (int64_t)n + 1)) return VKP_ERR_OOM;
  char *o = bytes->v + bytes->n;
  for (int32_t i = 0; i < n; i++) {
    uint32_t c = cps[i];
    if (c < 0x80) {
      *o++ = (char)c;
    } else if (c < 0x800) {
      *o++ = (char)(0xC0 | (c >> 6));
      *o++ = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      *o++ = (char)(0xE0 | (c >> 12));
      *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
      *o++ = (char)(0x80 | (c & 0x3F));
    } else {
      *o++ = (char)(0xF0 | (c >> 18));
      *o++ = (char)(0x80 | ((c >> 12) & 0x3F));
      *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
      *o++ = (char)(0x80 | (c & 0x3F));
    }
  }
  bytes->n = (int32_t)(o - bytes->v);
  return VKP_OK;
}

// ---- classes and lowercase -------------------------------------------------------------------

unsigned clip_tok_class(uint32_t cp) {
  int lo = 0, hi = clip_tok_class_count - 1;   // last range with start <= cp
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (clip_tok_class_ranges[mid].start <= cp) lo = mid;
    else hi = mid - 1;
  }
  return clip_tok_class_ranges[lo].flags;
}

bool clip_tok_is_pyspace(uint32_t cp) { return (cp >= 0x1C && cp <= 0x1F) || (clip_tok_class(cp) & CLIP_TOK_WS); }

static uint32_t lower_simple(uint32_t cp) {
  if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
  int lo = 0, hi = clip_tok_lower_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (clip_tok_lower_map[mid].from == cp) return clip_tok_lower_map[mid].to;
    if (clip_tok_lower_map[mid].from < cp) lo = mid + 1;
    else hi = mid - 1;
  }
  return cp;
}

// Python's Final_Sigma test for the U+03A3 at i: \p{Cased} \p{Case_Ignorable}* before it and no
// \p{Case_Ignorable}* \p{Cased} after it.
static bool final_sigma_at(const clip_cps *s, int32_t i) {
  int32_t j = i - 1;
  while (j >= 0 && (clip_tok_class(s->v[j]) & CLIP_TOK_CASE_IGN)) j--;
  if (j < 0 || !(clip_tok_class(s->v[j]) & CLIP_TOK_CASED)) return false;
  j = i + 1;
  while (j < s->n && (clip_tok_class(s->v[j]) & CLIP_TOK_CASE_IGN)) j++;
  return j == s->n || !(clip_tok_class(s->v[j]) & CLIP_TOK_CASED);
}

vkp_status clip_tok_lower(const clip_cps *in, bool final_sigma, clip_cps *out) {
  out->n = 0;
  if (vkp_vec_reserve(out, (int64_t)in->n + 8)) return VKP_ERR_OOM;
  for (int32_t i = 0; i < in->n; i++) {
    uint32_t c = in->v[i];
    if (c == 0x130) {   // the one character whose lowercase is two: i + COMBINING DOT ABOVE
      if (vkp_vec_push(out, 0x69u) || vkp_vec_push(out, 0x307u)) return VKP_ERR_OOM;
      continue;
    }
    uint32_t l = c == 0x3A3 && final_sigma ? (final_sigma_at(in, i) ? 0x3C2u : 0x3C3u) : lower_simple(c);
    if (vkp_vec_push(out, l)) return VKP_ERR_OOM;
  }
  return VKP_OK;
}

// ---- NFC ---------------------------------------------------------------------------------------

#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_LN 19u
#define HANGUL_VN 21u
#define HANGUL_TN 28u
#define HANGUL_N (HANGUL_VN * HANGUL_TN)
#define HANGUL_SN (HANGUL_LN * HANGUL_N)

static int ccc_of(uint32_t cp) {
  if (cp < 0x300) return 0;
  int lo = 0, hi = clip_tok_ccc_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (cp < clip_tok_ccc_ranges[mid].lo) hi = mid - 1;
    else if (cp > clip_tok_ccc_ranges[mid].hi) lo = mid + 1;
    else return clip_tok_ccc_ranges[mid].ccc;
  }
  return 0;
}

static const clip_tok_decomp *decomp_of(uint32_t cp) {
  int lo = 0, hi = clip_tok_decomp_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (clip_tok_decomps[mid].cp == cp) return &clip_tok_decomps[mid];
    if (clip_tok_decomps[mid].cp < cp) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

// The primary composite of (a, b), or 0.
static uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LN && b >= HANGUL_V && b < HANGUL_V + HANGUL_VN)
    return HANGUL_S + ((a - HANGUL_L) * HANGUL_VN + (b - HANGUL_V)) * HANGUL_TN;
  if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SN && (a - HANGUL_S) % HANGUL_TN == 0 && b > HANGUL_T &&
      b < HANGUL_T + HANGUL_TN)
    return a + (b - HANGUL_T);
  int lo = 0, hi = clip_tok_compose_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    const clip_tok_compose_entry *e = &clip_tok_composes[mid];
    if (e->a == a && e->b == b) return e->c;
    if (e->a < a || (e->a == a && e->b < b)) lo = mid + 1;
    else hi = mid - 1;
  }
  return 0;
}

static vkp_status decompose(const clip_cps *in, clip_cps *out) {
  out->n = 0;
  if (vkp_vec_reserve(out, (int64_t)in->n + 16)) return VKP_ERR_OOM;
  for (int32_t i = 0; i < in->n; i++) {
    uint32_t c = in->v[i];
    if (c >= HANGUL_S && c < HANGUL_S + HANGUL_SN) {
      uint32_t s = c - HANGUL_S, t = s % HANGUL_TN;
      if (vkp_vec_push(out, HANGUL_L + s / HANGUL_N) || vkp_vec_push(out, HANGUL_V + (s % HANGUL_N) / HANGUL_TN))
        return VKP_ERR_OOM;
      if (t && vkp_vec_push(out, HANGUL_T + t)) return VKP_ERR_OOM;
      continue;
    }
    const clip_tok_decomp *d = c < 0xC0 ? NULL : decomp_of(c);
    if (!d) {
      if (vkp_vec_push(out, c)) return VKP_ERR_OOM;
      continue;
    }
    for (int k = 0; k < d->len; k++)
      if (vkp_vec_push(out, clip_tok_decomp_pool[d->off + k])) return VKP_ERR_OOM;
  }
  return VKP_OK;
}

// Canonical ordering: each run of non-starters stably sorted by combining class.
static void canonical_order(clip_cps *s) {
  for (int32_t i = 1; i < s->n; i++) {
    uint32_t c = s->v[i];
    int cc = ccc_of(c);
    if (!cc) continue;
    int32_t j = i;
    while (j > 0) {
      int pc = ccc_of(s->v[j - 1]);
      if (pc <= cc) break;   // a starter (0) or a smaller/equal class stops the move
      s->v[j] = s->v[j - 1];
      j--;
    }
    s->v[j] = c;
  }
}

// Canonical composition in place (UAX #15): a character joins the last starter unless a
// character of equal or higher class (or a starter) stands between them.
static void canonical_compose(clip_cps *s) {
  if (s->n < 2) return;
  int32_t starter = 0, w = 1;
  int last_cc = ccc_of(s->v[0]) ? 256 : 0;   // a leading non-starter composes with nothing
  for (int32_t r = 1; r < s->n; r++) {
    uint32_t c = s->v[r];
    int cc = ccc_of(c);
    uint32_t comp = (last_cc < cc || last_cc == 0) ? compose(s->v[starter], c) : 0;
    if (comp) {
      s->v[starter] = comp;
      continue;
    }
    if (cc == 0) starter = w;
    last_cc = cc;
    s->v[w++] = c;
  }
  s->n = w;
}

vkp_status clip_tok_nfc(const clip_cps *in, clip_cps *out) {
  bool simple = true;   // everything below U+0300 is already NFC
  for (int32_t i = 0; i < in->n && simple; i++) simple = in->v[i] < 0x300;
  if (simple) {
    out->n = 0;
    if (vkp_vec_reserve(out, (int64_t)in->n + 1)) return VKP_ERR_OOM;
    if (in->n) memcpy(out->v, in->v, (size_t)in->n * sizeof *in->v);
    out->n = in->n;
    return VKP_OK;
  }
  VKP_TRY(decompose(in, out));
  canonical_order(out);
  canonical_compose(out);
  return VKP_OK;
}
