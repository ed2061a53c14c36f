// cmd_tokenize.c — `vkpeft tokenize [--model DIR|FILE] [--pad openai|hf] [--max-length N] TEXT...`:
// CLIP token ids of each text, one JSON line per text.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_clip_tokenizer.h"
#include "vkp_strbuf.h"
#include "vkpeft_cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vkpeft tokenize [--model DIR|FILE] [--pad openai|hf] [--max-length N] TEXT...\n"
          "\n"
          "Prints, per TEXT, {\"text\": ..., \"input_ids\": [...], \"attention_mask\": [...]} on one line:\n"
          "CLIP's start token, the BPE ids, the end token (kept at position N-1 when the text is too\n"
          "long), then padding up to N ids.\n"
          "\n"
          "  --model DIR|FILE  a folder with vocab.json + merges.txt (or a tokenizer/ subfolder, as in\n"
          "                    diffusers pipelines): Hugging Face CLIPTokenizerFast; or OpenAI's\n"
          "                    bpe_simple_vocab_16e6.txt.gz: clip.tokenize. Default: the copy of\n"
          "                    OpenAI's file built into vkpeft.\n"
          "  --pad openai|hf   pad with 0 (openai) or with the pad token, 49407 (hf). Default: hf for a\n"
          "                    model folder, openai for OpenAI's file.\n"
          "  --max-length N    ids per text (at least 2). Default: the tokenizer's, 77 for CLIP.\n"
          "\n"
          "Put -- before a TEXT that starts with '-'.\n");
}

int cmd_tokenize(int argc, char **argv) {
  const char *model = NULL, *pad_name = NULL;
  int max_len = 0, first_text = argc;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return VKP_EXIT_OK;
    }
    if (!strcmp(a, "--")) {
      first_text = i + 1;
      break;
    }
    if (a[0] != '-' || !a[1]) {
      first_text = i;
      break;
    }
    if (i + 1 >= argc || (strcmp(a, "--model") && strcmp(a, "--pad") && strcmp(a, "--max-length"))) {
      fprintf(stderr, "vkpeft tokenize: %s '%s'\n", i + 1 >= argc ? "missing value for" : "unknown option", a);
      usage(stderr);
      return VKP_EXIT_BAD_INPUT;
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--model")) {
      model = v;
    } else if (!strcmp(a, "--pad")) {
      if (strcmp(v, "openai") && strcmp(v, "hf"))
        return vkp_cli_fail("tokenize", VKP_ERR_INVALID, "--pad must be 'openai' or 'hf'");
      pad_name = v;
    } else {
      char *end;
      long n = strtol(v, &end, 10);
      if (end == v || *end || n < 2 || n > (1 << 20))
        return vkp_cli_fail("tokenize", VKP_ERR_INVALID, "--max-length must be an integer from 2 to 1048576");
      max_len = (int)n;
    }
  }
  if (first_text >= argc) {
    fprintf(stderr, "vkpeft tokenize: no TEXT given\n");
    usage(stderr);
    return VKP_EXIT_BAD_INPUT;
  }

  vkp_error err = {0};
  vkp_clip_tokenizer *tok = NULL;
  if (vkp_clip_tokenizer_load(model, &tok, &err)) return vkp_cli_fail("tokenize", err.status, err.msg);
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  vkp_clip_pad pad = pad_name ? (!strcmp(pad_name, "hf") ? VKP_CLIP_PAD_HF : VKP_CLIP_PAD_OPENAI) : info.default_pad;
  if (max_len == 0) max_len = info.max_length;

  int status = VKP_EXIT_OK;
  int32_t *ids = malloc((size_t)max_len * sizeof *ids), *mask = malloc((size_t)max_len * sizeof *mask);
  vkp_strbuf line = {0};
  if (!ids || !mask) status = vkp_cli_fail("tokenize", VKP_ERR_OOM, "out of memory");
  for (int t = first_text; t < argc && status == VKP_EXIT_OK; t++) {
    int n_tokens, n_text;
    vkp_status st = vkp_clip_tokenize(tok, argv[t], max_len, pad, ids, mask, &n_tokens);
    if (!st) st = vkp_clip_encode(tok, argv[t], NULL, 0, &n_text);
    if (st) {
      status = vkp_cli_fail("tokenize", st, "cannot tokenize (out of memory)");
      break;
    }
    if (n_text + 2 > max_len)
      fprintf(stderr, "vkpeft tokenize: text %d has %d tokens with start and end; truncated to %d\n",
              t - first_text + 1, n_text + 2, max_len);
    line.len = 0;
    vkp_strbuf_puts(&line, "{\"text\": ");
    vkp_strbuf_json_string(&line, argv[t]);
    vkp_strbuf_puts(&line, ", \"input_ids\": [");
    for (int i = 0; i < max_len; i++) vkp_strbuf_printf(&line, i ? ", %d" : "%d", ids[i]);
    vkp_strbuf_puts(&line, "], \"attention_mask\": [");
    for (int i = 0; i < max_len; i++) vkp_strbuf_printf(&line, i ? ", %d" : "%d", mask[i]);
    vkp_strbuf_puts(&line, "]}\n");
    if (line.oom) status = vkp_cli_fail("tokenize", VKP_ERR_OOM, "out of memory");
    else fwrite(line.p, 1, line.len, stdout);
  }
  free(line.p);
  free(ids);
  free(mask);
  vkp_clip_tokenizer_free(tok);
  if (status == VKP_EXIT_OK && fflush(stdout) != 0) status = vkp_cli_fail("tokenize", VKP_ERR_IO, "cannot write output");
  return status;
}
