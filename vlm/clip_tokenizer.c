// clip_tokenizer.c — text to CLIP ids: normalise, split, BPE each piece; frame, truncate, pad.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "clip_tok_internal.h"

// Buffers of one encode call (the tokenizer itself stays read-only).
typedef struct encode_state {
  clip_cps cps;
  clip_pieces pieces;
  clip_bytes bytes;
  clip_tok_scratch scratch;
} encode_state;

static void encode_state_free(encode_state *es) {
  free(es->cps.v);
  free(es->pieces.v);
  free(es->bytes.v);
  clip_tok_scratch_free(&es->scratch);
}

// Text without special tokens of the HF kind (matched verbatim before normalisation).
static vkp_status encode_span(const vkp_clip_tokenizer *tok, const char *s, size_t n, encode_state *es,
                              clip_tok_sink *sink) {
  VKP_TRY(clip_tok_utf8_decode(s, n, &es->cps));
  VKP_TRY(tok->norm == VKP_CLIP_NORM_OPENAI ? clip_tok_normalize_openai(&es->cps) : clip_tok_normalize_hf(&es->cps));
  es->pieces.n = 0;
  VKP_TRY(clip_tok_split(&es->cps, tok->norm, &es->pieces));
  for (int32_t i = 0; i < es->pieces.n; i++) {
    const clip_piece *p = &es->pieces.v[i];
    if (p->kind != CLIP_PIECE_WORD) {   // OpenAI: "<|startoftext|>" in the text is that token
      clip_tok_sink_put(sink, p->kind == CLIP_PIECE_SOT ? tok->sot_literal_id : tok->eot_literal_id);
      continue;
    }
    es->bytes.n = 0;
    VKP_TRY(clip_tok_utf8_encode(es->cps.v + p->start, p->len, &es->bytes));
    VKP_TRY(clip_tok_bpe_word(&tok->merges, tok->byte_id, tok->byte_end_id, tok->unk_id, (const uint8_t *)es->bytes.v,
                              (size_t)es->bytes.n, tok->norm == VKP_CLIP_NORM_OPENAI, &es->scratch, sink));
  }
  return VKP_OK;
}

// The longest special token starting at s (HF's added-token matching is leftmost-longest).
static const clip_tok_special *special_at(const vkp_clip_tokenizer *tok, const char *s) {
  const clip_tok_special *best = NULL;
  size_t best_len = 0;
  for (int k = 0; k < tok->n_specials; k++) {
    size_t len = strlen(tok->specials[k].text);
    if (len > best_len && !strncmp(s, tok->specials[k].text, len)) best = &tok->specials[k], best_len = len;
  }
  return best;
}

static vkp_status encode_all(const vkp_clip_tokenizer *tok, const char *utf8, clip_tok_sink *sink) {
  encode_state es = {0};
  vkp_status st = VKP_OK;
  size_t n = strlen(utf8), from = 0;
  if (tok->norm == VKP_CLIP_NORM_HF) {
    for (size_t i = 0; i < n && !st;) {
      const clip_tok_special *sp = special_at(tok, utf8 + i);
      if (!sp) {
        i++;
        continue;
      }
      st = encode_span(tok, utf8 + from, i - from, &es, sink);
      clip_tok_sink_put(sink, sp->id);
      i += strlen(sp->text);
      from = i;
    }
  }
  if (!st) st = encode_span(tok, utf8 + from, n - from, &es, sink);
  encode_state_free(&es);
  return st;
}

vkp_status vkp_clip_encode(const vkp_clip_tokenizer *tok, const char *utf8, int32_t *ids, int cap, int *n_ids) {
  if (!tok || !utf8 || !n_ids || cap < 0 || (cap > 0 && !ids)) return VKP_ERR_INVALID;
  clip_tok_sink sink = {ids, cap, 0};
  VKP_TRY(encode_all(tok, utf8, &sink));
  *n_ids = sink.n > INT_MAX ? INT_MAX : (int)sink.n;
  return VKP_OK;
}

vkp_status vkp_clip_tokenize(const vkp_clip_tokenizer *tok, const char *utf8, int max_len, vkp_clip_pad pad,
                             int32_t *ids, int32_t *attention_mask, int *n_tokens) {
  if (!tok || !utf8 || !ids || (pad != VKP_CLIP_PAD_OPENAI && pad != VKP_CLIP_PAD_HF)) return VKP_ERR_INVALID;
  if (max_len <= 0) max_len = tok->max_length;
  if (max_len < 2) return VKP_ERR_INVALID;
  clip_tok_sink sink = {ids + 1, max_len - 2, 0};
  VKP_TRY(encode_all(tok, utf8, &sink));
  int n = (int)(sink.n < max_len - 2 ? sink.n : max_len - 2) + 2;   // truncation keeps the end token
  ids[0] = tok->bos_id;
  ids[n - 1] = tok->eos_id;
  for (int i = n; i < max_len; i++) ids[i] = pad == VKP_CLIP_PAD_OPENAI ? 0 : tok->pad_id;
  if (attention_mask)
    for (int i = 0; i < max_len; i++) attention_mask[i] = i < n;
  if (n_tokens) *n_tokens = n;
  return VKP_OK;
}

void vkp_clip_tokenizer_get_info(const vkp_clip_tokenizer *tok, vkp_clip_tokenizer_info *info) {
  memset(info, 0, sizeof *info);
  if (!tok) return;
  info->vocab_size = tok->vocab_size;
  info->n_merges = tok->n_merges;
  info->bos_id = tok->bos_id;
  info->eos_id = tok->eos_id;
  info->pad_id = tok->pad_id;
  info->unk_id = tok->unk_id;
  info->max_length = tok->max_length;
  info->normalizer = tok->norm;
  info->default_pad = tok->default_pad;
  info->source = tok->source;
}

void vkp_clip_tokenizer_set_default_pad(vkp_clip_tokenizer *tok, vkp_clip_pad pad) {
  if (tok && (pad == VKP_CLIP_PAD_OPENAI || pad == VKP_CLIP_PAD_HF)) tok->default_pad = pad;
}
