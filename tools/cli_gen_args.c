// cli_gen_args.c — the command line of `vkpeft generate` (cli_generate.h): flags, their checks
// (one line naming the flag, exit 2), usage.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli_generate.h"
#include "vkp_sampler.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr,
          "usage: vkpeft generate --model PIPELINE_DIR --prompt TEXT [--negative-prompt TEXT]\n"
          "         [--lora FILE[:SCALE]]... [--lora-dir DIR] [--merge]\n"
          "         [--sampler ddim|euler|euler_a|heun|dpmpp_2m] [--schedule karras|default]\n"
          "         [--timestep-spacing leading|linspace|trailing] [--prediction-type epsilon|v_prediction]\n"
          "         [--steps N] [--cfg S] [--seed N] [--width W --height H] [--clip-skip N] [--batch N]\n"
          "         [--init-image PNG [--strength S]] [--grid seeds|lora-scale|cfg --grid-values A,B,...]\n"
          "         --output DIR|FILE.png\n"
          "       vkpeft generate --model PIPELINE_DIR --tensors-in F.safetensors [--tensors-out F.safetensors]\n"
          "         [--output FILE.png] [sampler options, --lora ...]\n"
          "       vkpeft generate --model PIPELINE_DIR --prompts FILE --output DIR [options as above]\n"
          "  --batch N: N images in one UNet batch with seeds SEED, SEED+1, ...; --output DIR writes\n"
          "  DIR/NNNNN-SEED.png, --output FILE.png writes FILE.png (FILE-0.png, FILE-1.png, ... for several).\n"
          "  --prompts FILE: one prompt per line (blank and # lines skipped), each with seeds SEED .. SEED+N-1;\n"
          "  writes DIR/NNNNN-SEED.png per image and DIR/NNNNN-grid.png (every image, captioned).\n"
          "  <lora:NAME:SCALE> in the prompt loads DIR/NAME.safetensors from --lora-dir.\n"
          "  --tensors-in reads sample/initial_latents (already scaled by the initial noise sigma), sample/cond\n"
          "  and sample/uncond (zeros when absent) instead of prompt and seed; --tensors-out writes\n"
          "  final_latents and decoded (the VAE decode of the final latents without 1/scaling_factor).\n"
          "  PNGs carry the settings in a `parameters` text chunk (A1111); `vkpeft info IMAGE.png` prints it.\n");
  return VKP_EXIT_BAD_INPUT;
}

// ---- options ------------------------------------------------------------------------------------



int vkp_gen_bad(const char *fmt, const char *v) {
  char m[512];
  snprintf(m, sizeof m, fmt, v);
  return vkp_cli_fail("generate", VKP_ERR_INVALID, m);
}

static bool parse_int(const char *s, long lo, long hi, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (end == s || *end || v < lo || v > hi) return false;
  *out = (int)v;
  return true;
}

static bool parse_double(const char *s, double *out) {
  char *end;
  *out = strtod(s, &end);
  return end != s && !*end && isfinite(*out);
}

// A --lora value FILE[:SCALE] (a colon followed by a number is the scale).
static int add_lora_arg(vkp_gen_opts *o, char *v) {
  if (o->n_lora == VKP_GEN_MAX_LORAS) return vkp_gen_bad("at most %s LoRAs", "16");
  vkp_gen_lora *l = &o->loras[o->n_lora++];
  memset(l, 0, sizeof *l);
  l->scale = 1.0f;
  char *colon = strrchr(v, ':');
  double s;
  if (colon && parse_double(colon + 1, &s)) {
    l->scale = (float)s;
    *colon = 0;
  }
  snprintf(l->path, sizeof l->path, "%s", v);
  // The name in `parameters`: the file's stem.
  size_t n = strlen(v);
  while (n > 1 && v[n - 1] == '/') n--;
  const char *b = v + n;
  while (b > v && b[-1] != '/') b--;
  snprintf(l->name, sizeof l->name, "%.*s", (int)(v + n - b), b);
  char *dot = strrchr(l->name, '.');
  if (dot && dot != l->name) *dot = 0;
  return 0;
}

static int parse_grid_values(vkp_gen_opts *o, const char *s) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", s);
  o->n_grid = 0;
  for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (o->n_grid == VKP_GEN_MAX_GRID) return vkp_gen_bad("--grid-values: at most %s values", "16");
    if (!parse_double(t, &o->grid_values[o->n_grid++])) return vkp_gen_bad("--grid-values: '%s' is not a number", t);
  }
  return o->n_grid ? 0 : vkp_gen_bad("--grid-values '%s': no values", s);
}

