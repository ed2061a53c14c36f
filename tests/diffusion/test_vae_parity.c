// test_vae_parity.c — AutoencoderKL against diffusers (../shared/fixtures/unet/vae): the
// posterior's mean and logvar of `vae_in`, decode(`sample`); posterior sampling; f16 weights kept
// on the device; checkpoints with the pre-0.14 attention names; config errors; the composed
// attention used for head dims beyond the fused kernel (SD's 512-wide VAE head); save/load.
// Error measure: max |got - want| / max |want| over the tensor ("relative error" below).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_fileio.h"
#include "vkp_parity.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"
#include "vkp_vae.h"

#define B 2

typedef struct run {
  vkp_graph *g;
  vkp_tensor *x, *z, *noise, *mean, *logvar, *sample, *decoded;
} run;

static vkp_vae *load(const char *dir, bool f32) {
  vkp_vae *v = NULL;
  vkp_error err = {0};
  if (vkp_vae_load(vkp_test_ctx(), dir, f32, &v, &err)) fail_msg("load %s: %s", dir, err.msg);
  return v;
}

// Encode `vae_in`, sample with `noise`, decode `sample` of the fixture, in one graph.
static void forward(vkp_vae *v, vkp_safetensors *io, const float *noise, run *r) {
  vkp_ctx *ctx = vkp_test_ctx();
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &r->g));
  r->x = vkp_tensor_input(r->g, "vae_in", VKP_DTYPE_F32, 4, (int64_t[]){B, 3, 32, 32});
  r->z = vkp_tensor_input(r->g, "sample", VKP_DTYPE_F32, 4, (int64_t[]){B, 4, 16, 16});
  r->noise = vkp_tensor_input(r->g, "noise", VKP_DTYPE_F32, 4, (int64_t[]){B, 4, 16, 16});
  if (vkp_vae_encode(v, r->g, r->x, &r->mean, &r->logvar)) fail_msg("encode: %s", vkp_graph_error(r->g));
  r->sample = vkp_vae_sample(r->g, r->mean, r->logvar, r->noise);
  if (vkp_vae_decode(v, r->g, r->z, &r->decoded)) fail_msg("decode: %s", vkp_graph_error(r->g));
  vkp_tensor *outs[] = {r->mean, r->logvar, r->sample, r->decoded};
  for (int i = 0; i < 4; i++) vkp_graph_output(r->g, outs[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(r->g));
  size_t n;
  float *x = vkp_fixture_tensor(io, "vae_in", &n), *z = vkp_fixture_tensor(io, "sample", &n);
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(r->g, r->x, x, B * 3 * 32 * 32 * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(r->g, r->z, z, B * 4 * 16 * 16 * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(r->g, r->noise, noise, B * 4 * 16 * 16 * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(r->g));
  free(x), free(z);
}

static vkp_safetensors *open_io(void) {
  vkp_safetensors *io;
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("unet/io.safetensors"), &io, &err)) fail_msg("%s", err.msg);
  return io;
}

static float *make_noise(void) {
  float *noise = malloc(B * 4 * 16 * 16 * sizeof *noise);
  vkp_rng rng = vkp_rng_new(42);
  vkp_rng_normal_fill(&rng, noise, B * 4 * 16 * 16, 0.0, 1.0);
  return noise;
}

// Runs v on the fixture (encode vae_in, sample, decode sample) and checks mean, logvar and the
// decoded image within tol; with `sample`, also mean + exp(logvar / 2) * noise from the fixture's posterior.
static void check_model(vkp_vae *v, const char *label, double tol, bool sample) {
  vkp_safetensors *io = open_io();
  float *noise = make_noise();
  run r;
  forward(v, io, noise, &r);
  printf("[%s]\n", label);
  vkp_check_output(r.g, r.mean, io, "", "vae_mean", tol);
  vkp_check_output(r.g, r.logvar, io, "", "vae_logvar", tol);
  vkp_check_output(r.g, r.decoded, io, "decode(sample): ", "vae_decoded", tol);
  if (sample) {
    size_t n;
    float *mean = vkp_fixture_tensor(io, "vae_mean", &n), *logvar = vkp_fixture_tensor(io, "vae_logvar", &n);
    float *want = malloc(n * 4), *got = vkp_parity_read(r.g, r.sample);
    for (size_t i = 0; i < n; i++) want[i] = (float)(mean[i] + exp(0.5 * logvar[i]) * noise[i]);
    vkp_check_rel("posterior sample (mean + std * noise)", got, want, n, tol);
    free(mean), free(logvar), free(want), free(got);
  }
  free(noise);
  vkp_graph_free(r.g);
  vkp_safetensors_free(io);
}

// ---- 1. the fixture model -----------------------------------------------------------------------

