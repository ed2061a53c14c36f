// test_unet_parity.c — UNet2DConditionModel against diffusers + peft (../shared/fixtures/unet):
// noise_pred at both fixture timesteps; the LoRA (attention projections and ResNet convs) noise_pred,
// MSE loss, every gradient and one AdamW step; f16 weights kept on the device; config errors; and
// a save/load round trip of a randomly initialised model.
// Error measure: max |got - want| / max |want| over the tensor ("relative error" below).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "vkp_fileio.h"
#include "vkp_optim.h"
#include "vkp_parity.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"
#include "vkp_unet.h"

// ---- the fixture's inputs and a forward graph ---------------------------------------------------

typedef struct inputs {
  vkp_safetensors *io;
  float *sample, *timestep, *ctx;   // (2, 4, 16, 16), (2), (2, 8, 32)
} inputs;

static void inputs_open(inputs *in) {
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("unet/io.safetensors"), &in->io, &err)) fail_msg("%s", err.msg);
  size_t n;
  in->sample = vkp_fixture_tensor(in->io, "sample", &n);
  assert_int_equal(n, 2 * 4 * 16 * 16);
  in->timestep = vkp_fixture_tensor(in->io, "timestep", &n);
  assert_int_equal(n, 2);
  in->ctx = vkp_fixture_tensor(in->io, "encoder_hidden_states", &n);
  assert_int_equal(n, 2 * 8 * 32);
}

static void inputs_close(inputs *in) {
  free(in->sample), free(in->timestep), free(in->ctx);
  vkp_safetensors_free(in->io);
}

static vkp_unet *load(const char *dir, bool f32) {
  vkp_unet *u = NULL;
  vkp_error err = {0};
  vkp_unet_load_opts o = {.f32 = f32};
  if (vkp_unet_load(vkp_test_ctx(), dir, &o, &u, &err)) fail_msg("load %s: %s", dir, err.msg);
  return u;
}

typedef struct run {
  vkp_graph *g;
  vkp_tensor *sample, *timestep, *ctx, *pred;
} run;

// Builds the forward graph on the fixture's shapes (not compiled).
static void run_build(vkp_unet *u, run *r) {
  vkp_ctx *ctx = vkp_test_ctx();
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &r->g));
  r->sample = vkp_tensor_input(r->g, "sample", VKP_DTYPE_F32, 4, (int64_t[]){2, 4, 16, 16});
  r->timestep = vkp_tensor_input(r->g, "timestep", VKP_DTYPE_F32, 1, (int64_t[]){2});
  r->ctx = vkp_tensor_input(r->g, "encoder_hidden_states", VKP_DTYPE_F32, 3, (int64_t[]){2, 8, 32});
  if (vkp_unet_forward(u, r->g, r->sample, r->timestep, r->ctx, &r->pred)) fail_msg("forward: %s", vkp_graph_error(r->g));
  vkp_graph_output(r->g, r->pred);
}

static void run_inputs(run *r, const inputs *x) {
  vkp_ctx *ctx = vkp_test_ctx();
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(r->g, r->sample, x->sample, 2 * 4 * 16 * 16 * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(r->g, r->timestep, x->timestep, 2 * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(r->g, r->ctx, x->ctx, 2 * 8 * 32 * 4));
}

// Builds, compiles and runs the forward graph on the fixture's inputs.
static void run_forward(vkp_unet *u, const inputs *x, run *r) {
  run_build(u, r);
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_compile(r->g));
  run_inputs(r, x);
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_run(r->g));
}

// noise_pred of the whole batch, and of each item (item 0 at timestep 10, item 1 at 500).
static void check_noise_pred(const char *label, vkp_graph *g, const vkp_tensor *pred, vkp_safetensors *io, double tol) {
  size_t n;
  float *want = vkp_fixture_tensor(io, "noise_pred", &n), *got = vkp_parity_read(g, pred);
  assert_int_equal(n, (size_t)vkp_tensor_numel(pred));
  char what[128];
  for (int b = 0; b < 2; b++) {
    snprintf(what, sizeof what, "%s noise_pred[%d]", label, b);
    vkp_check_rel(what, got + b * n / 2, want + b * n / 2, n / 2, tol);
  }
  free(want), free(got);
}

// ---- 1. the base model --------------------------------------------------------------------------

