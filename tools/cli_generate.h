// cli_generate.h — the pieces of `vkpeft generate` (tools/cmd_generate.c): the prompt's
// `<lora:NAME:SCALE>` tags (cli_gen_prompt.c), the A1111 `parameters` text and output file names
// (cli_gen_output.c), and the labelled comparison grid (cli_gen_grid.c).
#ifndef VKP_CLI_GENERATE_H
#define VKP_CLI_GENERATE_H

#include <stdbool.h>
#include <stddef.h>

#include "vkp_png.h"
#include "vkp_status.h"

#define VKP_GEN_MAX_LORAS 16

typedef struct vkp_gen_lora {
  char path[1024];   // the file (or PEFT folder)
  char name[256];    // how `parameters` names it: the prompt's NAME, else the file's stem
  float scale;
  bool from_prompt;  // a <lora:...> tag (already in the prompt text) rather than --lora
} vkp_gen_lora;

// ---- options (cli_gen_args.c) ----
#define VKP_GEN_MAX_GRID 16
#define VKP_GEN_MAX_BATCH 64
#define VKP_GEN_MAX_PROMPTS 4096       // lines of a --prompts file
#define VKP_GEN_MAX_PROMPT_BYTES 2048
#define VKP_GEN_PROMPTS_PER_BATCH 8    // --prompts: images of up to this many prompts share a UNet batch
#define VKP_GEN_MAX_PROMPTS_GRID 256   // --prompts: the grid is written when there are at most this many images

enum { VKP_GEN_GRID_NONE, VKP_GEN_GRID_SEEDS, VKP_GEN_GRID_LORA_SCALE, VKP_GEN_GRID_CFG };

typedef struct vkp_gen_opts {
  const char *model, *prompt, *prompts_file, *neg, *output, *tin, *tout, *sampler_name, *spacing_s, *init_image, *lora_dir, *pred_s;
  vkp_gen_lora loras[VKP_GEN_MAX_LORAS];
  int n_lora;
  int steps, width, height, clip_skip, karras, batch;
  double cfg, strength;   // strength < 0: not given
  unsigned long long seed;
  bool merge;
  int grid;
  double grid_values[VKP_GEN_MAX_GRID];
  int n_grid;
} vkp_gen_opts;

// Parses the flags into *o; returns -1 to go on, else the exit status (usage or a one-line error).
int vkp_gen_parse_args(int argc, char **argv, vkp_gen_opts *o);
// Prints "vkpeft generate: " + fmt (with v for its %s) and returns the bad-input exit status.
int vkp_gen_bad(const char *fmt, const char *v);

// ---- prompts files (cli_gen_prompts.c) ----
// Reads --prompts FILE: one prompt per line, leading/trailing blanks trimmed, blank lines and lines
// starting with '#' skipped. *prompts: n malloc'd strings (vkp_gen_prompts_free). Errors (one line
// naming the file and line): unreadable, NUL bytes, no prompt, more than VKP_GEN_MAX_PROMPTS lines,
// a line of VKP_GEN_MAX_PROMPT_BYTES or more, a `<lora:...>` tag (VKP_ERR_UNSUPPORTED: --lora).
vkp_status vkp_gen_prompts_read(const char *path, char ***prompts, int *n, vkp_error *err);
void vkp_gen_prompts_free(char **prompts, int n);

// ---- prompt tags (cli_gen_prompt.c) ----
// Finds A1111's extra-network tags `<lora:NAME>` / `<lora:NAME:SCALE>` in `prompt`, resolves NAME
// to DIR/NAME.safetensors (lora_dir), appends them to loras[*n] (at most VKP_GEN_MAX_LORAS) and
// writes the prompt without the tags to *clean (malloc'd; A1111 removes the tag text and keeps the
// rest as it is). Errors (one line naming the tag or the file): a tag without --lora-dir, a
// missing file, a scale that is not a number, `<lora:NAME:TE:UNET>` (separate multipliers).
vkp_status vkp_gen_prompt_loras(const char *prompt, const char *lora_dir, vkp_gen_lora *loras, int *n, char **clean,
                                vkp_error *err);

// The settings of one image, for A1111's `parameters` text.
typedef struct vkp_gen_params {
  const char *prompt;          // as given (with its <lora:...> tags)
  const char *negative;
  int steps;
  const char *sampler;         // A1111's name ("DPM++ 2M Karras")
  double cfg;
  unsigned long long seed;
  int width, height;
  const char *model_name, *model_hash;   // hash: NULL or "" when not computed
  double strength;             // < 0: not img2img
  int clip_skip;
  int batch_size, batch_pos;   // batch_size > 1: written
  const vkp_gen_lora *loras;
  int n_loras;
  const char *const *lora_hashes;   // (n_loras), entries may be NULL
  const char *extra;           // appended before Version (e.g. the grid's), may be NULL
} vkp_gen_params;

// A1111's infotext: the prompt (plus a `<lora:NAME:SCALE>` tag for every LoRA not from the prompt),
// "Negative prompt: ..." when there is one, and the settings line ("Steps: 20, Sampler: Euler a,
// CFG scale: 7.5, Seed: 1, Size: 512x512, Model hash: ..., Model: ..., Denoising strength: ...,
// Clip skip: 2, Lora hashes: \"name: hash\", Version: vkpeft"). Returns a malloc'd string.
char *vkp_gen_params_text(const vkp_gen_params *g);

// A1111's short hash of a LoRA file: the first 12 hex digits of the SHA-256 of a .safetensors file
// after its header (kohya's "addnet" hash, sd-scripts' addnet_hash_safetensors), or of the whole
// file otherwise. out: 13 bytes. Errors: VKP_ERR_IO, VKP_ERR_FORMAT (bad header) naming the file.
vkp_status vkp_gen_lora_hash(const char *path, char out[13], vkp_error *err);
// A1111's "Model hash" of a checkpoint file: the first 10 hex digits of its SHA-256. out: 11 bytes.
vkp_status vkp_gen_model_hash(const char *path, char out[11], vkp_error *err);

// Output names. --output FILE.png: that file, or FILE-k.png for image k of several;
// --output DIR: DIR/NNNNN-SEED.png with NNNNN counting on from the files already there (A1111's
// numbering: one more than the largest leading number of a file in DIR), grids DIR/NNNNN-grid.png.
typedef struct vkp_gen_out {
  char base[1024];   // FILE.png without .png, or DIR
  bool dir;
  int next;          // DIR: the next number
} vkp_gen_out;
// Creates DIR (mkdir -p) in directory mode. Errors: VKP_ERR_IO naming it.
vkp_status vkp_gen_out_open(const char *output, vkp_gen_out *o, vkp_error *err);
// The path of image k of n with seed `seed` (grid: the grid's path).
void vkp_gen_out_path(vkp_gen_out *o, int k, int n, unsigned long long seed, bool grid, char *path, size_t cap);

// One PNG of n images (same size, RGB) in rows of `cols` (0: about square), `labels[i]` written
// under image i with the embedded font and `title` above (small images are scaled up so the labels
// fit). *out: new image.
vkp_status vkp_gen_grid(const vkp_image *images, const char *const *labels, int n, int cols, const char *title,
                        vkp_image **out, vkp_error *err);

#endif
