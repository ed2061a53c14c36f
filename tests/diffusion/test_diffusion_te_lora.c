// test_diffusion_te_lora.c — text-encoder adapters in diffusion training (peft_text_encoder,
// train.text_encoder_lr, train.unet_lr) on the tiny pipeline of train_fixture.h:
//   (a) gradients: the text-encoder LoRA gradient the training graph accumulates equals a central
//       finite difference of the device's own loss (the same micro-batch replayed with one lora_B
//       entry moved by ±h); learning rates per group: one AdamW step moves every trained lora_B
//       entry by its group's lr (|Δ| = lr·|g|/(|g| + eps) at step 1); with text_encoder_lr = 0 the
//       text encoder's adapter stays bit for bit and the UNet's update equals a UNet-only run's;
//   (b) the saved kohya / diffusers / PEFT files carry the text encoder's part under the names
//       diffusers, A1111 and ComfyUI read, with the trained values, and give identical latents in
//       `vkpeft generate` — the image of the run's own sample grid — different from the UNet part alone;
//   (c) a run stopped and resumed ends with bit-identical UNet and text-encoder adapters (and EMA).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vkp_cli_run.h"
#include "vkp_config.h"
#include "vkp_diffusion_train.h"
#include "vkp_rng.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"
#include "train_internal.h"   // the trainer's state: micro-batch replay, parameters, gradients
#include "train_fixture.h"

#define TE_LORA "peft_text_encoder=[{\"method\":\"lora\",\"r\":2,\"lora_alpha\":2,\"target_modules\":[\"q_proj\",\"v_proj\",\"fc1\"]}]"

// The configs of the trainers made (a new run's trainer refers to its config): freed by free_trainer.
static cJSON *cfgs[8];

static vkp_diffusion_trainer *trainer(const char *tag, const char *const *extra, int n) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/%s", tmp_root, tag);
  cJSON *cfg = config(dir, extra, n);
  vkp_diffusion_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_diffusion_trainer_new(vkp_test_ctx(), cfg, NULL, true, &t, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < 8; i++)
    if (!cfgs[i]) {
      cfgs[i] = cfg;
      break;
    }
  return t;
}

static void free_trainer(vkp_diffusion_trainer *t) {
  const cJSON *cfg = t->cfg;
  vkp_diffusion_trainer_free(t);
  for (int i = 0; i < 8; i++)
    if (cfgs[i] == cfg) cJSON_Delete(cfgs[i]), cfgs[i] = NULL;
}

static float *read_param(vkp_dtrainer *t, int i) {
  vkp_model *m;
  vkp_param *p = vkp_dtrain_param_at(t, i, &m);
  float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
  if (vkp_param_read_f32(m, p, v)) fail_msg("reading %s", p->name);
  return v;
}

// The first micro-batch again (loader position, micro counter, forced noise and timesteps), no update.
static double replay(vkp_dtrainer *t, const float *noise, const int *ts) {
  vkp_error err = {0};
  if (vkp_loader_seek(t->loader, 0, 0, &err)) fail_msg("%s", err.msg);
  t->micro = 0;
  vkp_diffusion_trainer_force(t, noise, ts);
  float lr;
  double l, m;
  if (vkp_dtrain_micro_step(t, false, &lr, &l, &m, &err)) fail_msg("%s", err.msg);
  return l;
}

// ---- (a) gradients and learning rates -------------------------------------------------------------------

static float noise[2 * 4 * 8 * 8];
static const int TS[2] = {150, 620};

