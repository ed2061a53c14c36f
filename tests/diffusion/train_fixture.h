// train_fixture.h — shared by tests/diffusion/test_diffusion_train*.c: a tiny pipeline put
// together in the test's temp dir (the fixture UNet with cross_attention_dim 32 and VAE of
// ../shared/fixtures/unet, the fixture CLIP's text tower of hidden size 32 as text encoder, a DDPM
// scaled_linear scheduler), a kohya caption folder of 16x16 RGBA shapes, the base training config
// over them, and readers for a run's files. Header-only (static functions): each test file is its
// own binary.
#ifndef VKP_TRAIN_FIXTURE_H
#define VKP_TRAIN_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vkp_cli_run.h"
#include "vkp_config.h"
#include "vkp_diffusion_train.h"
#include "vkp_fileio.h"
#include "vkp_metrics.h"
#include "vkp_png.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

static char tmp_root[256], pipe_dir[320], pairs_dir[320], cache_dir[320];

#define N_IMAGES 6
#define RES 16

static inline void write_text(const char *path, const char *text) {
  vkp_error err = {0};
  const void *chunk = text;
  size_t len = strlen(text);
  if (vkp_file_write_atomic(path, &chunk, &len, 1, &err)) fail_msg("%s", err.msg);
}

static inline void link_to(const char *target, const char *dir, const char *name) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  if (symlink(target, p)) fail_msg("symlink %s", p);
}

// The pipeline folder: symlinks to the fixtures, a DDPM scheduler config, model_index.json.
static inline void write_pipeline(void) {
  vkp_error err = {0};
  char p[600];
  snprintf(p, sizeof p, "%s/scheduler", pipe_dir);
  if (vkp_dir_create(p, &err)) fail_msg("%s", err.msg);
  link_to(vkp_fixture_path("unet/unet"), pipe_dir, "unet");
  link_to(vkp_fixture_path("unet/vae"), pipe_dir, "vae");
  link_to(vkp_fixture_path("clip/model"), pipe_dir, "text_encoder");
  link_to(vkp_fixture_path("clip/model"), pipe_dir, "tokenizer");
  snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", pipe_dir);
  write_text(p, "{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 1000, \"beta_start\": 0.00085,"
                " \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\", \"clip_sample\": false, \"steps_offset\": 1}");
  snprintf(p, sizeof p, "%s/model_index.json", pipe_dir);
  write_text(p, "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
                " \"vae\": [\"diffusers\", \"AutoencoderKL\"], \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],"
                " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], \"scheduler\": [\"diffusers\", \"DDPMScheduler\"]}");
}

static const char *const COLORS[3] = {"red", "green", "blue"};
static const uint8_t RGB[3][3] = {{220, 40, 30}, {40, 190, 60}, {30, 60, 220}};

// Alpha of image i at (x, y): a disc (even i) or a square (odd i), of a size that depends on i.
static inline uint8_t alpha_of(int i, int x, int y) {
  double cx = x + 0.5 - RES / 2.0, cy = y + 0.5 - RES / 2.0, r = 4 + i % 3;
  bool in = i % 2 ? fabs(cx) < r && fabs(cy) < r : cx * cx + cy * cy < r * r;
  return in ? 255 : (uint8_t)(i * 9);
}

