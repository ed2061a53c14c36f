// cmd_generate.c — `vkpeft generate`: text-to-image on a diffusers pipeline folder
// (diffusion/vkp_pipeline.h), LoRAs applied at generation time, PNGs with A1111's `parameters`
// text chunk; `--tensors-in` / `--tensors-out` for parity checks without a text encoder.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vkp_device.h"
#include "vkp_pipeline.h"
#include "vkp_png.h"
#include "vkp_safetensors.h"
#include "vkpeft_cli.h"

#define MAX_LORAS 16

static int usage(void) {
  fprintf(stderr,
          "usage: vkpeft generate --model PIPELINE_DIR [--prompt TEXT] [--negative-prompt TEXT]\n"
          "         [--lora FILE[:SCALE]]... [--merge] [--sampler ddim|euler|euler_a|heun|dpmpp_2m]\n"
          "         [--schedule karras] [--timestep-spacing leading|linspace|trailing] [--steps N] [--cfg S]\n"
          "         [--seed N] [--width W --height H] [--clip-skip N] --output FILE.png\n"
          "       vkpeft generate --model PIPELINE_DIR --tensors-in F.safetensors [--tensors-out F.safetensors]\n"
          "         [--output FILE.png] [sampler options, --lora ...]\n"
          "  --tensors-in reads sample/initial_latents (already scaled by the initial noise sigma), sample/cond\n"
          "  and sample/uncond (zeros when absent) instead of prompt and seed; --tensors-out writes\n"
          "  final_latents and decoded (the VAE decode of the final latents without 1/scaling_factor). PNGs carry the settings in a `parameters` text chunk (A1111).\n");
  return VKP_EXIT_BAD_INPUT;
}

// ---- helpers --------------------------------------------------------------------------------------

static vkp_status read_tensor(vkp_safetensors *sf, const char *file, const char *key, float **out, const vkp_st_tensor **tp,
                              vkp_error *err) {
  const vkp_st_tensor *t = vkp_safetensors_find(sf, key);
  if (!t) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no tensor '%s'", file, key);
  size_t n = vkp_st_tensor_numel(t);
  *out = malloc((n ? n : 1) * sizeof(float));
  if (!*out) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (tp) *tp = t;
  return vkp_safetensors_read_f32(sf, key, *out, n, err);
}

static const char *base_name(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  static char buf[512];
  snprintf(buf, sizeof buf, "%.*s", (int)n, path);
  const char *s = strrchr(buf, '/');
  return s ? s + 1 : buf;
}

// The stem of a LoRA file name (A1111 writes `<lora:NAME:SCALE>` into the prompt of `parameters`).
static void lora_stem(const char *path, char *out, size_t cap) {
  snprintf(out, cap, "%s", base_name(path));
  char *dot = strrchr(out, '.');
  if (dot && dot != out) *dot = 0;
}

static void progress_cb(void *user, int i, int n) {
  const struct timespec *t0 = user;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double el = (double)(now.tv_sec - t0->tv_sec) + 1e-9 * (double)(now.tv_nsec - t0->tv_nsec);
  double rate = el > 0 ? i / el : 0;
  fprintf(stderr, "\rsampling %d/%d  %.2f it/s  ETA %.0fs   ", i, n, rate, rate > 0 ? (n - i) / rate : 0.0);
  if (i == n) fprintf(stderr, "\n");
}