static void test_te_gradient_fd(void **state) {
  (void)state;
  vkp_rng r = vkp_rng_new(1234);
  vkp_rng_randn(&r, noise, sizeof noise / sizeof *noise);
  // lora_B starts at zero, so make it non-zero (and the A-gradients too) with a few steps first.
  const char *extra[] = {TE_LORA, "train.max_steps=10", "train.lr=0.01", "train.max_grad_norm=0"};
  vkp_dtrainer *t = trainer("fd", extra, 4);
  vkp_error err = {0};
  double loss;
  for (int s = 0; s < 3; s++)
    if (vkp_diffusion_trainer_step(t, &loss, &err)) fail_msg("%s", err.msg);
  int nu = t->o.nt, ne = vkp_dtrain_te_param_count(t);
  assert_true(ne >= 12);   // 2 layers x (q, v, fc1) x (A, B)
  double base = replay(t, noise, TS);
  int checked = 0;
  double worst = 0;
  for (int pass = 0; pass < 2; pass++)   // 3 lora_B, then 3 lora_A parameters
  for (int i = 0, here = 0; i < ne && here < 3; i++) {
    vkp_model *m;
    vkp_param *p = vkp_dtrain_param_at(t, nu + i, &m);
    if (!strstr(p->name, pass ? "lora_A" : "lora_B")) continue;
    here++;
    size_t n = (size_t)vkp_param_numel(p);
    float *g = malloc(n * sizeof *g), *v = read_param(t, nu + i);
    // The gradient of exactly this micro-batch: replayed once into zeroed buffers.
    if (vkp_optimizer_zero_grad(t->o.opt) || vkp_dtrain_te_zero_grad(t)) fail_msg("zero_grad");
    double l0 = replay(t, noise, TS);
    if (l0 != base) fail_msg("replaying the micro-batch gives loss %.9g, first %.9g", l0, base);
    if (vkp_dtrain_te_read_grad(t, i, g)) fail_msg("reading the gradient of %s", p->name);
    size_t k = 0;   // the entry with the largest gradient
    for (size_t j = 1; j < n; j++)
      if (fabsf(g[j]) > fabsf(g[k])) k = j;
    const float h = 5e-2f, keep = v[k];
    v[k] = keep + h;
    vkp_param_write_f32(m, p, v);
    double lp = replay(t, noise, TS);
    v[k] = keep - h;
    vkp_param_write_f32(m, p, v);
    double lm = replay(t, noise, TS);
    v[k] = keep;
    vkp_param_write_f32(m, p, v);
    double fd = (lp - lm) / (2.0 * h), an = g[k], rel = fabs(fd - an) / fmax(fabs(an), 1e-6);
    printf("  %-60s [%zu]: graph %.6e, central difference %.6e (rel. diff %.2e)\n", p->name, k, an, fd, rel);
    // f32 losses (|L| < 1, rounding ~1e-7 / 2h ~ 1e-6 absolute) and O(h²) truncation: 3% + 2e-6.
    if (fabs(fd - an) > 0.03 * fabs(an) + 2e-6) fail_msg("%s[%zu]: gradient %.6e, finite difference %.6e", p->name, k, an, fd);
    if (fabs(an) < 2e-5) fail_msg("%s: gradient %.3g too small to check", p->name, an);
    worst = fmax(worst, rel);
    free(g), free(v);
    checked++;
  }
  assert_int_equal(checked, 6);
  printf("  6 text-encoder LoRA gradients match central differences (worst rel. diff %.2e)\n", worst);
  free_trainer(t);
}

// The gradient accumulated for trained parameter i (vkp_dtrain_param_at's order).
static float *read_grad(vkp_dtrainer *t, int i) {
  vkp_model *m;
  vkp_param *p = vkp_dtrain_param_at(t, i, &m);
  float *g = malloc((size_t)vkp_param_numel(p) * sizeof *g);
  vkp_status st = i < t->o.nt ? vkp_buffer_read(vkp_optimizer_grad(t->o.opt, i), 0, g, (uint64_t)vkp_param_numel(p) * sizeof *g)
                              : vkp_dtrain_te_read_grad(t, i - t->o.nt, g);
  if (st) fail_msg("reading the gradient of %s", p->name);
  return g;
}

