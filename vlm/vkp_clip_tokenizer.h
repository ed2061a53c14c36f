// vkp_clip_tokenizer.h — CLIP's byte-level BPE tokenizer, id-for-id with OpenAI's
// `clip.tokenize` (simple_tokenizer.py) and Hugging Face's CLIPTokenizerFast.
//
// Two sources, two flavours:
// - an HF folder (`vocab.json` + `merges.txt`, or the same in its `tokenizer/` subfolder as
//   diffusers pipelines keep it; `tokenizer_config.json` / `special_tokens_map.json` when present)
//   gives the HF flavour: special tokens matched verbatim in the raw text, then NFC, whitespace
//   runs to one space, per-character lowercase;
// - OpenAI's `bpe_simple_vocab_16e6.txt.gz` (path, or NULL for the copy linked into the program)
//   gives the OpenAI flavour: ftfy.fix_text (its deterministic fixes, see docs/CLIP.md), HTML
//   unescaping twice, whitespace collapsed and stripped, str.lower().
// Both then split with CLIP's regex, map bytes to unicode and run BPE with "</w>" word ends.
// For ordinary text the two flavours give the same ids; they differ in padding only, which the
// caller picks per call.
//
// A loaded tokenizer is immutable: one can be used from several threads at once.
#ifndef VKP_CLIP_TOKENIZER_H
#define VKP_CLIP_TOKENIZER_H

#include <stdint.h>

#include "vkp_status.h"

#define VKP_CLIP_CONTEXT_LENGTH 77   // CLIP's text context (default max length)

typedef struct vkp_clip_tokenizer vkp_clip_tokenizer;

typedef enum vkp_clip_pad {
  VKP_CLIP_PAD_OPENAI = 0,   // pad with 0 (clip.tokenize)
  VKP_CLIP_PAD_HF,           // pad with the pad token (49407 "<|endoftext|>" for CLIP)
} vkp_clip_pad;

typedef enum vkp_clip_normalizer {
  VKP_CLIP_NORM_OPENAI = 0,  // simple_tokenizer.py's basic_clean + whitespace_clean + lower
  VKP_CLIP_NORM_HF,          // tokenizer.json's NFC + Replace(\s+, ' ') + Lowercase
} vkp_clip_normalizer;

typedef struct vkp_clip_tokenizer_info {
  int32_t vocab_size;               // largest id + 1 (49408 for CLIP)
  int32_t n_merges;                 // merges in use (48894 for CLIP)
  int32_t bos_id, eos_id, pad_id, unk_id;
  int max_length;                   // model_max_length when the folder gives a usable one, else 77
  vkp_clip_normalizer normalizer;   // from the source: HF for folders, OpenAI for merges files
  vkp_clip_pad default_pad;         // HF for folders, OpenAI for merges files
  const char *source;               // where it was loaded from (owned by the tokenizer)
} vkp_clip_tokenizer_info;

// Loads a tokenizer into *out (free with vkp_clip_tokenizer_free). `path`: a folder holding
// vocab.json + merges.txt (or a `tokenizer/` subfolder that does), a bpe_simple_vocab_16e6.txt.gz
// file (or its uncompressed text), or NULL for the copy linked into the program.
// Errors (message names the file and the problem): VKP_ERR_IO / VKP_ERR_NOT_FOUND (missing or
// unreadable files), VKP_ERR_FORMAT (not gzip, corrupt or truncated gzip, bad JSON, a merges line
// without two symbols, a merge whose parts or result are not in the vocabulary, special tokens
// missing), VKP_ERR_OOM.
vkp_status vkp_clip_tokenizer_load(const char *path, vkp_clip_tokenizer **out, vkp_error *err);
void vkp_clip_tokenizer_free(vkp_clip_tokenizer *tok);   // NULL is a no-op
void vkp_clip_tokenizer_get_info(const vkp_clip_tokenizer *tok, vkp_clip_tokenizer_info *info);
// Sets the padding info.default_pad reports, for a tokenizer made for one model (Stable Diffusion
// 1.x pads with the end token, 2.x with 0). Call before the tokenizer is shared.
void vkp_clip_tokenizer_set_default_pad(vkp_clip_tokenizer *tok, vkp_clip_pad pad);

// BPE ids of `utf8` without start/end tokens: the first `cap` go to ids[] (ids may be NULL when
// cap is 0), *n_ids receives the total count (which may exceed cap). Invalid UTF-8 bytes are read
// as U+FFFD. Errors: VKP_ERR_INVALID (NULL tok/utf8/n_ids, cap < 0), VKP_ERR_OOM.
vkp_status vkp_clip_encode(const vkp_clip_tokenizer *tok, const char *utf8, int32_t *ids, int cap,
                           int *n_ids);

// The model input for `utf8`: start token, BPE ids, end token, padding, max_len ids in all
// (max_len <= 0: the tokenizer's max length, 77 for CLIP). Longer texts are truncated with the
// end token kept at position max_len-1 (clip.tokenize(truncate=True), HF truncation=True).
// Padding per `pad`. attention_mask (may be NULL): 1 on the start token, the text and the end
// token, 0 on padding. *n_tokens (may be NULL) = tokens before padding, so the end token (the
// position CLIP pools at) is at n_tokens-1.
// Errors: VKP_ERR_INVALID (NULL tok/utf8/ids, max_len of 1, unknown pad), VKP_ERR_OOM.
vkp_status vkp_clip_tokenize(const vkp_clip_tokenizer *tok, const char *utf8, int max_len, vkp_clip_pad pad,
                             int32_t *ids, int32_t *attention_mask, int *n_tokens);

#endif
