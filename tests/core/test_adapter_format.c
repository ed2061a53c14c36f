// test_adapter_format.c — the adapter format interface (vkp_adapter_format.h):
//   * the registry: find, detect (an HF PEFT folder), unknown formats and paths;
//   * a kohya reader written against the interface only, as the next format will be: the fixture
//     unet/lora/kohya.safetensors (`lora_unet_<module_with_underscores>.lora_down.weight`,
//     `.lora_up.weight`, `.alpha`) read onto a model whose modules carry diffusers names, by
//     spelling each module name the kohya way (never parsing the underscores back); its values
//     must equal the diffusers/PEFT file of the same LoRA, alpha / r must become each slot's
//     scaling, and written back as an HF PEFT folder it loads again onto the same modules.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_adapter_format.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

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

// ---- a kohya reader on the interface ------------------------------------------------------------

// kohya's spelling: prefix + the module name with '.' -> '_'.
static void kohya_spell(void *user, const char *name, char *out, size_t cap) {
  size_t o = (size_t)snprintf(out, cap, "%s", (const char *)user);
  for (const char *c = name; *c && o + 1 < cap; c++) out[o++] = *c == '.' ? '_' : *c;
  out[o < cap ? o : cap - 1] = '\0';
}

typedef struct kohya_bind {
  const vkp_model *m;
  const char *prefix;
} kohya_bind;

// "<kohya module>.lora_down.weight" -> the slot's lora_A, ".lora_up.weight" -> lora_B, ".alpha" read
// separately.
static vkp_adapter_key_kind kohya_key(void *user, const vkp_adapter *a, const char *key, vkp_param **out) {
  kohya_bind *kb = user;
  static const char *const map[2][2] = {{".lora_down.weight", "lora_A.weight"}, {".lora_up.weight", "lora_B.weight"}};
  size_t n = strlen(key);
  if (n > 6 && !strcmp(key + n - 6, ".alpha")) return VKP_ADAPTER_KEY_SKIP;
  for (int k = 0; k < 2; k++) {
    size_t ns = strlen(map[k][0]);
    if (n <= ns || strcmp(key + n - ns, map[k][0])) continue;
    char stem[300];
    snprintf(stem, sizeof stem, "%.*s", (int)(n - ns), key);
    vkp_module *mod = vkp_adapter_find_module(kb->m, stem, kohya_spell, (void *)kb->prefix);
    for (int i = 0; mod && i < vkp_adapter_tensor_count(a); i++) {
      vkp_adapter_tensor t = vkp_adapter_tensor_at(a, i);
      if (t.kind == VKP_ADAPTER_TENSOR_SLOT && t.module == mod && !strcmp(t.suffix, map[k][1])) {
        *out = t.param;
        return VKP_ADAPTER_KEY_PARAM;
      }
    }
  }
  return VKP_ADAPTER_KEY_UNKNOWN;
}

static vkp_status kohya_read(vkp_model *m, const char *path, const char *prefix, vkp_adapter **out) {
  vkp_ctx *ctx = m->ctx;
  vkp_error err = {0};
  vkp_safetensors *sf = NULL;
  if (vkp_safetensors_open(path, &sf, &err)) return vkp_error_set(vkp_ctx_err(ctx), err.status, "%s", err.msg);
  vkp_module *mods[MAXMOD];
  float alpha[MAXMOD];
  int nm = 0, r = 0;
  vkp_status st = VKP_OK;
  for (size_t i = 0; i < vkp_safetensors_count(sf) && !st; i++) {   // the modules and their alphas
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    const char *down = ".lora_down.weight";
    size_t n = strlen(t->name), nd = strlen(down);
    if (n <= nd || strcmp(t->name + n - nd, down)) continue;
    char stem[300], akey[320];
    snprintf(stem, sizeof stem, "%.*s", (int)(n - nd), t->name);
    vkp_module *mod = vkp_adapter_find_module(m, stem, kohya_spell, (void *)prefix);
    if (!mod || nm == MAXMOD) {
      st = vkp_error_set(vkp_ctx_err(ctx), VKP_ERR_SHAPE, "%s: '%s' names no module of the model", path, stem);
      break;
    }
    r = (int)t->shape[0];
    snprintf(akey, sizeof akey, "%s.alpha", stem);
    const vkp_st_tensor *a = vkp_safetensors_find(sf, akey);
    float av = (float)r;
    if (a) vkp_convert_to_f32(a->dtype, a->data, &av, 1);
    alpha[nm] = av;
    mods[nm++] = mod;
  }
  vkp_adapter *ad = NULL;
  vkp_peft_config cfg;
  vkp_peft_config_init(&cfg, VKP_PEFT_LORA);
  cfg.r = r, cfg.alpha = (float)r;
  if (!st) st = vkp_adapter_attach_modules(m, &cfg, mods, nm, 0, &ad);
  for (int s = 0; !st && s < vkp_adapter_slot_count(ad); s++)   // per-module alpha / r
    for (int k = 0; k < nm; k++)
      if (vkp_adapter_slot_module(ad, s) == mods[k]) vkp_adapter_slot_set_scaling(ad, s, alpha[k] / (float)r);
  kohya_bind kb = {m, prefix};
  if (!st) st = vkp_adapter_load_tensors(m, ad, sf, path, kohya_key, &kb);
  if (st && ad) vkp_adapter_discard(m, ad), ad = NULL;
  vkp_safetensors_free(sf);
  *out = ad;
  return st;
}

// ---- tests -----------------------------------------------------------------------------------------

static void test_kohya_through_the_interface(void **state) {
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
  VKP_ASSERT_OK(ctx, kohya_read(m, kpath, "lora_unet_", &a));
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

static void test_registry(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  assert_non_null(vkp_adapter_format_find("peft"));
  assert_ptr_equal(vkp_adapter_format_find("peft"), &vkp_adapter_format_peft);
  assert_null(vkp_adapter_format_find("kohya"));   // not yet
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
      cmocka_unit_test_setup_teardown(test_kohya_through_the_interface, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