static void test_base_forward(void **state) {
  (void)state;
  vkp_unet *u = load(vkp_fixture_path("unet/unet"), false);
  const vkp_unet_config *c = &u->cfg;
  // attention_head_dim 8 with num_attention_heads null: 8 heads (head dims 4 and 8), as diffusers.
  assert_int_equal(c->heads[0], 8);
  assert_int_equal(u->down[0].attentions[0].heads, 8);
  assert_int_equal(vkp_unet_time_embed_dim(c), 128);
  assert_true(c->down_cross[0] && !c->down_cross[1] && !c->up_cross[0] && c->up_cross[1] && c->mid_block);
  inputs x;
  inputs_open(&x);
  assert_true(x.timestep[0] == 10.0f && x.timestep[1] == 500.0f);
  run r;
  run_forward(u, &x, &r);
  printf("[base]\n");
  check_noise_pred("t=10 / t=500", r.g, r.pred, x.io, 1e-4);
  vkp_graph_free(r.g);
  inputs_close(&x);
  vkp_unet_free(u);
}

// ---- 2. LoRA on the attention projections and the ResNet convolutions ---------------------------

// PEFT's in-memory name of an adapter parameter as diffusers' unet.add_adapter names it (no
// "base_model.model." prefix): "<module>.lora_A.default.weight".
static void fixture_name(vkp_model *m, const vkp_param *p, const char *what, char *out, size_t cap) {
  char peft[512];
  vkp_peft_param_peft_name(m, p, peft, sizeof peft);
  const char *pre = "base_model.model.";
  snprintf(out, cap, "%s/%s", what, strncmp(peft, pre, strlen(pre)) ? peft : peft + strlen(pre));
}

