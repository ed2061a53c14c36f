// test_adapter_format.c — the adapter formats (vkp_adapter_format.h):
//   * the registry: find, detect (an HF PEFT folder, a kohya file, a diffusers file), unknown
//     formats and paths;
//   * the kohya reader (format_kohya.c) on the fixture unet/lora/kohya.safetensors, onto a model
//     whose modules carry diffusers names and onto the fixture UNet (diffusion/): its values equal
//     the diffusers file's, alpha / r = 2 becomes each slot's scaling, and written as an HF PEFT
//     folder it loads again onto the same modules;
//   * the diffusers reader: the same tensors (scale 1 without alpha, as diffusers; 2 with
//     vkp_adapter_io.alpha = 8);
//   * write -> read round trips: kohya LoRA, conv LoRA, DoRA, LoHa, LoKr (full and low-rank w2),
//     diffusers LoRA / DoRA; a padded mixed-rank file; bad files give one-line errors naming the
//     file and the key.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "vkp_adapter_format.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"
#include "vkp_unet.h"

#define MAXMOD 64

// A model with one module per LoRA target of the diffusers file "unet.<module>.lora_A.weight",
// shaped from the LoRA factors (A (r, in[, kh, kw]), B (out, r[, 1, 1])).
static vkp_model *model_from_diffusers(const vkp_safetensors *sf) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m;
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *a = vkp_safetensors_at(sf, i);
    const char *sfx = ".lora_A.weight";
    size_t n = strlen(a->name), ns = strlen(sfx);
    if (n < ns || strcmp(a->name + n - ns, sfx)) continue;
    char mod[256], bname[300];
    snprintf(mod, sizeof mod, "%.*s", (int)(n - ns - 5), a->name + 5);   // strip "unet." and the suffix
    snprintf(bname, sizeof bname, "unet.%s.lora_B.weight", mod);
    const vkp_st_tensor *b = vkp_safetensors_find(sf, bname);
    assert_non_null(b);
    vkp_module *x = a->ndim == 4 ? vkp_model_add_module(m, mod, NULL, VKP_MODULE_CONV2D, -1, 4,
                                                        (int64_t[]){b->shape[0], a->shape[1], a->shape[2], a->shape[3]},
                                                        b->shape[0])
                                 : vkp_model_add_module(m, mod, NULL, VKP_MODULE_LINEAR, -1, 2,
                                                        (int64_t[]){b->shape[0], a->shape[1]}, 0);
    assert_non_null(x);
  }
  return m;
}

// ---- tests -----------------------------------------------------------------------------------------

static void test_kohya_fixture(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_safetensors *diff = NULL;
  const char *dpath = vkp_fixture_path("unet/lora/pytorch_lora_weights.safetensors");
  char dcopy[600];
  snprintf(dcopy, sizeof dcopy, "%s", dpath);
  if (vkp_safetensors_open(dcopy, &diff, &err)) fail_msg("%s", err.msg);
  vkp_model *m = model_from_diffusers(diff);
  printf("  model: %d modules named as diffusers names them\n", m->nmodules);
  vkp_adapter *a = NULL;
  char kpath[600];
  snprintf(kpath, sizeof kpath, "%s", vkp_fixture_path("unet/lora/kohya.safetensors"));
  VKP_ASSERT_OK(ctx, vkp_adapter_read(m, kpath, NULL, NULL, &a));
  assert_string_equal(vkp_adapter_format_detect(kpath)->name, "kohya");
  assert_int_equal(vkp_adapter_slot_count(a), m->nmodules);
  // Same values as the diffusers file; scaling alpha / r = 8 / 4.
  double worst = 0;
  for (int i = 0; i < vkp_adapter_tensor_count(a); i++) {
    vkp_adapter_tensor t = vkp_adapter_tensor_at(a, i);
    char key[400];
    snprintf(key, sizeof key, "unet.%s.%s", t.module->name, t.suffix);
    const vkp_st_tensor *want = vkp_safetensors_find(diff, key);
    if (!want) fail_msg("no %s in the diffusers file", key);
    size_t n = vkp_st_tensor_numel(want);
    float *got = malloc(n * 4), *w = malloc(n * 4);
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, t.param, got));
    vkp_convert_to_f32(want->dtype, want->data, w, n);
    for (size_t k = 0; k < n; k++) worst = fmax(worst, fabs(got[k] - w[k]));
    free(got), free(w);
  }
  for (int s = 0; s < vkp_adapter_slot_count(a); s++) assert_true(fabsf(vkp_adapter_slot_scaling(a, s) - 2.0f) < 1e-6f);
  printf("  kohya -> %d LoRA slots; max |kohya - diffusers| = %.1e; scaling alpha/r = %.1f\n", vkp_adapter_slot_count(a),
         worst, (double)vkp_adapter_slot_scaling(a, 0));
  assert_true(worst == 0);
  // Written as an HF PEFT folder, detected as such, read back onto the same modules.
  char dir[300];
  vkp_test_dir_path(state, "as_peft", dir, sizeof dir);
  VKP_ASSERT_OK(ctx, vkp_adapter_write(m, a, dir, NULL, NULL));
  const vkp_adapter_format *f = vkp_adapter_format_detect(dir);
  assert_non_null(f);
  assert_string_equal(f->name, "peft");
  vkp_model *m2 = model_from_diffusers(diff);
  vkp_adapter *b = NULL;
  VKP_ASSERT_OK(ctx, vkp_adapter_read(m2, dir, NULL, NULL, &b));
  assert_int_equal(vkp_adapter_slot_count(b), m2->nmodules);
  printf("  written as HF PEFT (%s) and read back: %d slots\n", f->description, vkp_adapter_slot_count(b));
  vkp_model_free(m2);
  vkp_model_free(m);
  vkp_safetensors_free(diff);
}