static void test_parity(void **state) {
  (void)state;
  vkp_vae *v = load(vkp_fixture_path("unet/vae"), false);
  assert_true(v->cfg.scaling_factor == 0.18215f && !v->cfg.has_shift_factor);
  assert_true(v->quant_conv && v->post_quant_conv && v->cfg.mid_block_add_attention);
  check_model(v, "AutoencoderKL", 1e-4, true);
  vkp_vae_free(v);
}

// ---- 2. 16-bit weights, old attention names ------------------------------------------------------

// Copies the fixture folder into dir with every tensor as `dt`, the mid-block attention under the
// pre-0.14 names when `old_names`.
static void copy_checkpoint(const char *dir, vkp_dtype dt, bool old_names) {
  vkp_error err = {0};
  char path[512];
  if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
  vkp_safetensors *src;
  if (vkp_safetensors_open(vkp_fixture_path("unet/vae/diffusion_pytorch_model.safetensors"), &src, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer *w;
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  static const char *const renames[][2] = {{".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}};
  for (size_t i = 0; i < vkp_safetensors_count(src); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(src, i);
    size_t n = vkp_st_tensor_numel(t);
    float *val = malloc(n * 4);
    vkp_convert_to_f32(t->dtype, t->data, val, n);
    char name[256];
    snprintf(name, sizeof name, "%s", t->name);
    for (int k = 0; old_names && k < 4; k++) {
      char *at = strstr(name, renames[k][0]);
      if (at) {
        char tail[256];
        snprintf(tail, sizeof tail, "%s", at + strlen(renames[k][0]));
        snprintf(at, sizeof name - (size_t)(at - name), "%s%s", renames[k][1], tail);
      }
    }
    if (vkp_safetensors_writer_add_f32(w, name, dt, t->ndim, t->shape, val, &err)) fail_msg("%s", err.msg);
    free(val);
  }
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_safetensors_free(src);
  char *text;
  size_t len;
  if (vkp_file_read_all(vkp_fixture_path("unet/vae/config.json"), 1 << 20, &text, &len, &err)) fail_msg("%s", err.msg);
  snprintf(path, sizeof path, "%s/config.json", dir);
  const void *chunks[1] = {text};
  if (vkp_file_write_atomic(path, chunks, &len, 1, &err)) fail_msg("%s", err.msg);
  free(text);
}

static void test_f16(void **state) {
  char dir[256];
  vkp_test_dir_path(state, "vae16", dir, sizeof dir);
  copy_checkpoint(dir, VKP_DTYPE_F16, false);
  vkp_vae *v = load(dir, false);
  int half = vkp_expect_half_weights(v->model, VKP_DTYPE_F16);
  assert_true(half > 30);
  check_model(v, "f16 weights", 1e-2, false);
  vkp_vae_free(v);
  v = load(dir, true);
  for (int i = 0; i < v->model->nparams; i++) assert_int_equal(v->model->params[i]->dtype, VKP_DTYPE_F32);
  vkp_vae_free(v);
}

static void test_old_attention_names(void **state) {
  char dir[256];
  vkp_test_dir_path(state, "old", dir, sizeof dir);
  copy_checkpoint(dir, VKP_DTYPE_F32, true);
  vkp_vae *v = load(dir, false);
  check_model(v, "query/key/value/proj_attn names", 1e-4, false);
  vkp_vae_free(v);
}

// ---- 3. config errors -----------------------------------------------------------------------------

static void expect_config(const char *dir, const char *key, const char *value, vkp_status want) {
  vkp_error err = {0};
  char path[512];
  vkp_fixture_config_edit(vkp_fixture_path("unet/vae/config.json"), key, value, dir, path, sizeof path);
  vkp_vae_config cfg;
  vkp_status st = vkp_vae_config_load(path, &cfg, &err);
  vkp_expect_config_status(st, want, &err, path, key, value);
  if (!st && !strcmp(key, "shift_factor")) {
    assert_true(cfg.has_shift_factor && cfg.shift_factor == 0.5f);
  }
}

static void test_bad_config(void **state) {
  char dir[256];
  vkp_test_dir_path(state, "cfg", dir, sizeof dir);
  vkp_error err = {0};
  if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
  printf("[config errors]\n");
  expect_config(dir, "down_block_types", "[\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\"]", VKP_ERR_UNSUPPORTED);
  expect_config(dir, "up_block_types", "[\"UpDecoderBlock2D\"]", VKP_ERR_INVALID);
  expect_config(dir, "layers_per_block", "\"1\"", VKP_ERR_INVALID);
  expect_config(dir, "scaling_factor", "\"0.18\"", VKP_ERR_INVALID);
  expect_config(dir, "block_out_channels", "[16, 30]", VKP_ERR_INVALID);   // 8 groups do not divide 30
  expect_config(dir, "act_fn", "\"gelu\"", VKP_ERR_UNSUPPORTED);
  expect_config(dir, "_class_name", "\"AutoencoderTiny\"", VKP_ERR_UNSUPPORTED);
  expect_config(dir, "shift_factor", "0.5", VKP_OK);
}

// ---- 4. attention past 160 head dims (the wide fused kernel, as the VAE's 512-wide head) -------

#define AT 24   // tokens
#define AD 192  // head dim > 160: attention_wide.glsl

static vkp_model *attn_model;

static vkp_tensor *build_attn(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  vkp_model_begin_graph(attn_model, g);
  return vkp_sd_attention(attn_model, NULL, in[0], in[1], in[2]);
}

static void ref_attn(const double *const *in, double *out, void *user) {
  (void)user;
  double s[AT];
  for (int i = 0; i < AT; i++) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < AT; j++) {
      double dot = 0;
      for (int d = 0; d < AD; d++) dot += in[0][i * AD + d] * in[1][j * AD + d];
      s[j] = dot / sqrt((double)AD);
      mx = fmax(mx, s[j]);
    }
    for (int j = 0; j < AT; j++) sum += (s[j] = exp(s[j] - mx));
    for (int d = 0; d < AD; d++) {
      double acc = 0;
      for (int j = 0; j < AT; j++) acc += s[j] * in[2][j * AD + d];
      out[i * AD + d] = acc / sum;
    }
  }
}

static void test_wide_head_attention(void **state) {
  (void)state;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_model_new(vkp_test_ctx(), &attn_model));
  vkp_op_check c = {.name = "attention, head dim 192 (wide kernel)", .n_inputs = 3, .build = build_attn, .ref = ref_attn,
                    .fwd_rtol = 1e-4, .fwd_atol = 1e-5, .grad_rtol = 2e-2, .grad_atol = 2e-3, .seed = 5};
  for (int i = 0; i < 3; i++)
    c.in[i] = (vkp_check_input){.ndim = 4, .shape = {1, 1, AT, AD}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  vkp_op_check_run(&c);
  vkp_model_free(attn_model);
}

// ---- 5. other shapes: no attention / quant convs, 3 blocks; save + load ------------------------

static void test_new_save_load(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_vae_config cfg;
  vkp_vae_config_default(&cfg);
  cfg.n_blocks = 3;
  cfg.block_out_channels[0] = 8, cfg.block_out_channels[1] = 16, cfg.block_out_channels[2] = 16;
  cfg.norm_num_groups = 4;
  cfg.layers_per_block = 2;
  cfg.use_quant_conv = false;
  cfg.mid_block_add_attention = false;
  vkp_vae *v;
  if (vkp_vae_new(ctx, &cfg, 3, &v, &err)) fail_msg("%s", err.msg);
  assert_null(v->quant_conv);
  assert_non_null(v->post_quant_conv);
  assert_null(vkp_model_find_module(v->model, "encoder.mid_block.attentions.0.to_q"));
  assert_non_null(vkp_model_find_module(v->model, "decoder.up_blocks.2.resnets.2.conv2"));
  char dir[256];
  vkp_test_dir_path(state, "saved", dir, sizeof dir);
  if (vkp_vae_save(v, dir, &err)) fail_msg("%s", err.msg);
  vkp_vae *v2 = load(dir, false);
  assert_true(v2->cfg.n_blocks == 3 && !v2->cfg.use_quant_conv && !v2->cfg.mid_block_add_attention && v2->cfg.layers_per_block == 2);
  float *x = malloc(1 * 3 * 16 * 16 * 4);
  vkp_rng rng = vkp_rng_new(9);
  vkp_rng_uniform_fill(&rng, x, 3 * 16 * 16, -1, 1);
  float *out[2][2];
  vkp_vae *models[2] = {v, v2};
  for (int k = 0; k < 2; k++) {
    vkp_graph *g;
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
    vkp_tensor *in = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){1, 3, 16, 16}), *mean, *logvar, *dec;
    if (vkp_vae_encode(models[k], g, in, &mean, &logvar) || vkp_vae_decode(models[k], g, mean, &dec)) fail_msg("%s", vkp_graph_error(g));
    assert_int_equal(mean->shape[2], 4);   // x4 downsampling
    assert_int_equal(dec->shape[2], 16);
    vkp_graph_output(g, mean);
    vkp_graph_output(g, dec);
    VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, in, x, 3 * 16 * 16 * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
    out[k][0] = vkp_parity_read(g, mean);
    out[k][1] = vkp_parity_read(g, dec);
    vkp_graph_free(g);
  }
  printf("[new, save, load]\n");
  vkp_check_rel("mean after save + load", out[1][0], out[0][0], 4 * 4 * 4, 1e-7);
  vkp_check_rel("decode(mean) after save + load", out[1][1], out[0][1], 3 * 16 * 16, 1e-7);
  for (int k = 0; k < 2; k++) free(out[k][0]), free(out[k][1]);
  free(x);
  vkp_vae_free(v);
  vkp_vae_free(v2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parity),
      cmocka_unit_test_setup_teardown(test_f16, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_old_attention_names, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_bad_config, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_wide_head_attention),
      cmocka_unit_test_setup_teardown(test_new_save_load, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