static void test_lora(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_unet *u = load(vkp_fixture_path("unet/unet"), false);
  vkp_model *m = u->model;
  // The fixture's LoraConfig(r=4, lora_alpha=8, target_modules=[to_q, to_k, to_v, to_out.0, conv1, conv2]).
  vkp_peft_config pc;
  vkp_peft_config_init(&pc, VKP_PEFT_LORA);
  pc.r = 4;
  pc.alpha = 8;
  const char *targets[] = {"to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"};
  for (int i = 0; i < 6; i++) pc.target_modules[pc.n_target_modules++] = strdup(targets[i]);
  vkp_adapter *a = NULL;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &pc, 0, &a));
  vkp_peft_config_clear(&pc);
  // Its diffusers-layout file: unet.<module>.lora_A.weight -> the adapter parameter <module>.lora_A.weight.
  vkp_safetensors *lw, *io;
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("unet/lora/pytorch_lora_weights.safetensors"), &lw, &err)) fail_msg("%s", err.msg);
  int written = 0;
  for (size_t i = 0; i < vkp_safetensors_count(lw); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(lw, i);
    if (strncmp(t->name, "unet.", 5)) fail_msg("unexpected key %s", t->name);
    vkp_param *p = vkp_model_find_param(m, t->name + 5);
    if (!p || !p->adapter) fail_msg("no adapter parameter for %s", t->name);
    size_t n;
    float *v = vkp_fixture_tensor(lw, t->name, &n);
    assert_int_equal(n, vkp_param_numel(p));
    VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, p, v));
    free(v);
    written++;
  }
  vkp_safetensors_free(lw);
  vkp_param **tp;
  int nt = vkp_model_trainable(m, &tp);
  assert_int_equal(nt, 96);
  assert_int_equal(written, nt);   // every adapter parameter came from the file
  // The file holds the parameters after the AdamW step: recover the ones the outputs were computed with.
  if (vkp_safetensors_open(vkp_fixture_path("unet/lora/io.safetensors"), &io, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < nt; i++) {
    char key[600];
    fixture_name(m, tp[i], "grad", key, sizeof key);
    size_t n;
    float *g = vkp_fixture_tensor(io, key, &n), *p = malloc(n * 4);
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, tp[i], p));
    for (size_t k = 0; k < n; k++) p[k] = (float)((p[k] + 1e-2 * g[k] / (fabs(g[k]) + 1e-8)) / (1 - 1e-2 * 0.01));
    VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, tp[i], p));
    free(g), free(p);
  }
  // Training graph: forward, MSE against `target`, gradients, one torch AdamW step.
  inputs x;
  inputs_open(&x);
  size_t n;
  float *target = vkp_fixture_tensor(io, "target", &n);
  run r;
  run_build(u, &r);
  vkp_tensor *tt = vkp_tensor_input(r.g, "target", VKP_DTYPE_F32, 4, r.pred->shape);
  vkp_tensor *loss = vkp_mse(r.g, r.pred, tt);
  vkp_graph_output(r.g, loss);
  vkp_tensor **pt = calloc((size_t)nt, sizeof *pt), **grads = calloc((size_t)nt, sizeof *grads);
  for (int i = 0; i < nt; i++) pt[i] = vkp_param_tensor(m, tp[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_backward(r.g, loss, pt, nt, grads));
  for (int i = 0; i < nt; i++) {
    if (!grads[i]) fail_msg("no gradient for %s", tp[i]->name);
    vkp_graph_output(r.g, grads[i]);
  }
  vkp_param_set *ps;
  vkp_optimizer *opt = vkp_parity_adamw_step(r.g, tp, nt, grads, &ps);
  run_inputs(&r, &x);
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(r.g, tt, target, n * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(r.g));
  printf("[lora]\n");
  check_noise_pred("lora", r.g, r.pred, io, 1e-4);
  float *got = vkp_parity_read(r.g, loss), *want = vkp_fixture_tensor(io, "loss", &n);
  vkp_check_rel("loss", got, want, 1, 1e-4);
  free(got), free(want);
  // The step: torch AdamW's first update is lr·g/(|g| + eps), whose derivative in g is lr·eps/(|g|+eps)²:
  // for the few entries with |g| near eps (1e-8) it turns the gradients' float32 rounding (~1e-6 of
  // max|g|) into a visible difference. Entries with |g| >= 1e-6 are compared with the fixture; the
  // others with the update torch computes from our gradient.
  double worst_grad = 0, worst_step = 0, worst_cond = 0;
  int ill = 0;
  for (int i = 0; i < nt; i++) {
    char key[600];
    fixture_name(m, tp[i], "grad", key, sizeof key);
    float *g_want = vkp_fixture_tensor(io, key, &n), *g_got = vkp_parity_read(r.g, grads[i]);
    assert_int_equal(n, vkp_param_numel(tp[i]));
    double e = vkp_rel_err(g_got, g_want, n);
    if (!(e < 1e-3)) fail_msg("%s: relative error %.3e exceeds 1e-3", key, e);
    if (e > worst_grad) worst_grad = e;
    fixture_name(m, tp[i], "step1", key, sizeof key);
    want = vkp_fixture_tensor(io, key, &n);
    got = malloc(n * 4);
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, tp[i], got));
    double scale = 0, diff = 0;
    for (size_t k = 0; k < n; k++) scale = fmax(scale, fabs(want[k]));
    for (size_t k = 0; k < n; k++) {
      if (fabs(g_want[k]) >= 1e-6) {
        diff = fmax(diff, fabs((double)got[k] - want[k]));
      } else {   // p1 = p0 (1 - lr wd) - lr g / (|g| + eps), with p0 recovered from the fixture's p1 and g
        double p0 = (want[k] + 1e-2 * g_want[k] / (fabs(g_want[k]) + 1e-8)) / (1 - 1e-2 * 0.01);
        double mine = p0 * (1 - 1e-2 * 0.01) - 1e-2 * g_got[k] / (fabs(g_got[k]) + 1e-8);
        worst_cond = fmax(worst_cond, fabs(got[k] - mine) / scale);
        ill++;
      }
    }
    e = diff / scale;
    if (!(e < 1e-4)) fail_msg("%s: relative error %.3e exceeds 1e-4", key, e);
    if (e > worst_step) worst_step = e;
    free(got), free(want), free(g_got), free(g_want);
  }
  if (!(worst_cond < 1e-5)) fail_msg("the step of the entries with |g| < 1e-6: relative error %.3e", worst_cond);
  printf("  %-92s rel err %.2e\n", "every grad/... (96 tensors, worst)", worst_grad);
  printf("  %-92s rel err %.2e\n", "every step1/... after one AdamW step (worst; entries with |g| >= 1e-6)", worst_step);
  printf("  %-92s rel err %.2e\n", "  the other entries vs the update from our gradient", worst_cond);
  printf("  (%d of the adapter's entries have |g| < 1e-6)\n", ill);
  int in_fixture = 0;   // every gradient of the fixture was checked
  for (size_t i = 0; i < vkp_safetensors_count(io); i++) in_fixture += !strncmp(vkp_safetensors_at(io, i)->name, "grad/", 5);
  assert_int_equal(nt, in_fixture);
  free(pt), free(grads), free(tp), free(target);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  vkp_graph_free(r.g);
  vkp_safetensors_free(io);
  inputs_close(&x);
  vkp_unet_free(u);
}