// pairs/2_shapes/img_<i>.png + img_<i>.txt ("<colour>, <shape>, flat icon").
static inline void write_pairs(void) {
  vkp_error err = {0};
  char dir[400], path[500];
  snprintf(dir, sizeof dir, "%s/2_shapes", pairs_dir);
  if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < N_IMAGES; i++) {
    vkp_image *img = NULL;
    if (vkp_image_new(RES, RES, 4, &img, &err)) fail_msg("%s", err.msg);
    for (int y = 0; y < RES; y++)
      for (int x = 0; x < RES; x++) {
        uint8_t *px = img->data + (y * RES + x) * 4;
        for (int c = 0; c < 3; c++) px[c] = (uint8_t)(RGB[i % 3][c] + ((x * 3 + y * 5 + c) % 7) * 3);
        px[3] = alpha_of(i, x, y);
      }
    snprintf(path, sizeof path, "%s/img_%d.png", dir, i);
    if (vkp_png_write(path, img, NULL, 0, &err)) fail_msg("%s", err.msg);
    vkp_image_free(img);
    char text[64];
    snprintf(text, sizeof text, "%s, %s, flat icon\n", COLORS[i % 3], i % 2 ? "square" : "circle");
    snprintf(path, sizeof path, "%s/img_%d.txt", dir, i);
    write_text(path, text);
  }
}

static inline cJSON *config(const char *out, const char *const *extra, int n_extra) {
  const char *sets[40] = {"data.resolution=16", "train.batch_size=2", "train.max_steps=30", "train.lr=0.003",
                          "train.weight_decay=0", "train.log_every=1", "train.val_limit=4", "train.eval_batch=4",
                          "data.first_caption=true"};
  int n = 9;
  char o[512], d[512], m[512], c[512];
  snprintf(o, sizeof o, "output_dir=%s", out);
  snprintf(d, sizeof d, "data.train=%s", pairs_dir);
  snprintf(m, sizeof m, "model.pretrained=%s", pipe_dir);
  snprintf(c, sizeof c, "data.cache_dir=%s", cache_dir);
  sets[n++] = o, sets[n++] = d, sets[n++] = m, sets[n++] = c;
  for (int i = 0; i < n_extra; i++) sets[n++] = extra[i];
  cJSON *cfg = NULL;
  vkp_error err = {0};
  if (vkp_diffusion_train_config(NULL, sets, n, &cfg, &err)) fail_msg("config: %s", err.msg);
  return cfg;
}

static inline void out_path(const char *name, char *buf, size_t cap) { snprintf(buf, cap, "%s/%s", tmp_root, name); }


// The run's metrics.jsonl (vkp_metrics_log_free).
static inline vkp_metrics_log *metrics_of(const char *run_dir) {
  char path[600];
  vkp_metrics_log *log = NULL;
  vkp_error err = {0};
  snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
  if (vkp_metrics_read(path, &log, &err)) fail_msg("%s", err.msg);
  return log;
}

static inline void assert_same_tensors(const char *a, const char *b) {
  vkp_safetensors *fa = NULL, *fb = NULL;
  vkp_error err = {0};
  if (vkp_safetensors_open(a, &fa, &err) || vkp_safetensors_open(b, &fb, &err)) fail_msg("%s", err.msg);
  assert_int_equal(vkp_safetensors_count(fa), vkp_safetensors_count(fb));
  for (size_t i = 0; i < vkp_safetensors_count(fa); i++) {
    const vkp_st_tensor *ta = vkp_safetensors_at(fa, i), *tb = vkp_safetensors_find(fb, ta->name);
    if (!tb) fail_msg("%s: no tensor %s", b, ta->name);
    size_t n = vkp_st_tensor_numel(ta);
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (vkp_safetensors_read_f32(fa, ta->name, x, n, &err) || vkp_safetensors_read_f32(fb, ta->name, y, n, &err)) fail_msg("%s", err.msg);
    if (memcmp(x, y, n * sizeof *x)) fail_msg("%s differs between %s and %s", ta->name, a, b);
    free(x), free(y);
  }
  vkp_safetensors_free(fa), vkp_safetensors_free(fb);
}