// ---- the fixture UNet, round trips, bad files -----------------------------------------------------

static vkp_model *fixture_model(void) {
  vkp_error err = {0};
  vkp_safetensors *diff = NULL;
  char dpath[600];
  snprintf(dpath, sizeof dpath, "%s", vkp_fixture_path("unet/lora/pytorch_lora_weights.safetensors"));
  if (vkp_safetensors_open(dpath, &diff, &err)) fail_msg("%s", err.msg);
  vkp_model *m = model_from_diffusers(diff);
  vkp_safetensors_free(diff);
  return m;
}

// Every tensor of a equals the same module's tensor of b (same suffix), and the scalings match.
static void assert_same_adapter(vkp_model *ma, vkp_adapter *a, vkp_model *mb, vkp_adapter *b, double *worst) {
  assert_int_equal(vkp_adapter_slot_count(a), vkp_adapter_slot_count(b));
  *worst = 0;
  for (int i = 0; i < vkp_adapter_tensor_count(a); i++) {
    vkp_adapter_tensor t = vkp_adapter_tensor_at(a, i);
    int j = 0;
    vkp_adapter_tensor u = {0};
    for (; j < vkp_adapter_tensor_count(b); j++) {
      u = vkp_adapter_tensor_at(b, j);
      if (!strcmp(u.module->name, t.module->name) && !strcmp(u.suffix, t.suffix)) break;
    }
    if (j == vkp_adapter_tensor_count(b)) fail_msg("no %s %s after the round trip", t.module->name, t.suffix);
    int64_t n = vkp_param_numel(t.param);
    assert_int_equal(n, vkp_param_numel(u.param));
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    VKP_ASSERT_OK(ma->ctx, vkp_param_read_f32(ma, t.param, x));
    VKP_ASSERT_OK(mb->ctx, vkp_param_read_f32(mb, u.param, y));
    for (int64_t k = 0; k < n; k++) *worst = fmax(*worst, fabs(x[k] - y[k]));
    free(x), free(y);
    float sa = vkp_adapter_slot_scaling(a, t.slot), sb = vkp_adapter_slot_scaling(b, u.slot);
    if (fabsf(sa - sb) > 1e-6f * fabsf(sa)) fail_msg("%s: scaling %g != %g", t.module->name, (double)sa, (double)sb);
  }
}