// ---- 3. 16-bit weights ----------------------------------------------------------------------------

// The fixture checkpoint converted to f16 (as SD checkpoints usually are): matrices and kernels stay
// f16 on the device, vectors are f32, noise_pred within ~1e-2.
static void test_f16(void **state) {
  vkp_error err = {0};
  char path[512], dir[256];
  snprintf(dir, sizeof dir, "%s", vkp_test_dir_path(state, "unet16", path, sizeof path));
  if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
  vkp_safetensors *src;
  if (vkp_safetensors_open(vkp_fixture_path("unet/unet/diffusion_pytorch_model.safetensors"), &src, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer *w;
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < vkp_safetensors_count(src); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(src, i);
    size_t n = vkp_st_tensor_numel(t);
    float *v = malloc(n * 4);
    vkp_convert_to_f32(t->dtype, t->data, v, n);
    if (vkp_safetensors_writer_add_f32(w, t->name, VKP_DTYPE_F16, t->ndim, t->shape, v, &err)) fail_msg("%s", err.msg);
    free(v);
  }
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.fp16.safetensors", dir);   // the hub's fp16 variant name
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_safetensors_free(src);
  snprintf(path, sizeof path, "%s/config.json", dir);
  vkp_test_copy_file(vkp_fixture_path("unet/unet/config.json"), path);

  vkp_unet *u = load(dir, false);
  int half = vkp_expect_half_weights(u->model, VKP_DTYPE_F16);
  assert_true(half > 50);
  inputs x;
  inputs_open(&x);
  run r;
  run_forward(u, &x, &r);
  printf("[f16 weights]\n");
  check_noise_pred("f16", r.g, r.pred, x.io, 1e-2);
  vkp_graph_free(r.g);
  vkp_unet_free(u);
  // With f32 requested, nothing stays 16-bit.
  u = load(dir, true);
  for (int i = 0; i < u->model->nparams; i++) assert_int_equal(u->model->params[i]->dtype, VKP_DTYPE_F32);
  vkp_unet_free(u);
  inputs_close(&x);
}

// ---- 4. config errors -----------------------------------------------------------------------------

// The fixture config with `key` set to the JSON `value` (NULL: removed) loads with status `want`,
// and the message names the file and `key`.
static void expect_config(const char *dir, const char *key, const char *value, vkp_status want, vkp_unet_config *out) {
  vkp_error err = {0};
  char path[512];
  vkp_fixture_config_edit(vkp_fixture_path("unet/unet/config.json"), key, value, dir, path, sizeof path);
  vkp_unet_config cfg;
  vkp_status st = vkp_unet_config_load(path, &cfg, &err);
  vkp_expect_config_status(st, want, &err, path, key, value);
  if (out) *out = cfg;
}

static void test_bad_config(void **state) {
  char dir[256];
  vkp_test_dir_path(state, "cfg", dir, sizeof dir);
  vkp_error err = {0};
  if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
  printf("[config errors]\n");
  expect_config(dir, "down_block_types", "[\"SimpleCrossAttnDownBlock2D\", \"DownBlock2D\"]", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "up_block_types", "[\"UpBlock2D\", \"AttnUpBlock2D\"]", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "up_block_types", "[\"UpBlock2D\"]", VKP_ERR_INVALID, NULL);
  expect_config(dir, "mid_block_type", "\"UNetMidBlock2DSimpleCrossAttn\"", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "layers_per_block", "\"2\"", VKP_ERR_INVALID, NULL);
  expect_config(dir, "norm_eps", "\"1e-5\"", VKP_ERR_INVALID, NULL);
  expect_config(dir, "block_out_channels", "[32, \"64\"]", VKP_ERR_INVALID, NULL);
  expect_config(dir, "cross_attention_dim", "[32, 32, 32]", VKP_ERR_INVALID, NULL);
  expect_config(dir, "class_embed_type", "\"timestep\"", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "addition_embed_type", "\"text_time\"", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "time_cond_proj_dim", "256", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "attention_type", "\"gated\"", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "time_embedding_type", "\"fourier\"", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "resnet_time_scale_shift", "\"scale_shift\"", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "act_fn", "\"mish\"", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "dual_cross_attention", "true", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "only_cross_attention", "[false, true]", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "dropout", "0.1", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "transformer_layers_per_block", "[[1, 2], [1, 2]]", VKP_ERR_UNSUPPORTED, NULL);
  expect_config(dir, "attention_head_dim", "7", VKP_ERR_INVALID, NULL);          // 7 heads do not divide 32 channels
  expect_config(dir, "num_attention_heads", "[8, 3]", VKP_ERR_INVALID, NULL);    // the heads key when it is set
  expect_config(dir, "norm_num_groups", "24", VKP_ERR_INVALID, NULL);
  expect_config(dir, "_class_name", "\"UNet2DModel\"", VKP_ERR_UNSUPPORTED, NULL);
  // What is accepted: the heads quirk, lists, "UNetRes" prefixes, SD 2.x keys.
  vkp_unet_config c;
  expect_config(dir, "num_attention_heads", "4", VKP_OK, &c);   // num_attention_heads wins over attention_head_dim 8
  assert_int_equal(c.heads[0], 4);
  assert_int_equal(c.heads[1], 4);
  expect_config(dir, "attention_head_dim", "[2, 4]", VKP_OK, &c);
  assert_int_equal(c.heads[0], 2);
  assert_int_equal(c.heads[1], 4);
  expect_config(dir, "down_block_types", "[\"UNetResCrossAttnDownBlock2D\", \"DownBlock2D\"]", VKP_OK, &c);
  expect_config(dir, "use_linear_projection", "true", VKP_OK, &c);
  assert_true(c.use_linear_projection);
  expect_config(dir, "upcast_attention", "true", VKP_OK, &c);
  expect_config(dir, "transformer_layers_per_block", "[2, 1]", VKP_OK, &c);
  assert_int_equal(c.transformer_layers[0], 2);
  expect_config(dir, "mid_block_type", "null", VKP_OK, &c);
  assert_false(c.mid_block);
  expect_config(dir, "layers_per_block", "[1, 2]", VKP_OK, &c);
  assert_int_equal(c.layers_per_block[1], 2);
  // The loader passes the error on, naming the file.
  vkp_unet *u = NULL;
  expect_config(dir, "attention_type", "\"gated\"", VKP_ERR_UNSUPPORTED, NULL);
  assert_int_equal(vkp_unet_load(vkp_test_ctx(), dir, NULL, &u, &err), VKP_ERR_UNSUPPORTED);
  assert_null(u);
  assert_non_null(strstr(err.msg, "attention_type"));
}

// ---- 5. other shapes: linear projections, 2 transformer layers, a save/load round trip ----------

static void test_new_save_load(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_unet_config cfg;
  if (vkp_unet_config_load(vkp_fixture_path("unet/unet/config.json"), &cfg, &err)) fail_msg("%s", err.msg);
  cfg.use_linear_projection = true;      // SD 2.x
  cfg.transformer_layers[0] = 2;
  cfg.heads[0] = cfg.heads[1] = 2;       // head dims 16 and 32
  cfg.layers_per_block[1] = 2;
  vkp_unet *u;
  if (vkp_unet_new(ctx, &cfg, 7, &u, &err)) fail_msg("%s", err.msg);
  assert_non_null(vkp_model_find_module(u->model, "down_blocks.0.attentions.0.transformer_blocks.1.attn2.to_k"));
  assert_int_equal(u->down[0].attentions[0].proj_in->kind, VKP_MODULE_LINEAR);
  // torch's default init: conv_in weights uniform in ±1/sqrt(4*3*3), norms 1.
  float w[32 * 4 * 9], ln[32];
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(u->model, u->conv_in->weight, w));
  float mx = 0;
  for (int i = 0; i < 32 * 36; i++) mx = fmaxf(mx, fabsf(w[i]));
  assert_true(mx <= 1.0f / 6.0f && mx > 0.15f);
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(u->model, u->conv_norm_out->weight, ln));
  assert_true(ln[0] == 1.0f && ln[31] == 1.0f);
  char dir[256];
  vkp_test_dir_path(state, "saved", dir, sizeof dir);
  if (vkp_unet_save(u, dir, &err)) fail_msg("%s", err.msg);
  vkp_unet *u2 = load(dir, false);
  assert_true(u2->cfg.use_linear_projection && u2->cfg.transformer_layers[0] == 2 && u2->cfg.heads[0] == 2 &&
              u2->cfg.layers_per_block[1] == 2);
  inputs x;
  inputs_open(&x);
  float *out[2];
  vkp_unet *models[2] = {u, u2};
  for (int k = 0; k < 2; k++) {
    run r;
    run_forward(models[k], &x, &r);
    out[k] = vkp_parity_read(r.g, r.pred);
    vkp_graph_free(r.g);
  }
  printf("[new, save, load]\n");
  vkp_check_rel("noise_pred after save + load", out[1], out[0], 2 * 4 * 16 * 16, 1e-7);
  free(out[0]), free(out[1]);
  inputs_close(&x);
  vkp_unet_free(u);
  vkp_unet_free(u2);
}