// One optimizer step (the first of a fresh run in test (1)); the trained parameters before and after it and (when
// grads is not NULL) the gradients it applied, from a replay of its micro-batch (arrays over
// vkp_dtrain_param_count).
static void step_once(vkp_dtrainer *t, float ***before, float ***after, float ***grads) {
  int n = vkp_dtrain_param_count(t);
  *before = calloc((size_t)n, sizeof **before), *after = calloc((size_t)n, sizeof **after);
  for (int i = 0; i < n; i++) (*before)[i] = read_param(t, i);
  if (grads) {
    replay(t, noise, TS);
    *grads = calloc((size_t)n, sizeof **grads);
    for (int i = 0; i < n; i++) (*grads)[i] = read_grad(t, i);
    vkp_error err = {0};
    if (vkp_optimizer_zero_grad(t->o.opt) || vkp_dtrain_te_zero_grad(t) || vkp_loader_seek(t->loader, 0, 0, &err)) fail_msg("zero_grad");
    t->micro = 0;
  }
  vkp_diffusion_trainer_force(t, noise, TS);
  double loss;
  vkp_error err = {0};
  if (vkp_diffusion_trainer_step(t, &loss, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < n; i++) (*after)[i] = read_param(t, i);
}

static void free_params(float **v, int n) {
  for (int i = 0; v && i < n; i++) free(v[i]);
  free(v);
}

static void test_lr_groups(void **state) {
  (void)state;
  // (1) unet_lr 0.003, text_encoder_lr 0.001, no clipping, no weight decay: AdamW's first update is
  // p − lr · g / (|g| + eps) (m̂ = g, √v̂ = |g|) with each group's lr and the replayed gradient g.
  const char *ex1[] = {TE_LORA, "train.unet_lr=0.003", "train.text_encoder_lr=0.001", "train.max_steps=5", "train.max_grad_norm=0"};
  vkp_dtrainer *t = trainer("lr_groups", ex1, 5);
  float **b, **a, **g;
  step_once(t, &b, &a, &g);
  int n = vkp_dtrain_param_count(t), nu = t->o.nt;
  int moved[2] = {0, 0};
  for (int i = 0; i < n; i++) {
    vkp_model *m;
    vkp_param *p = vkp_dtrain_param_at(t, i, &m);
    double lr = i < nu ? 0.003 : 0.001;
    for (int64_t j = 0; j < vkp_param_numel(p); j++) {
      double want = b[i][j] - lr * g[i][j] / (fabs(g[i][j]) + 1e-8);
      if (fabs(a[i][j] - want) > 1e-4 * lr + 1e-6 * fabs(b[i][j]))
        fail_msg("%s[%lld]: %.8g after the first step, want %.8g (lr %g, gradient %.4g)", p->name, (long long)j, a[i][j], want, lr, g[i][j]);
      moved[i >= nu] += a[i][j] != b[i][j];
    }
  }
  printf("  lr groups: first AdamW step = p - lr g/(|g| + eps) for %d UNet entries (unet_lr 0.003), %d text-encoder entries (0.001)\n",
         moved[0], moved[1]);
  if (moved[0] < 100 || moved[1] < 100) fail_msg("too few entries moved (%d, %d)", moved[0], moved[1]);
  free_params(b, n), free_params(a, n), free_params(g, n);
  free_trainer(t);
  // (2) text_encoder_lr 0: the text encoder's adapter is untouched bit for bit over two steps, and the
  // UNet's update is a UNet-only run's (its states, with lora_B still 0, are the frozen encoder's).
  const char *ex2[] = {TE_LORA, "train.text_encoder_lr=0", "train.max_steps=5"};
  const char *ex3[] = {"train.max_steps=5"};
  vkp_dtrainer *x = trainer("te_lr0", ex2, 3), *y = trainer("unet_only", ex3, 1);
  float **xb, **xa, **yb, **ya;
  for (int s = 0; s < 2; s++) {
    step_once(x, &xb, &xa, NULL);
    step_once(y, &yb, &ya, NULL);
    int nx = vkp_dtrain_param_count(x), ny = vkp_dtrain_param_count(y);
    assert_int_equal(x->o.nt, ny);
    for (int i = x->o.nt; i < nx; i++)
      if (memcmp(xb[i], xa[i], (size_t)vkp_param_numel(vkp_dtrain_param_at(x, i, &(vkp_model *){0})) * sizeof(float)))
        fail_msg("step %d: text_encoder_lr 0 changed %s", s + 1, vkp_dtrain_param_at(x, i, &(vkp_model *){0})->name);
    for (int i = 0; i < ny; i++) {
      vkp_param *p = vkp_dtrain_param_at(y, i, &(vkp_model *){0});
      if (memcmp(xa[i], ya[i], (size_t)vkp_param_numel(p) * sizeof(float))) fail_msg("step %d: %s differs from the UNet-only run's", s + 1, p->name);
    }
    free_params(xb, nx), free_params(xa, nx), free_params(yb, ny), free_params(ya, ny);
  }
  printf("  text_encoder_lr 0: text-encoder adapter unchanged and UNet adapter = UNet-only run's, bit for bit, 2 steps\n");
  free_trainer(x), free_trainer(y);
}

// ---- (b) saved files -----------------------------------------------------------------------------------------

static void expect_tensor(const char *file, const char *name, const float *want, size_t n) {
  vkp_safetensors *f = NULL;
  vkp_error err = {0};
  if (vkp_safetensors_open(file, &f, &err)) fail_msg("%s", err.msg);
  float *v = malloc(n * sizeof *v);
  if (vkp_safetensors_read_f32(f, name, v, n, &err)) fail_msg("%s: %s", file, err.msg);
  if (want && memcmp(v, want, n * sizeof *v)) fail_msg("%s: %s is not the trained value", file, name);
  free(v);
  vkp_safetensors_free(f);
}

// A copy of a kohya file with only its UNet part.
static void unet_part_only(const char *src, const char *dst) {
  vkp_safetensors *f = NULL;
  vkp_safetensors_writer *w = NULL;
  vkp_error err = {0};
  if (vkp_safetensors_open(src, &f, &err) || vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < vkp_safetensors_count(f); i++) {
    const vkp_st_tensor *x = vkp_safetensors_at(f, i);
    if (!strncmp(x->name, "lora_unet_", 10) && vkp_safetensors_writer_add(w, x->name, x->dtype, x->ndim, x->shape, x->data, &err)) fail_msg("%s", err.msg);
  }
  if (vkp_safetensors_writer_save(w, dst, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w), vkp_safetensors_free(f);
}

static void test_saved_formats(void **state) {
  (void)state;
  char dir[400], peft[600], kohya[600], diff[600], unet_only[600], p[700];
  snprintf(dir, sizeof dir, "%s/formats", tmp_root);
  const char *extra[] = {TE_LORA, "train.max_steps=4", "train.lr=0.02", "train.text_encoder_lr=0.05", "data.trigger=sks",
                         "samples.every=4", "samples.prompts=[\"sks, red, circle\"]", "samples.seed=7", "samples.steps=3"};
  vkp_dtrainer *t = trainer("formats", extra, 9);
  vkp_diffusion_train_summary s;
  vkp_error err = {0};
  if (vkp_diffusion_trainer_run(t, &s, &err)) fail_msg("%s", err.msg);
  snprintf(peft, sizeof peft, "%s/adapter", dir);
  snprintf(kohya, sizeof kohya, "%s/lora.safetensors", dir);
  snprintf(diff, sizeof diff, "%s/pytorch_lora_weights.safetensors", dir);
  // The text encoder's part under each format's names, with the trained values.
  int nu = t->o.nt, ne = vkp_dtrain_te_param_count(t), found = 0;
  for (int i = nu; i < nu + ne; i++) {
    vkp_model *m;
    vkp_param *pa = vkp_dtrain_param_at(t, i, &m);
    if (!strstr(pa->name, "layers.0.self_attn.q_proj")) continue;
    float *v = read_param(t, i);
    bool up = strstr(pa->name, "lora_B") != NULL;
    size_t n = (size_t)vkp_param_numel(pa);
    expect_tensor(kohya, up ? "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"
                            : "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", v, n);
    expect_tensor(diff, up ? "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"
                           : "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", v, n);
    snprintf(p, sizeof p, "%s/text_encoder/adapter_model.safetensors", peft);
    expect_tensor(p, up ? "base_model.model.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"
                        : "base_model.model.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", v, n);
    free(v);
    found++;
  }
  assert_int_equal(found, 2);
  expect_tensor(kohya, "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha", NULL, 1);
  vkp_safetensors *f = NULL;
  if (vkp_safetensors_open(kohya, &f, &err)) fail_msg("%s", err.msg);
  const char *want[][2] = {{"ss_text_encoder_lr", "0.05"}, {"ss_unet_lr", "0.02"}, {"ss_network_train_unet_only", "False"}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    const char *v = vkp_safetensors_metadata(f, want[i][0]);
    if (!v || strcmp(v, want[i][1])) fail_msg("%s: %s = %s, want %s", kohya, want[i][0], v ? v : "(none)", want[i][1]);
  }
  vkp_safetensors_free(f);
  if (vkp_safetensors_open(diff, &f, &err)) fail_msg("%s", err.msg);
  const char *meta = vkp_safetensors_metadata(f, "lora_adapter_metadata");
  if (!meta || !strstr(meta, "\"text_encoder.lora_alpha\"") || !strstr(meta, "\"unet.lora_alpha\""))
    fail_msg("%s: lora_adapter_metadata %s lacks a component's alpha", diff, meta ? meta : "(none)");
  vkp_safetensors_free(f);
  free_trainer(t);
  // generate: every file gives the same latents; without the text encoder's part they differ.
  size_t n1, n2, n3, n4;
  float *a = generate(peft, "te_peft", &n1), *b = generate(kohya, "te_kohya", &n2), *c = generate(diff, "te_diffusers", &n3);
  snprintf(unet_only, sizeof unet_only, "%s/unet_only.safetensors", tmp_root);
  unet_part_only(kohya, unet_only);
  float *u = generate(unet_only, "te_unet_only", &n4);
  assert_int_equal(n1, n2), assert_int_equal(n1, n3), assert_int_equal(n1, n4);
  if (memcmp(a, b, n1 * sizeof *a)) fail_msg("the kohya file generates other latents than the PEFT folder");
  if (memcmp(a, c, n1 * sizeof *a)) fail_msg("the diffusers file generates other latents than the PEFT folder");
  double d = 0;
  for (size_t i = 0; i < n1; i++) d = fmax(d, fabs(a[i] - u[i]));
  if (d < 1e-4) fail_msg("the text encoder's part changes nothing (max diff %g)", d);
  printf("  PEFT folder (+ text_encoder/), kohya, diffusers: identical latents; max |full - UNet part only| %.4g\n", d);
  free(a), free(b), free(c), free(u);
  // The run's own sample grid (the in-training model, adapters on) holds generate's image with the folder.
  char args[3000], png[600], grid[600];
  snprintf(png, sizeof png, "%s/te_sample.png", tmp_root);
  snprintf(args, sizeof args, "generate --model %s --prompt \"sks, red, circle\" --sampler ddim --steps 3 --cfg 5 --seed 7 "
           "--width 16 --height 16 --lora %s --output %s", pipe_dir, peft, png);
  vkp_cli_expect(args, 0, NULL);
  snprintf(grid, sizeof grid, "%s/samples/step-000004.png", dir);
  vkp_image *img = read_png(png), *g = read_png(grid);
  if (!in_grid(g, img)) fail_msg("the adapters-on row of %s is not `vkpeft generate --lora %s`'s image", grid, peft);
  printf("  the sample grid's trained row = generate with the saved folder\n");
  vkp_image_free(img), vkp_image_free(g);
}

// Whether some tensor of file a differs from b's of that name.
static bool tensors_differ(const char *a, const char *b) {
  vkp_safetensors *fa = NULL, *fb = NULL;
  vkp_error err = {0};
  if (vkp_safetensors_open(a, &fa, &err) || vkp_safetensors_open(b, &fb, &err)) fail_msg("%s", err.msg);
  bool differ = false;
  for (size_t i = 0; i < vkp_safetensors_count(fa) && !differ; i++) {
    const vkp_st_tensor *ta = vkp_safetensors_at(fa, i), *tb = vkp_safetensors_find(fb, ta->name);
    differ = !tb || ta->nbytes != tb->nbytes || memcmp(ta->data, tb->data, ta->nbytes);
  }
  vkp_safetensors_free(fa), vkp_safetensors_free(fb);
  return differ;
}

// ---- (c) resume --------------------------------------------------------------------------------------------------

static void test_resume(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char full[400], part[400], p[700], q[700];
  snprintf(full, sizeof full, "%s/resume_full", tmp_root);
  snprintf(part, sizeof part, "%s/resume_part", tmp_root);
  const char *sets[] = {TE_LORA, "train.text_encoder_lr=0.002", "train.schedule=linear", "train.warmup_steps=1", "train.ema_decay=0.8",
                        "data.caption_dropout=0.3", "model.clip_skip=2", "train.grad_accum=2", "train.max_steps=4", "train.stop_after=2"};
  vkp_error err = {0};
  vkp_diffusion_train_summary s;
  cJSON *cfg = config(full, sets, 9);
  if (vkp_diffusion_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(cfg);
  cfg = config(part, sets, 10);
  if (vkp_diffusion_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("%s", err.msg);
  assert_int_equal(s.steps, 2);
  cJSON_Delete(cfg);
  resume_run(ctx, part, &s);
  assert_int_equal(s.steps, 4);
  const char *files[] = {"adapter/adapter_model.safetensors", "adapter/text_encoder/adapter_model.safetensors",
                         "adapter_ema/adapter_model.safetensors", "adapter_ema/text_encoder/adapter_model.safetensors", "lora.safetensors"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(p, sizeof p, "%s/%s", full, files[i]);
    snprintf(q, sizeof q, "%s/%s", part, files[i]);
    assert_same_tensors(p, q);
  }
  // The resumed steps trained the text encoder: its adapter moved from the step-2 checkpoint's.
  snprintf(p, sizeof p, "%s/checkpoints/step-00000002/adapter/text_encoder/adapter_model.safetensors", part);
  snprintf(q, sizeof q, "%s/adapter/text_encoder/adapter_model.safetensors", part);
  if (!tensors_differ(p, q)) fail_msg("%s: the text encoder's adapter did not change in steps 3 and 4", q);
  vkp_metrics_log *la = metrics_of(full), *lb = metrics_of(part);
  const vkp_metric_series *a = vkp_metrics_find(la, "loss_weighted"), *b = vkp_metrics_find(lb, "loss_weighted");
  const vkp_metric_series *ta = vkp_metrics_find(la, "lr_text_encoder");
  if (!a || !b || !ta) fail_msg("no loss_weighted / lr_text_encoder series");
  assert_int_equal(a->n, 4), assert_int_equal(b->n, 4);
  for (int i = 0; i < 4; i++)
    if (a->value[i] != b->value[i]) fail_msg("step %d: loss %.9g uninterrupted, %.9g resumed", i + 1, a->value[i], b->value[i]);
  // linear with 1 warm-up step over 4: lr 0, 2/3, 1/3, 0 of 0.002
  const double want[4] = {0, 0.002 * 3 / 3.0, 0.002 * 2 / 3.0, 0.002 * 1 / 3.0};
  for (int i = 0; i < 4; i++)
    if (fabs(ta->value[i] - want[i]) > 1e-9) fail_msg("step %d: lr_text_encoder %.9g, want %.9g", i + 1, ta->value[i], want[i]);
  vkp_metrics_log_free(la), vkp_metrics_log_free(lb);
  printf("  2 + 2 resumed steps (accumulation, EMA, clip skip 2, caption dropout) = 4 steps, bit for bit, UNet and text encoder\n");
}

// ---- bad input -------------------------------------------------------------------------------------------------

static void test_bad_input(void **state) {
  (void)state;
  char args[3000], base[2000];
  snprintf(base, sizeof base, "train --quiet --set task=diffusion --set model.pretrained=%s --set data.resolution=16 --set data.train=%s "
           "--set data.cache_dir=%s --set train.max_steps=1 --set output_dir=%s/bad_te_run", pipe_dir, pairs_dir, cache_dir, tmp_root);
  snprintf(args, sizeof args, "%s --set 'peft_text_encoder=[{\"method\":\"lora\",\"target_modules\":[\"to_q\"]}]'", base);
  vkp_cli_expect(args, 2, "peft_text_encoder[0]");   // a UNet module name: matches nothing in the text tower
  snprintf(args, sizeof args, "%s --set train.text_encoder_lr=-3", base);
  vkp_cli_expect(args, 2, "train.text_encoder_lr");
  snprintf(args, sizeof args, "%s --set 'peft_text_encoder=[{\"method\":\"lora\"},{\"method\":\"lora\"}]'", base);
  vkp_cli_expect(args, 2, "peft_text_encoder");       // more entries than peft
  char p[600];
  snprintf(p, sizeof p, "%s/bad_te_run/config.json", tmp_root);
  if (!access(p, F_OK)) fail_msg("%s written by a run that failed its checks", p);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_te_gradient_fd), cmocka_unit_test(test_lr_groups),
                                     cmocka_unit_test(test_saved_formats), cmocka_unit_test(test_resume),
                                     cmocka_unit_test(test_bad_input)};
  return cmocka_run_group_tests(tests, make_fixture, remove_fixture);
}