int vkp_gen_parse_args(int argc, char **argv, vkp_gen_opts *o) {
  *o = (vkp_gen_opts){.neg = "", .sampler_name = "euler_a", .steps = 20, .clip_skip = 1, .karras = VKP_SAMPLER_FROM_CONFIG,
                  .batch = 1, .cfg = 7.5, .strength = -1};
  const char *grid_s = NULL, *grid_values_s = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int r = 0;
#define ARG(name) (!strcmp(a, name) && v && ++i)
    if (ARG("--model")) o->model = v;
    else if (ARG("--prompt")) o->prompt = v;
    else if (ARG("--prompts")) o->prompts_file = v;
    else if (ARG("--negative-prompt")) o->neg = v;
    else if (ARG("--output")) o->output = v;
    else if (ARG("--tensors-in")) o->tin = v;
    else if (ARG("--tensors-out")) o->tout = v;
    else if (ARG("--sampler")) o->sampler_name = v;
    else if (ARG("--timestep-spacing")) o->spacing_s = v;
    else if (ARG("--prediction-type")) o->pred_s = v;
    else if (ARG("--init-image")) o->init_image = v;
    else if (ARG("--lora-dir")) o->lora_dir = v;
    else if (ARG("--grid")) grid_s = v;
    else if (ARG("--grid-values")) grid_values_s = v;
    else if (ARG("--lora")) r = add_lora_arg(o, argv[i]);
    else if (ARG("--schedule")) {
      if (!strcmp(v, "karras")) o->karras = 1;
      else if (!strcmp(v, "default")) o->karras = 0;
      else r = vkp_gen_bad("--schedule %s: expected karras or default", v);
    } else if (ARG("--steps")) r = parse_int(v, 1, 1000, &o->steps) ? 0 : vkp_gen_bad("--steps %s: expected 1 to 1000", v);
    else if (ARG("--batch")) r = parse_int(v, 1, VKP_GEN_MAX_BATCH, &o->batch) ? 0 : vkp_gen_bad("--batch %s: expected 1 to 64", v);
    else if (ARG("--width")) r = parse_int(v, 8, 16384, &o->width) && o->width % 8 == 0 ? 0 : vkp_gen_bad("--width %s: expected a multiple of 8 (8 to 16384)", v);
    else if (ARG("--height")) r = parse_int(v, 8, 16384, &o->height) && o->height % 8 == 0 ? 0 : vkp_gen_bad("--height %s: expected a multiple of 8 (8 to 16384)", v);
    else if (ARG("--clip-skip")) r = parse_int(v, 1, 64, &o->clip_skip) ? 0 : vkp_gen_bad("--clip-skip %s: expected 1 to 64", v);
    else if (ARG("--cfg")) r = parse_double(v, &o->cfg) ? 0 : vkp_gen_bad("--cfg %s: not a number", v);
    else if (ARG("--strength"))
      r = parse_double(v, &o->strength) && o->strength >= 0 && o->strength <= 1 ? 0 : vkp_gen_bad("--strength %s: expected a number in [0, 1]", v);
    else if (ARG("--seed")) {
      char *end;
      o->seed = strtoull(v, &end, 10);
      if (end == v || *end || v[0] == '-') r = vkp_gen_bad("--seed %s: expected a non-negative integer", v);
    } else if (!strcmp(a, "--merge")) o->merge = true;
    else return usage();
#undef ARG
    if (r) return r;
  }
  if (o->prompts_file) {
    if (o->prompt) return vkp_gen_bad("--prompts %s: not with --prompt (put the prompt in the file)", o->prompts_file);
    if (o->tin || o->tout) return vkp_gen_bad("--prompts %s: not with --tensors-in / --tensors-out", o->prompts_file);
    if (grid_s) return vkp_gen_bad("--prompts %s: not with --grid (the prompts make the grid)", o->prompts_file);
    if (o->init_image) return vkp_gen_bad("--prompts %s: not with --init-image", o->prompts_file);
    size_t n = o->output ? strlen(o->output) : 0;
    if (!o->output || (n > 4 && !strcasecmp(o->output + n - 4, ".png")))
      return vkp_gen_bad("--prompts %s needs --output DIR (a folder: one PNG per image and a grid)", o->prompts_file);
  }
  if (!o->model || (!o->output && !o->tout) || (!o->tin && !o->prompt && !o->prompts_file)) return usage();
  if (grid_s) {
    if (!strcmp(grid_s, "seeds")) o->grid = VKP_GEN_GRID_SEEDS;
    else if (!strcmp(grid_s, "lora-scale")) o->grid = VKP_GEN_GRID_LORA_SCALE;
    else if (!strcmp(grid_s, "cfg")) o->grid = VKP_GEN_GRID_CFG;
    else return vkp_gen_bad("--grid %s: expected seeds, lora-scale or cfg", grid_s);
    if (!grid_values_s) return vkp_gen_bad("--grid %s needs --grid-values A,B,...", grid_s);
    int r = parse_grid_values(o, grid_values_s);
    if (r) return r;
    for (int k = 0; o->grid == VKP_GEN_GRID_SEEDS && k < o->n_grid; k++)
      if (o->grid_values[k] < 0 || o->grid_values[k] != floor(o->grid_values[k]))
        return vkp_gen_bad("--grid-values: seeds must be non-negative integers (%s)", grid_values_s);
    if (o->batch > 1) return vkp_gen_bad("--grid %s: one image per value (no --batch)", grid_s);
    if (o->tin) return vkp_gen_bad("--grid %s: not with --tensors-in", grid_s);
    if (!o->output) return vkp_gen_bad("--grid %s needs --output", grid_s);
  } else if (grid_values_s) return vkp_gen_bad("--grid-values %s without --grid", grid_values_s);
  if (o->strength >= 0 && !o->init_image) return vkp_gen_bad("--strength %s needs --init-image", "");
  if (o->init_image && o->tin) return vkp_gen_bad("--init-image %s: not with --tensors-in", o->init_image);
  if (o->tin && o->batch > 1) return vkp_gen_bad("--batch: not with --tensors-in %s", o->tin);
  if (o->tout && (o->batch > 1 || o->grid)) return vkp_gen_bad("--tensors-out %s: one image only (no --batch or --grid)", o->tout);
  if (o->init_image && o->strength < 0) o->strength = 0.75;   // A1111's default denoising strength
  return -1;
}