// ---- 6. every PEFT method through the layer calls (no method code in diffusion/) ----------------

// Forward + MSE + backward of u on the fixture inputs (gradients output last parameter first, as
// the optimizer expands them); host copies of loss and gradients, and the graph's statistics.
typedef struct grad_run {
  float loss;
  float **grads;
  vkp_graph_stats stats;
} grad_run;

static void grad_run_do(vkp_unet *u, vkp_param **tp, int nt, const char *entry, grad_run *out) {
  vkp_ctx *ctx = vkp_test_ctx();
  inputs x;
  inputs_open(&x);
  run r;
  run_build(u, &r);
  vkp_tensor *loss = vkp_mse(r.g, r.pred, vkp_fill(r.g, VKP_DTYPE_F32, 4, r.pred->shape, 0.0f));
  vkp_graph_output(r.g, loss);
  vkp_tensor **pt = calloc((size_t)nt, sizeof *pt), **grads = calloc((size_t)nt, sizeof *grads);
  for (int i = 0; i < nt; i++) pt[i] = vkp_param_tensor(u->model, tp[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_backward(r.g, loss, pt, nt, grads));
  for (int i = nt - 1; i >= 0; i--) {
    if (!grads[i]) fail_msg("%s: no gradient for %s", entry, tp[i]->name);
    vkp_graph_output(r.g, grads[i]);
  }
  VKP_ASSERT_OK(ctx, vkp_graph_compile(r.g));
  run_inputs(&r, &x);
  VKP_ASSERT_OK(ctx, vkp_graph_run(r.g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(r.g, loss, &out->loss, 4));
  out->grads = calloc((size_t)nt, sizeof *out->grads);
  for (int i = 0; i < nt; i++) out->grads[i] = vkp_parity_read(r.g, grads[i]);
  out->stats = vkp_graph_get_stats(r.g);
  free(pt), free(grads);
  vkp_graph_free(r.g);
  inputs_close(&x);
}

static void grad_run_free(grad_run *g, int nt) {
  for (int i = 0; i < nt; i++) free(g->grads[i]);
  free(g->grads);
}

// Attaches the method of `entry` (a training config's peft entry) to a fresh fixture UNet, runs
// forward + MSE + backward, and checks that every trainable tensor gets a finite gradient; then
// the same with activation checkpointing (every resnet + transformer a segment): loss and
// gradients bit-identical, a smaller arena.
static void method_trains(const char *entry, int min_trainable) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_unet *u = load(vkp_fixture_path("unet/unet"), false);
  vkp_peft_config pc;
  vkp_error err = {0};
  cJSON *j = cJSON_Parse(entry);
  if (vkp_peft_config_from_entry(j, "test", &pc, &err)) fail_msg("%s: %s", entry, err.msg);
  cJSON_Delete(j);
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(u->model, &pc, 11, &a));
  vkp_peft_config_clear(&pc);
  vkp_param **tp;
  int nt = vkp_model_trainable(u->model, &tp);
  grad_run plain, ck;
  grad_run_do(u, tp, nt, entry, &plain);
  u->model->gradient_checkpointing = true;
  grad_run_do(u, tp, nt, entry, &ck);
  double gsum = 0;
  for (int i = 0; i < nt; i++) {
    size_t bytes = (size_t)vkp_param_numel(tp[i]) * 4;
    for (int64_t k = 0; k < vkp_param_numel(tp[i]); k++) gsum += fabs(plain.grads[i][k]);
    if (memcmp(plain.grads[i], ck.grads[i], bytes)) fail_msg("%s: gradient of %s differs with checkpointing", entry, tp[i]->name);
  }
  printf("  %-70s %3d trainable tensors, loss %.5f, sum |grad| %.3e; checkpointed: bit-identical, arena %.2f -> %.2f MiB\n",
         entry, nt, plain.loss, gsum, plain.stats.arena_bytes / 1048576.0, ck.stats.arena_bytes / 1048576.0);
  if (!isfinite(plain.loss) || !isfinite(gsum) || !(gsum > 0)) fail_msg("%s: loss %g, gradient sum %g", entry, plain.loss, gsum);
  if (plain.loss != ck.loss) fail_msg("%s: loss differs with checkpointing", entry);
  if (!(ck.stats.arena_bytes < plain.stats.arena_bytes)) fail_msg("%s: checkpointing did not shrink the arena", entry);
  if (nt < min_trainable) fail_msg("%s: %d trainable tensors, expected at least %d", entry, nt, min_trainable);
  grad_run_free(&plain, nt);
  grad_run_free(&ck, nt);
  free(tp);
  vkp_unet_free(u);
}

