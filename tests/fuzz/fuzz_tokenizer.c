// fuzz_tokenizer.c — libFuzzer target: the CLIP tokenizer (vlm/clip_tok_*.c). The input is parts
// separated by "\n=====\n": part 0 is a text to tokenize; with one more part, that part is an
// OpenAI merges file (bpe_simple_vocab_16e6.txt, plain or gzip); with more, they are an HF folder's
// vocab.json, merges.txt and optionally tokenizer_config.json and special_tokens_map.json. Every
// input's text is tokenized with the built-in tokenizer (normalisation, HTML unescaping, the split
// regex, BPE), and with the loaded one when its files load. Ids must lie in the vocabulary, the
// start and end tokens must frame the text, the length must be what was asked for, and encoding
// without them must give the same ids and count whatever room it is given.
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "vkp_clip_tokenizer.h"

static vkp_clip_tokenizer *builtin;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  vkp_error err;
  if (vkp_clip_tokenizer_load(NULL, &builtin, &err)) abort();
  return 0;
}

static void check(const vkp_clip_tokenizer *tok, const char *text, size_t seed) {
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  int32_t ids[80], mask[80];
  int n = 0, max_len = seed % 3 == 0 ? 77 : seed % 3 == 1 ? 8 : 2;
  vkp_clip_pad pad = seed / 3 % 2 ? VKP_CLIP_PAD_HF : VKP_CLIP_PAD_OPENAI;
  if (vkp_clip_tokenize(tok, text, max_len, pad, ids, mask, &n) != VKP_OK) return;   // only VKP_ERR_OOM can fail here
  if (n < 2 || n > max_len || ids[0] != info.bos_id || ids[n - 1] != info.eos_id) abort();
  for (int i = 0; i < max_len; i++)
    if (ids[i] < 0 || ids[i] >= info.vocab_size || mask[i] != (i < n)) abort();
  // The ids without start/end tokens, with room for 4 of them or (every other input) none: the
  // count does not depend on the room given (the tokenized ids had max_len - 2), and the ids are
  // the tokenized ones. (One call: each encoding normalises and splits the whole text again.)
  int total = 0;
  int32_t few[4];
  bool room = seed / 6 % 2;
  if (vkp_clip_encode(tok, text, room ? few : NULL, room ? 4 : 0, &total) != VKP_OK) return;
  if (n != (total + 2 <= max_len ? total + 2 : max_len)) abort();
  for (int i = 0; room && i < total && i < 4 && i < n - 2; i++)
    if (few[i] != ids[1 + i]) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_part parts[5];
  int np = fuzz_split(data, size, "\n=====\n", parts, 5);
  char *text = fuzz_strdup(parts[0]);
  check(builtin, text, size);
  vkp_clip_tokenizer *tok = NULL;
  vkp_error err;
  char path[600];
  if (np == 2) {   // an OpenAI merges file
    fuzz_dir_file("bpe.txt", parts[1].p, parts[1].n, path, sizeof path);
    if (vkp_clip_tokenizer_load(path, &tok, &err) == VKP_OK) check(tok, text, size / 6);
  } else if (np > 2) {   // an HF folder
    static const char *const files[] = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"};
    for (int f = 0; f < 4; f++) fuzz_dir_file(files[f], f + 1 < np ? parts[f + 1].p : NULL, f + 1 < np ? parts[f + 1].n : (size_t)-1, path, sizeof path);
    if (vkp_clip_tokenizer_load(fuzz_dir(), &tok, &err) == VKP_OK) check(tok, text, size / 6);
  }
  vkp_clip_tokenizer_free(tok);
  free(text);
  return 0;
}