// kohya and diffusers files on the fixture UNet (diffusion/): identical tensors, scaling 2.
static void test_fixture_unet(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_unet *u1 = NULL, *u2 = NULL, *u3 = NULL;
  char dir[600], kpath[600], dpath[600];
  snprintf(dir, sizeof dir, "%s", vkp_fixture_path("unet/unet"));
  snprintf(kpath, sizeof kpath, "%s", vkp_fixture_path("unet/lora/kohya.safetensors"));
  snprintf(dpath, sizeof dpath, "%s", vkp_fixture_path("unet/lora/pytorch_lora_weights.safetensors"));
  if (vkp_unet_load(ctx, dir, NULL, &u1, &err) || vkp_unet_load(ctx, dir, NULL, &u2, &err) || vkp_unet_load(ctx, dir, NULL, &u3, &err))
    fail_msg("%s", err.msg);
  vkp_adapter *k = NULL, *d = NULL, *d1 = NULL;
  VKP_ASSERT_OK(ctx, vkp_adapter_load(u1->model, kpath, &k));
  vkp_adapter_io io = {.alpha = 8};
  VKP_ASSERT_OK(ctx, vkp_adapter_read(u2->model, dpath, NULL, &io, &d));
  VKP_ASSERT_OK(ctx, vkp_adapter_load(u3->model, dpath, &d1));
  assert_string_equal(vkp_adapter_format_detect(dpath)->name, "diffusers");
  double worst;
  assert_same_adapter(u1->model, k, u2->model, d, &worst);
  assert_true(worst == 0);
  for (int s = 0; s < vkp_adapter_slot_count(k); s++) assert_true(vkp_adapter_slot_scaling(k, s) == 2.0f);
  for (int s = 0; s < vkp_adapter_slot_count(d1); s++) assert_true(vkp_adapter_slot_scaling(d1, s) == 1.0f);
  printf("  fixture UNet: kohya and diffusers -> %d LoRA slots each, max |diff| = %g, scaling 2 (diffusers without alpha: 1, as diffusers)\n",
         vkp_adapter_slot_count(k), worst);
  vkp_unet_free(u1), vkp_unet_free(u2), vkp_unet_free(u3);
}

typedef struct rt_case {
  const char *name, *format;
  vkp_peft_method method;
  int r;
  float alpha;
  bool dora;
} rt_case;

static void test_round_trips(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  const rt_case cases[] = {
      {"kohya LoRA + conv LoRA", "kohya", VKP_PEFT_LORA, 4, 8, false},
      {"kohya DoRA", "kohya", VKP_PEFT_LORA, 4, 6, true},
      {"kohya LoHa", "kohya", VKP_PEFT_LOHA, 2, 3, false},
      {"kohya LoKr (low-rank w2)", "kohya", VKP_PEFT_LOKR, 1, 2, false},
      {"kohya LoKr (full w2)", "kohya", VKP_PEFT_LOKR, 16, 16, false},
      {"diffusers LoRA", "diffusers", VKP_PEFT_LORA, 4, 8, false},
      {"diffusers DoRA", "diffusers", VKP_PEFT_LORA, 4, 8, true},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    vkp_model *m = fixture_model(), *m2 = fixture_model();
    vkp_peft_config cfg;
    vkp_peft_config_init(&cfg, cases[c].method);
    cfg.r = cases[c].r, cfg.alpha = cases[c].alpha, cfg.use_dora = cases[c].dora, cfg.init_weights = false;
    vkp_adapter *a = NULL, *b = NULL;
    VKP_ASSERT_OK(ctx, vkp_adapter_attach_modules(m, &cfg, m->modules, m->nmodules, 7, &a));
    char path[300];
    vkp_test_dir_path(state, cases[c].format, path, sizeof path);
    strcat(path, ".safetensors");
    vkp_adapter_io wio = {.base_model_version = "sd_v1"};
    VKP_ASSERT_OK(ctx, vkp_adapter_write(m, a, path, cases[c].format, &wio));
    assert_string_equal(vkp_adapter_format_detect(path)->name, cases[c].format);
    VKP_ASSERT_OK(ctx, vkp_adapter_load(m2, path, &b));
    double worst;
    if (cases[c].method == VKP_PEFT_LOKR && cases[c].r == 16) {
      // LyCORIS applies full factors at scale 1: the scaling (1 here) moves into lokr_w1.
      for (int s = 0; s < vkp_adapter_slot_count(b); s++) assert_true(vkp_adapter_slot_scaling(b, s) == 1.0f);
    }
    assert_same_adapter(m, a, m2, b, &worst);
    printf("  %-26s %d slots, max |written - read| = %g\n", cases[c].name, vkp_adapter_slot_count(b), worst);
    assert_true(worst == 0);
    vkp_peft_config_clear(&cfg);
    vkp_model_free(m), vkp_model_free(m2);
  }
}