static void test_peft_methods(void **state) {
  (void)state;
  printf("[PEFT methods on the UNet]\n");
  method_trains("{\"method\": \"dora\", \"r\": 2, \"target_modules\": [\"to_q\", \"to_v\"]}", 3 * 16);
  method_trains("{\"method\": \"loha\", \"r\": 2, \"target_modules\": [\"conv1\", \"to_k\"]}", 4 * 15);
  method_trains("{\"method\": \"lokr\", \"r\": 2, \"target_modules\": [\"conv2\", \"ff.net.2\"]}", 11);
  method_trains("{\"method\": \"ia3\", \"target_modules\": [\"to_k\", \"to_v\", \"ff.net.2\"], "
                "\"feedforward_modules\": [\"ff.net.2\"]}", 20);
  method_trains("{\"method\": \"oft\", \"oft_block_size\": 8, \"target_modules\": [\"to_q\", \"proj_in\"]}", 12);
  method_trains("{\"method\": \"bottleneck\", \"bottleneck\": 4}", 4 * (4 * 3 + 8));   // 4 transformer blocks x 3 sites, 8 resnets
  method_trains("{\"method\": \"adaptformer\", \"bottleneck\": 4}", 4 * 4);
  method_trains("{\"method\": \"prefix\", \"num_virtual_tokens\": 3}", 2 * 4);                          // attn1 (self-attention)
  method_trains("{\"method\": \"prefix\", \"num_virtual_tokens\": 2, \"target_modules\": [\"attn2\"]}", 2 * 4);   // cross-attention
  method_trains("{\"method\": \"bitfit\"}", 50);
  method_trains("{\"method\": \"ln_tuning\"}", 50);
  // Visual prompts would attach to the transformer blocks but have nowhere to live: a clear error.
  vkp_unet *u = load(vkp_fixture_path("unet/unet"), false);
  vkp_peft_config pc;
  vkp_peft_config_init(&pc, VKP_PEFT_VPT);
  pc.n_tokens = 2;
  vkp_adapter *a;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_peft_attach(u->model, &pc, 1, &a));
  run r;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_new(vkp_test_ctx(), &r.g));
  vkp_tensor *sample = vkp_tensor_input(r.g, "sample", VKP_DTYPE_F32, 4, (int64_t[]){2, 4, 16, 16});
  vkp_tensor *t = vkp_tensor_input(r.g, "timestep", VKP_DTYPE_F32, 1, (int64_t[]){2});
  vkp_tensor *c = vkp_tensor_input(r.g, "encoder_hidden_states", VKP_DTYPE_F32, 3, (int64_t[]){2, 8, 32});
  assert_int_equal(vkp_unet_forward(u, r.g, sample, t, c, &r.pred), VKP_ERR_UNSUPPORTED);
  printf("  vpt: %s\n", vkp_graph_error(r.g));
  assert_non_null(strstr(vkp_graph_error(r.g), "prompt"));
  vkp_graph_free(r.g);
  vkp_unet_free(u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_base_forward),
      cmocka_unit_test(test_lora),
      cmocka_unit_test_setup_teardown(test_f16, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_bad_config, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_new_save_load, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_peft_methods),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