// Resumes a run that train.stop_after stopped: stop_after is in its config.json, so it is cleared
// there first; then `vkpeft train --resume` as the library runs it.
static inline void resume_run(vkp_ctx *ctx, const char *run_dir, vkp_diffusion_train_summary *s) {
  char p[600];
  vkp_error err = {0};
  snprintf(p, sizeof p, "%s/config.json", run_dir);
  cJSON *saved = NULL;
  if (vkp_config_resolve(vkp_diffusion_train_defaults, p, (const char *const[]){"train.stop_after=0"}, 1, &saved, &err)) fail_msg("%s", err.msg);
  char *text = cJSON_Print(saved);
  write_text(p, text);
  free(text), cJSON_Delete(saved);
  if (vkp_diffusion_train(ctx, NULL, run_dir, true, s, &err)) fail_msg("resume: %s", err.msg);
}

static inline vkp_image *read_png(const char *path) {
  vkp_image *img = NULL;
  vkp_error err = {0};
  if (vkp_png_read(path, &img, NULL, NULL, &err)) fail_msg("%s", err.msg);
  return img;
}

// The group's fixture: a temporary folder with the pipeline, the pairs and a cache folder
// (kept when VKP_KEEP_TMP is set).
static inline int make_fixture(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmp_root, sizeof tmp_root, "%s/vkp_diffusion_train_XXXXXX", base && strlen(base) < 100 ? base : "/tmp");
  if (!mkdtemp(tmp_root)) return -1;
  snprintf(pipe_dir, sizeof pipe_dir, "%s/pipeline", tmp_root);
  snprintf(pairs_dir, sizeof pairs_dir, "%s/pairs", tmp_root);
  snprintf(cache_dir, sizeof cache_dir, "%s/cache", tmp_root);
  write_pipeline();
  write_pairs();
  return 0;
}

static inline int remove_fixture(void **state) {
  if (!getenv("VKP_KEEP_TMP")) vkp_path_remove_all(tmp_root, NULL);
  return vkp_test_teardown(state);
}

// True when img (RGB) appears in grid at some integer nearest-neighbour scale.
static inline bool in_grid(const vkp_image *grid, const vkp_image *img) {
  int gc = grid->channels, W = grid->width, H = grid->height;
  size_t gs = vkp_image_stride(grid), is = vkp_image_stride(img);
  for (int s = 1; s <= 8; s++)
    for (int y0 = 0; y0 + img->height * s <= H; y0++)
      for (int x0 = 0; x0 + img->width * s <= W; x0++) {
        bool ok = true;
        for (int y = 0; ok && y < img->height * s; y++)
          for (int x = 0; ok && x < img->width * s; x++)
            ok = !memcmp(grid->data + (size_t)(y0 + y) * gs + (size_t)(x0 + x) * gc, img->data + (size_t)(y / s) * is + (size_t)(x / s) * 3, 3);
        if (ok) return true;
      }
  return false;
}

// Final latents of `vkpeft generate` with `lora` (NULL: none) into a new array of n floats.
static inline float *generate(const char *lora, const char *tag, size_t *n) {
  char out[600], args[3000];
  snprintf(out, sizeof out, "%s/gen_%s.safetensors", tmp_root, tag);
  snprintf(args, sizeof args, "generate --model %s --prompt \"sks, red, circle, flat icon\" --sampler ddim --steps 3 --cfg 3 --seed 5 "
           "--width 16 --height 16 --tensors-out %s%s%s", pipe_dir, out, lora ? " --lora " : "", lora ? lora : "");
  vkp_cli_expect(args, 0, NULL);
  vkp_safetensors *f = NULL;
  vkp_error err = {0};
  if (vkp_safetensors_open(out, &f, &err)) fail_msg("%s", err.msg);
  const vkp_st_tensor *t = vkp_safetensors_at(f, 0);
  for (size_t i = 0; i < vkp_safetensors_count(f); i++)
    if (strstr(vkp_safetensors_at(f, i)->name, "latents")) t = vkp_safetensors_at(f, i);
  *n = vkp_st_tensor_numel(t);
  float *v = malloc(*n * sizeof *v);
  if (vkp_safetensors_read_f32(f, t->name, v, *n, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_free(f);
  return v;
}

#endif