int cmd_generate(int argc, char **argv) {
  const char *model = NULL, *prompt = NULL, *neg = "", *output = NULL, *tin = NULL, *tout = NULL;
  const char *sampler_name = "euler_a", *spacing_s = NULL;
  char *lora_path[MAX_LORAS];
  float lora_scale[MAX_LORAS];
  int n_lora = 0, steps = 20, width = 0, height = 0, clip_skip = 1, karras = VKP_SAMPLER_FROM_CONFIG;
  double cfg = 7.5;
  unsigned long long seed = 0;
  bool merge = false, sampler_given = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    if (!strcmp(a, "--model") && has) model = argv[++i];
    else if (!strcmp(a, "--prompt") && has) prompt = argv[++i];
    else if (!strcmp(a, "--negative-prompt") && has) neg = argv[++i];
    else if (!strcmp(a, "--output") && has) output = argv[++i];
    else if (!strcmp(a, "--tensors-in") && has) tin = argv[++i];
    else if (!strcmp(a, "--tensors-out") && has) tout = argv[++i];
    else if (!strcmp(a, "--sampler") && has) sampler_name = argv[++i], sampler_given = true;
    else if (!strcmp(a, "--schedule") && has) {
      const char *v = argv[++i];
      if (!strcmp(v, "karras")) karras = 1;
      else if (!strcmp(v, "default")) karras = 0;
      else return fprintf(stderr, "vkpeft generate: --schedule %s: expected karras or default\n", v), VKP_EXIT_BAD_INPUT;
    } else if (!strcmp(a, "--timestep-spacing") && has) spacing_s = argv[++i];
    else if (!strcmp(a, "--steps") && has) steps = atoi(argv[++i]);
    else if (!strcmp(a, "--cfg") && has) cfg = atof(argv[++i]);
    else if (!strcmp(a, "--seed") && has) seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--width") && has) width = atoi(argv[++i]);
    else if (!strcmp(a, "--height") && has) height = atoi(argv[++i]);
    else if (!strcmp(a, "--clip-skip") && has) clip_skip = atoi(argv[++i]);
    else if (!strcmp(a, "--merge")) merge = true;
    else if (!strcmp(a, "--lora") && has) {
      if (n_lora == MAX_LORAS) return fprintf(stderr, "vkpeft generate: at most %d LoRAs\n", MAX_LORAS), VKP_EXIT_BAD_INPUT;
      char *v = argv[++i], *colon = strrchr(v, ':');
      lora_scale[n_lora] = 1.0f;
      if (colon) {
        char *end;
        double s = strtod(colon + 1, &end);
        if (end != colon + 1 && !*end) {
          lora_scale[n_lora] = (float)s;
          *colon = 0;
        }
      }
      lora_path[n_lora++] = v;
    } else return usage();
  }
  if (!model || (!output && !tout) || (!tin && !prompt)) return usage();
  if (steps < 1) return vkp_cli_fail("generate", VKP_ERR_INVALID, "--steps must be >= 1");
  vkp_error err = {0};
  vkp_sampler_kind kind;
  int name_karras;
  if (vkp_sampler_parse_name(sampler_name, &kind, &name_karras, &err)) return vkp_cli_fail("generate", err.status, err.msg);
  if (name_karras == 1) karras = 1;
  int spacing = VKP_SAMPLER_FROM_CONFIG;
  if (spacing_s) {
    if (!strcmp(spacing_s, "leading")) spacing = VKP_SPACING_LEADING;
    else if (!strcmp(spacing_s, "trailing")) spacing = VKP_SPACING_TRAILING;
    else if (!strcmp(spacing_s, "linspace")) spacing = VKP_SPACING_LINSPACE;
    else return vkp_cli_fail("generate", VKP_ERR_INVALID, "--timestep-spacing: expected leading, linspace or trailing");
  }
  (void)sampler_given;

  vkp_status st;
  vkp_ctx *ctx = NULL;
  vkp_pipeline *p = NULL;
  vkp_safetensors *sf = NULL;
  vkp_sampler *smp = NULL;
  float *latents = NULL, *cond = NULL, *uncond = NULL, *decoded = NULL;
  uint8_t *rgb = NULL;
  vkp_safetensors_writer *w = NULL;
  vkp_pipeline_opts po = {.width = width, .height = height, .clip_skip = clip_skip,
                          .text_encoder = tin ? VKP_PIPELINE_TEXT_NONE : VKP_PIPELINE_TEXT_REQUIRED};
  const vkp_st_tensor *lt = NULL, *ct = NULL;
  if (tin) {
    if ((st = vkp_safetensors_open(tin, &sf, &err))) goto done;
    if ((st = read_tensor(sf, tin, "sample/initial_latents", &latents, &lt, &err))) goto done;
    if ((st = read_tensor(sf, tin, "sample/cond", &cond, &ct, &err))) goto done;
    if (lt->ndim != 4 || lt->shape[0] != 1) {
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: sample/initial_latents: expected shape (1, C, h, w)", tin);
      goto done;
    }
    if (ct->ndim != 3 || ct->shape[0] != 1) {
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: sample/cond: expected shape (1, tokens, dim)", tin);
      goto done;
    }
    po.latent_height = (int)lt->shape[2];
    po.latent_width = (int)lt->shape[3];
    po.text_tokens = (int)ct->shape[1];
    if (vkp_safetensors_find(sf, "sample/uncond")) {
      const vkp_st_tensor *ut;
      if ((st = read_tensor(sf, tin, "sample/uncond", &uncond, &ut, &err))) goto done;
      if (vkp_st_tensor_numel(ut) != vkp_st_tensor_numel(ct)) {
        st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: sample/uncond: shape differs from sample/cond", tin);
        goto done;
      }
    }
  }
  if ((st = vkp_ctx_new(NULL, &ctx, &err))) goto done;
  if ((st = vkp_pipeline_load(ctx, model, &po, &p, &err))) goto done;
  int lc, lh, lw, T, D, W, H;
  vkp_pipeline_latent_shape(p, &lc, &lh, &lw);
  vkp_pipeline_text_shape(p, &T, &D);
  vkp_pipeline_image_size(p, &W, &H);
  size_t n = (size_t)lc * lh * lw;
  if (tin) {
    if (vkp_st_tensor_numel(lt) != n) {
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: sample/initial_latents: %zu values, the UNet takes %d channels", tin,
                         vkp_st_tensor_numel(lt), lc);
      goto done;
    }
    if (ct->shape[2] != D) {
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: sample/cond: dim %lld, the UNet's cross_attention_dim is %d", tin,
                         (long long)ct->shape[2], D);
      goto done;
    }
  } else {
    cond = malloc((size_t)T * D * sizeof(float));
    uncond = malloc((size_t)T * D * sizeof(float));
    latents = malloc(n * sizeof(float));
    if (!cond || !uncond || !latents) {
      st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
      goto done;
    }
    if ((st = vkp_pipeline_encode_prompt(p, prompt, cond, &err))) goto done;
    if ((st = vkp_pipeline_encode_prompt(p, neg, uncond, &err))) goto done;
  }
  for (int k = 0; k < n_lora; k++)
    if ((st = vkp_pipeline_add_lora(p, lora_path[k], lora_scale[k], merge, &err))) goto done;
  vkp_sampler_opts so = vkp_sampler_opts_default(kind, steps);
  so.karras = karras;
  so.spacing = spacing;
  if ((st = vkp_sampler_new(vkp_pipeline_scheduler_config(p), &so, n, &smp, &err))) goto done;
  vkp_rng rng = vkp_rng_new(seed);
  if (!tin) vkp_sampler_init_latents(smp, &rng, latents);
  else {   // diffusers' prepare_latents with given latents: times init_noise_sigma
    float ins = (float)vkp_sampler_init_noise_sigma(smp);
    for (size_t i = 0; i < n; i++) latents[i] *= ins;
  }
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if ((st = vkp_pipeline_sample(p, smp, latents, cond, uncond, (float)cfg, &rng, progress_cb, &t0, &err))) goto done;
  decoded = malloc((size_t)3 * W * H * sizeof(float));
  rgb = malloc((size_t)3 * W * H);
  if (!decoded || !rgb) {
    st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
    goto done;
  }
  if ((st = vkp_pipeline_decode(p, latents, false, decoded, rgb, &err))) goto done;
  if (tout) {
    // `decoded` as the fixtures define it: the VAE decode of the final latents as they are.
    if ((st = vkp_pipeline_decode(p, latents, true, decoded, NULL, &err))) goto done;
    if ((st = vkp_safetensors_writer_new(&w, &err))) goto done;
    if ((st = vkp_safetensors_writer_add_f32(w, "final_latents", VKP_DTYPE_F32, 4, (int64_t[]){1, lc, lh, lw}, latents, &err)))
      goto done;
    if ((st = vkp_safetensors_writer_add_f32(w, "decoded", VKP_DTYPE_F32, 4, (int64_t[]){1, 3, H, W}, decoded, &err)))
      goto done;
    if ((st = vkp_safetensors_writer_save(w, tout, &err))) goto done;
  }
  if (output) {
    // A1111's `parameters`: prompt (with <lora:NAME:SCALE> tags), negative prompt, settings line.
    size_t cap = 4096 + (prompt ? strlen(prompt) : 0) + strlen(neg);
    char *par = malloc(cap), lname[256];
    if (!par) {
      st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
      goto done;
    }
    size_t o = 0;
    o += (size_t)snprintf(par + o, cap - o, "%s", tin ? "" : prompt);
    for (int k = 0; k < n_lora && o < cap; k++) {
      lora_stem(lora_path[k], lname, sizeof lname);
      o += (size_t)snprintf(par + o, cap - o, "%s<lora:%s:%g>", o ? " " : "", lname, lora_scale[k]);
    }
    if (o < cap && neg[0]) o += (size_t)snprintf(par + o, cap - o, "\nNegative prompt: %s", neg);
    bool use_karras = vkp_sampler_get_schedule(smp)->karras;
    if (o < cap)
      o += (size_t)snprintf(par + o, cap - o, "\nSteps: %d, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %dx%d, Model: %s",
                            steps, vkp_sampler_a1111_name(kind, use_karras), cfg, seed, W, H, base_name(model));
    if (o < cap && clip_skip > 1) o += (size_t)snprintf(par + o, cap - o, ", Clip skip: %d", clip_skip);
    if (o < cap && n_lora) {
      o += (size_t)snprintf(par + o, cap - o, ", Lora hashes: \"");
      for (int k = 0; k < n_lora && o < cap; k++) {
        lora_stem(lora_path[k], lname, sizeof lname);
        o += (size_t)snprintf(par + o, cap - o, "%s%s", k ? ", " : "", lname);
      }
      if (o < cap) o += (size_t)snprintf(par + o, cap - o, "\"");
    }
    if (o < cap) snprintf(par + o, cap - o, ", Version: vkpeft");
    vkp_image img = {.width = W, .height = H, .channels = 3, .stride = 0, .data = rgb};
    vkp_png_text txt = {"parameters", par};
    st = vkp_png_write(output, &img, &txt, 1, &err);
    free(par);
    if (st) goto done;
    printf("wrote %s (%dx%d)\n", output, W, H);
  }
done:
  vkp_safetensors_writer_free(w);
  free(latents), free(cond), free(uncond), free(decoded), free(rgb);
  vkp_sampler_free(smp);
  vkp_pipeline_free(p);
  vkp_ctx_free(ctx);
  vkp_safetensors_free(sf);
  return st ? vkp_cli_fail("generate", st, err.msg) : VKP_EXIT_OK;
}
