// clip_tok_split.c — CLIP's pre-tokenizer regex, written out as a scanner:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// Branches are tried in that order at each position; characters no branch matches (whitespace)
// are skipped, as re.findall / HF's Split(..., "removed", invert) do.
#include <string.h>

#include "clip_tok_internal.h"

// The literal `lit` at v[i]. OpenAI's pattern is compiled with regex.IGNORECASE: ASCII letters
// match either case and 's' also matches U+017F LATIN SMALL LETTER LONG S.
static bool literal_at(const clip_cps *t, int32_t i, const char *lit, bool ignore_case) {
  for (int32_t k = 0; lit[k]; k++) {
    if (i + k >= t->n) return false;
    uint32_t c = t->v[i + k], l = (uint8_t)lit[k];
    if (c == l) continue;
    if (!ignore_case) return false;
    if (c < 0x80 && c >= 'A' && c <= 'Z' && c + 32 == l) continue;
    if (l == 's' && c == 0x17F) continue;
    return false;
  }
  return true;
}

typedef enum { CH_NONE, CH_LETTER, CH_NUMBER, CH_OTHER } char_kind;

static char_kind kind_of(uint32_t c, bool openai) {
  if (c < 0x80) {
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CH_LETTER;
    if (c >= '0' && c <= '9') return CH_NUMBER;
    return (c == ' ' || (c >= 0x09 && c <= 0x0D)) ? CH_NONE : CH_OTHER;
  }
  // Under IGNORECASE, U+0345 COMBINING GREEK YPOGEGRAMMENI (which case-folds to iota) matches
  // neither [\p{L}] nor [^\s\p{L}\p{N}] in the regex module: no branch takes it.
  if (openai && c == 0x345) return CH_NONE;
  unsigned f = clip_tok_class(c);
  if (f & CLIP_TOK_L) return CH_LETTER;
  if (f & CLIP_TOK_N) return CH_NUMBER;
  return (f & CLIP_TOK_WS) ? CH_NONE : CH_OTHER;
}

static vkp_status emit(clip_pieces *out, int32_t start, int32_t len, clip_piece_kind kind) {
  clip_piece p = {start, len, kind};
  return vkp_vec_push(out, p);
}

vkp_status clip_tok_split(const clip_cps *text, vkp_clip_normalizer norm, clip_pieces *out) {
  static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  static const struct { const char *lit; clip_piece_kind kind; } specials[] = {
      {"<|startoftext|>", CLIP_PIECE_SOT}, {"<|endoftext|>", CLIP_PIECE_EOT}};
  bool openai = norm == VKP_CLIP_NORM_OPENAI;
  const uint32_t *v = text->v;
  int32_t n = text->n;
  for (int32_t i = 0; i < n;) {
    int32_t len = 0;
    if (v[i] == '<') {
      for (int s = 0; s < 2 && !len; s++) {
        if (!literal_at(text, i, specials[s].lit, openai)) continue;
        len = (int32_t)strlen(specials[s].lit);
        if (openai) {   // one piece; it is the special token only when spelt exactly (the BPE cache)
          VKP_TRY(emit(out, i, len, literal_at(text, i, specials[s].lit, false) ? specials[s].kind : CLIP_PIECE_WORD));
        } else {   // ByteLevel's GPT-2 regex splits the match again: "<|", the name, "|>"
          VKP_TRY(emit(out, i, 2, CLIP_PIECE_WORD));
          VKP_TRY(emit(out, i + 2, len - 4, CLIP_PIECE_WORD));
          VKP_TRY(emit(out, i + len - 2, 2, CLIP_PIECE_WORD));
        }
      }
      if (len) {
        i += len;
        continue;
      }
    }
    if (v[i] == '\'') {
      for (int k = 0; k < 7 && !len; k++)
        if (literal_at(text, i, contractions[k], openai)) len = (int32_t)strlen(contractions[k]);
      if (len) {
        VKP_TRY(emit(out, i, len, CLIP_PIECE_WORD));
        i += len;
        continue;
      }
    }
    char_kind k = kind_of(v[i], openai);
    if (k == CH_NONE) {
      i++;
      continue;
    }
    len = 1;
    if (k != CH_NUMBER)   // letters and "other" characters run; each digit is its own piece
      while (i + len < n && kind_of(v[i + len], openai) == k) len++;
    VKP_TRY(emit(out, i, len, CLIP_PIECE_WORD));
    i += len;
  }
  return VKP_OK;
}
