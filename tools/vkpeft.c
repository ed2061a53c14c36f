// vkpeft.c — the command-line program: dispatches to subcommands.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_status.h"
#include "vkpeft_cli.h"

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} command;

static const command commands[] = {
    {"devices", cmd_devices, "list Vulkan devices and the features vkpeft uses"},
    {"info", cmd_info, "describe a checkpoint, its adapters, or a safetensors file"},
    {"train", cmd_train, "fine-tune an image classifier (ViT) with PEFT methods"},
    {"eval", cmd_eval, "evaluate a model (+ adapters) on a data set (CLIP: zero-shot, retrieval, probe)"},
    {"embed", cmd_embed, "CLIP image / text embeddings to a safetensors file"},
    {"predict", cmd_predict, "classify image files"},
    {"export", cmd_export, "merge adapters into a standalone HF checkpoint"},
    {"merge", cmd_merge, "same as export --merge"},
    {"generate", cmd_generate, "text-to-image on a diffusers pipeline folder (+ LoRAs), PNG with settings"},
    {"forward", cmd_forward, "run a checkpoint (+ adapters) on tensors from a safetensors file"},
    {"compare", cmd_compare, "fine-tune with every PEFT method under one budget; table + plot"},
    {"bench", cmd_bench, "benchmarks (matmul, dispatch overhead, transformer block)"},
    {"tokenize", cmd_tokenize, "CLIP token ids of texts (OpenAI or Hugging Face tokenizer), as JSON lines"},
};

int vkp_cli_fail(const char *cmd, int status, const char *message) {
  fprintf(stderr, "vkpeft %s: %s\n", cmd, message);
  switch (status) {
    case VKP_ERR_INVALID:
    case VKP_ERR_IO:
    case VKP_ERR_FORMAT:
    case VKP_ERR_SHAPE:
    case VKP_ERR_UNSUPPORTED:
    case VKP_ERR_NOT_FOUND: return VKP_EXIT_BAD_INPUT;
    default: return VKP_EXIT_FAIL;
  }
}

char *vkp_cli_escape(const char *s, bool multiline) {
  size_t n = strlen(s);
  char *out = malloc(6 * n + 1), *o = out;
  if (!out) return NULL;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p < 0x20 && !(multiline && (*p == '\n' || *p == '\t'))) || *p == 0x7f) {
      o += sprintf(o, "\\x%02x", *p);
    } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {   // a C1 control in UTF-8
      o += sprintf(o, "\\u%04x", p[1]);
      p++;
    } else if (*p == '\\') {
      *o++ = '\\';
      *o++ = '\\';
    } else {
      *o++ = (char)*p;
    }
  }
  *o = '\0';
  return out;
}

static void usage(FILE *f) {
  fprintf(f, "usage: vkpeft <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\nenvironment: VKPEFT_DEVICE (index or name substring), VKPEFT_VALIDATION=1\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? VKP_EXIT_BAD_INPUT : VKP_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "vkpeft: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return VKP_EXIT_BAD_INPUT;
}