// A kohya file written by hand: module key `stem`, tensors given by (suffix, dtype, ndim, shape).
typedef struct kt {
  const char *key;
  vkp_dtype dtype;
  int ndim;
  int64_t shape[4];
} kt;

static void write_file(const char *path, const kt *t, int n) {
  vkp_error err = {0};
  vkp_safetensors_writer *w;
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < n; i++) {
    int64_t numel = 1;
    for (int d = 0; d < t[i].ndim; d++) numel *= t[i].shape[d];
    float *v = calloc((size_t)numel, 4);
    for (int64_t k = 0; k < numel; k++) v[k] = 0.01f * (float)((k * 7 + i) % 13) + 0.5f;
    vkp_status st = t[i].dtype == VKP_DTYPE_I32 ? vkp_safetensors_writer_add(w, t[i].key, VKP_DTYPE_I32, t[i].ndim, t[i].shape, v, &err)
                                                : vkp_safetensors_writer_add_f32(w, t[i].key, VKP_DTYPE_F32, t[i].ndim, t[i].shape, v, &err);
    free(v);
    if (st) fail_msg("%s", err.msg);
  }
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
}

#define Q "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
#define K "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k"

static void test_mixed_ranks_and_bad_files(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  char path[300];
  vkp_test_dir_path(state, "f.safetensors", path, sizeof path);
  // Mixed ranks: to_q rank 2, to_k rank 4 -> one adapter of r 4, to_q zero-padded; written back at rank 2.
  const kt mixed[] = {{Q ".lora_down.weight", VKP_DTYPE_F32, 2, {2, 32}}, {Q ".lora_up.weight", VKP_DTYPE_F32, 2, {32, 2}},
                      {Q ".alpha", VKP_DTYPE_F32, 0, {0}},                {K ".lora_down.weight", VKP_DTYPE_F32, 2, {4, 32}},
                      {K ".lora_up.weight", VKP_DTYPE_F32, 2, {32, 4}},   {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", VKP_DTYPE_F32, 2, {4, 32}}};
  write_file(path, mixed, 6);
  vkp_model *m = fixture_model();
  vkp_adapter *a = NULL;
  VKP_ASSERT_OK(ctx, vkp_adapter_load(m, path, &a));   // lora_te_: another model's keys, noted and skipped
  assert_int_equal(vkp_adapter_slot_count(a), 2);
  assert_int_equal(vkp_adapter_config(a)->r, 4);
  char out[300];
  vkp_test_dir_path(state, "back.safetensors", out, sizeof out);
  VKP_ASSERT_OK(ctx, vkp_adapter_write(m, a, out, "kohya", NULL));
  vkp_error err = {0};
  vkp_safetensors *sf = NULL;
  if (vkp_safetensors_open(out, &sf, &err)) fail_msg("%s", err.msg);
  assert_int_equal(vkp_safetensors_find(sf, Q ".lora_down.weight")->shape[0], 2);
  assert_int_equal(vkp_safetensors_find(sf, K ".lora_down.weight")->shape[0], 4);
  float al;
  vkp_safetensors_read_f32(sf, Q ".alpha", &al, 1, &err);
  printf("  mixed ranks 2 / 4 -> r 4 (padded), written back at rank 2 and 4; to_q alpha %g; metadata ss_network_dim %s\n",
         (double)al, vkp_safetensors_metadata(sf, "ss_network_dim"));
  vkp_safetensors_free(sf);
  vkp_model_free(m);
  // Bad files: one-line errors naming the file and the key; the model keeps no adapter.
  const struct {
    const char *what;
    kt t[3];
    int n;
    const char *needle;
  } bad[] = {
      {"unknown module", {{Q ".lora_down.weight", VKP_DTYPE_F32, 2, {4, 32}}, {Q ".lora_up.weight", VKP_DTYPE_F32, 2, {32, 4}},
                          {"lora_unet_down_blocks_7_attn1_to_q.lora_down.weight", VKP_DTYPE_F32, 2, {4, 32}}}, 3,
       "names no module of the model: 'lora_unet_down_blocks_7_attn1_to_q.lora_down.weight'"},
      {"rank mismatch", {{Q ".lora_down.weight", VKP_DTYPE_F32, 2, {4, 32}}, {Q ".lora_up.weight", VKP_DTYPE_F32, 2, {32, 2}}}, 2,
       "rank mismatch: '" Q ".lora_down.weight' has rank 4, '" Q ".lora_up.weight' has rank 2"},
      {"alpha not a scalar", {{Q ".lora_down.weight", VKP_DTYPE_F32, 2, {4, 32}}, {Q ".lora_up.weight", VKP_DTYPE_F32, 2, {32, 4}},
                              {Q ".alpha", VKP_DTYPE_F32, 1, {2}}}, 3, "tensor '" Q ".alpha' (alpha) must be a scalar, has shape [2]"},
      {"non-float", {{Q ".lora_down.weight", VKP_DTYPE_I32, 2, {4, 32}}, {Q ".lora_up.weight", VKP_DTYPE_F32, 2, {32, 4}}}, 2,
       "tensor '" Q ".lora_down.weight' must be a float tensor, not I32"},
      {"wrong shape", {{Q ".lora_down.weight", VKP_DTYPE_F32, 2, {4, 16}}, {Q ".lora_up.weight", VKP_DTYPE_F32, 2, {32, 4}}}, 2,
       "tensor '" Q ".lora_down.weight' has shape [4, 16]"},
      {"Tucker LoHa", {{Q ".hada_w1_a", VKP_DTYPE_F32, 2, {32, 2}}, {Q ".hada_t1", VKP_DTYPE_F32, 4, {2, 2, 1, 1}}}, 2,
       "Tucker factors"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    write_file(path, bad[i].t, bad[i].n);
    m = fixture_model();
    a = (vkp_adapter *)1;
    vkp_status st = vkp_adapter_load(m, path, &a);
    const char *msg = vkp_ctx_error(ctx);
    printf("  %-18s -> %s\n", bad[i].what, msg);
    assert_int_not_equal(st, VKP_OK);
    assert_null(a);
    assert_int_equal(vkp_peft_count(m), 0);
    if (!strstr(msg, path) || !strstr(msg, bad[i].needle)) fail_msg("want '%s' and the path in: %s", bad[i].needle, msg);
    assert_null(strchr(msg, '\n'));
    vkp_model_free(m);
  }
  // The A1111 behaviour on request: the unknown key is skipped with a warning.
  write_file(path, bad[0].t, bad[0].n);
  m = fixture_model();
  vkp_adapter_io io = {.skip_unmatched = true};
  VKP_ASSERT_OK(ctx, vkp_adapter_read(m, path, NULL, &io, &a));
  assert_int_equal(vkp_adapter_slot_count(a), 1);
  vkp_model_free(m);
}

// Files that used to crash the readers, give silently wrong scales, or make them allocate far beyond
// their size.
static void test_hostile_files(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  char path[300];
  vkp_test_dir_path(state, "h.safetensors", path, sizeof path);
  vkp_error err = {0};
  // diffusers: an alpha_pattern that is an array, not an object (its items have no keys): it was
  // read as an object and crashed; now its entries are no module's and lora_alpha applies.
  const char *D = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
  char ka[200], kb[200];
  snprintf(ka, sizeof ka, "%s.lora_A.weight", D);
  snprintf(kb, sizeof kb, "%s.lora_B.weight", D);
  float v[4 * 32] = {0};
  vkp_safetensors_writer *w;
  if (vkp_safetensors_writer_new(&w, &err) || vkp_safetensors_writer_add_f32(w, ka, VKP_DTYPE_F32, 2, (int64_t[]){4, 32}, v, &err) ||
      vkp_safetensors_writer_add_f32(w, kb, VKP_DTYPE_F32, 2, (int64_t[]){32, 4}, v, &err) ||
      vkp_safetensors_writer_set_metadata(w, "lora_adapter_metadata", "{\"unet.alpha_pattern\": [1, \"x\"], \"unet.lora_alpha\": 8}", &err) ||
      vkp_safetensors_writer_save(w, path, &err))
    fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_model *m = fixture_model();
  vkp_adapter *a = NULL;
  VKP_ASSERT_OK(ctx, vkp_adapter_read(m, path, "diffusers", NULL, &a));
  assert_true(fabsf(vkp_adapter_slot_scaling(a, 0) - 2.0f) < 1e-6f);
  vkp_model_free(m);
  // An alpha of inf (a tensor, or lora_alpha 1e300 in diffusers' metadata, inf as a float) made every
  // scale inf, silently; NaN was taken for "no alpha" (scale 1). Both are errors naming the module.
  for (int c = 0; c < 3; c++) {
    float al = c == 1 ? NAN : INFINITY;
    if (vkp_safetensors_writer_new(&w, &err) || vkp_safetensors_writer_add_f32(w, ka, VKP_DTYPE_F32, 2, (int64_t[]){4, 32}, v, &err) ||
        vkp_safetensors_writer_add_f32(w, kb, VKP_DTYPE_F32, 2, (int64_t[]){32, 4}, v, &err) ||
        (c < 2 && vkp_safetensors_writer_add_f32(w, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.alpha",
                                                 VKP_DTYPE_F32, 0, (int64_t[]){1}, &al, &err)) ||
        (c == 2 && vkp_safetensors_writer_set_metadata(w, "lora_adapter_metadata", "{\"unet.lora_alpha\": 1e300}", &err)) ||
        vkp_safetensors_writer_save(w, path, &err))
      fail_msg("%s", err.msg);
    vkp_safetensors_writer_free(w);
    m = fixture_model();
    a = (vkp_adapter *)1;
    assert_int_equal(vkp_adapter_read(m, path, "diffusers", NULL, &a), VKP_ERR_FORMAT);
    const char *msg = vkp_ctx_error(ctx);
    printf("  %s\n", msg);
    assert_null(a);
    assert_non_null(strstr(msg, "is not a finite number"));
    assert_non_null(strstr(msg, "attn1.to_q"));
    vkp_model_free(m);
  }
  // kohya LoKr: lokr_w1_a (16384, 1) @ lokr_w1_b (1, 16384) is a 1 GiB product from a 128 KiB file
  // for a 32 x 32 module; the factors' shapes are checked against the module before it is formed.
  const kt lokr[] = {{Q ".lokr_w1_a", VKP_DTYPE_F32, 2, {16384, 1}}, {Q ".lokr_w1_b", VKP_DTYPE_F32, 2, {1, 16384}},
                     {Q ".lokr_w2", VKP_DTYPE_F32, 2, {4, 4}}};
  write_file(path, lokr, 3);
  m = fixture_model();
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  a = (vkp_adapter *)1;
  assert_int_equal(vkp_adapter_load(m, path, &a), VKP_ERR_SHAPE);
  getrusage(RUSAGE_SELF, &r1);
  const char *msg = vkp_ctx_error(ctx);
  printf("  LoKr 16384 x 1 @ 1 x 16384 -> %s (peak memory +%ld KiB)\n", msg, r1.ru_maxrss - r0.ru_maxrss);
  assert_null(a);
  assert_non_null(strstr(msg, Q ".lokr_w1_a' has shape [16384, 1]"));
  assert_true(r1.ru_maxrss - r0.ru_maxrss < 256 * 1024);   // KiB: the product (1 GiB) is never made
  vkp_model_free(m);
}

static void test_registry(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  assert_non_null(vkp_adapter_format_find("peft"));
  assert_ptr_equal(vkp_adapter_format_find("peft"), &vkp_adapter_format_peft);
  assert_non_null(vkp_adapter_format_find("kohya"));
  assert_non_null(vkp_adapter_format_find("diffusers"));
  char dir[300];
  vkp_test_dir_path(state, "nothing_here", dir, sizeof dir);
  assert_null(vkp_adapter_format_detect(dir));
  vkp_model *m;
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
  vkp_adapter *a = (vkp_adapter *)1;
  assert_int_equal(vkp_adapter_read(m, dir, NULL, NULL, &a), VKP_ERR_FORMAT);
  printf("  %s\n", vkp_ctx_error(ctx));
  assert_null(a);
  assert_int_equal(vkp_adapter_read(m, dir, "lycoris", NULL, &a), VKP_ERR_INVALID);
  printf("  %s\n", vkp_ctx_error(ctx));
  vkp_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_registry, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_kohya_fixture, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_fixture_unet),
      cmocka_unit_test_setup_teardown(test_round_trips, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_mixed_ranks_and_bad_files, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_hostile_files, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
