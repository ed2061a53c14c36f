// test_peft_roundtrip.c — the PEFT layer on a small random ViT:
//   * save -> load into a fresh model gives the same logits, for every method and a hybrid;
//   * merge / unmerge equivalence for the weight-level methods; additive methods refuse to merge;
//   * per-adapter scales and enable/disable against a float64 host merge of two LoRAs;
//   * the transformers-4 key spelling loads like the transformers-5 one (fixture adapter);
//   * bad adapter folders fail with a clear message and leave the model as it was.
// Error measure: max |got - want| / max |want| over the logits ("rel" below).
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "vkp_parity.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"
#include "vkp_vit.h"

#define NB 2        // batch
#define IMG 16
#define NLAB 3
#define NPIX (NB * 3 * IMG * IMG)
#define NLOG (NB * NLAB)

static char g_dir[256];            // temp root (removed at the end)
static char g_base[300];           // the small base ViT, saved
static float g_pixels[NPIX];
static float g_base_logits[NLOG];

// ---- helpers ----------------------------------------------------------------------------------

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) fail_msg("cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot read %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *t = malloc((size_t)n + 1);
  if (fread(t, 1, (size_t)n, f) != (size_t)n) fail_msg("short read %s", path);
  t[n] = 0;
  fclose(f);
  return t;
}

static void make_dir(char *out, size_t cap, const char *leaf) {
  snprintf(out, cap, "%s/%s", g_dir, leaf);
  if (mkdir(out, 0755) && errno != EEXIST) fail_msg("mkdir %s", out);
}

// Logits of `v` on `pixels` (batch n, the model's image size).
static void vit_logits(vkp_vit *v, const float *pixels, int n, float *logits) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  int S = v->cfg.image_size;
  vkp_tensor *px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){n, v->cfg.num_channels, S, S});
  vkp_vit_outputs out;
  if (vkp_vit_forward(v, g, px, &out)) fail_msg("forward: %s", vkp_graph_error(g));
  vkp_graph_output(g, out.logits);
  if (vkp_graph_compile(g)) fail_msg("compile: %s / %s", vkp_graph_error(g), vkp_ctx_error(ctx));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, px, pixels, (uint64_t)n * v->cfg.num_channels * S * S * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.logits, logits, (uint64_t)n * v->cfg.num_labels * 4));
  vkp_graph_free(g);
}

static vkp_vit *load_vit(const char *dir) {
  vkp_vit *v = NULL;
  vkp_error err = {0};
  if (vkp_vit_load(vkp_test_ctx(), dir, 0, &v, &err)) fail_msg("vkp_vit_load %s: %s", dir, err.msg);
  return v;
}

// Adds u * bound (u uniform in [-1, 1)) to every element of p.
static void perturb(vkp_model *m, vkp_param *p, float bound, vkp_rng *r) {
  int64_t n = vkp_param_numel(p);
  float *v = malloc((size_t)n * sizeof *v);
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, p, v));
  for (int64_t i = 0; i < n; i++) v[i] += (float)((2 * vkp_rng_uniform(r) - 1) * bound);
  VKP_ASSERT_OK(m->ctx, vkp_param_write_f32(m, p, v));
  free(v);
}

static void perturb_trainable(vkp_model *m, uint64_t seed) {
  vkp_rng r = vkp_rng_new(seed);
  vkp_param **tp;
  int nt = vkp_model_trainable(m, &tp);
  for (int i = 0; i < nt; i++) perturb(m, tp[i], 0.1f, &r);
  free(tp);
}

// Host copies of every parameter, to check what changed.
typedef struct snapshot {
  int n;
  vkp_param *p[256];
  float *v[256];
} snapshot;

static void snap_take(vkp_model *m, snapshot *s, bool base_only) {
  s->n = 0;
  for (int i = 0; i < m->nparams; i++) {
    vkp_param *p = m->params[i];
    if (base_only && p->adapter) continue;
    if (s->n == 256) fail_msg("snapshot: too many parameters");
    s->p[s->n] = p;
    s->v[s->n] = malloc((size_t)vkp_param_numel(p) * 4);
    VKP_ASSERT_OK(m->ctx, vkp_buffer_read(p->buf, 0, s->v[s->n], (uint64_t)vkp_param_numel(p) * 4));
    s->n++;
  }
}

// Largest relative change of any snapshot parameter (max |now - then| / max |then| per tensor).
static double snap_max_change(vkp_model *m, const snapshot *s, const char **which) {
  double worst = 0;
  for (int i = 0; i < s->n; i++) {
    int64_t n = vkp_param_numel(s->p[i]);
    float *now = malloc((size_t)n * 4);
    VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, s->p[i], now));
    double e = s->p[i]->dtype == VKP_DTYPE_I32 ? (double)memcmp(now, s->v[i], (size_t)n * 4) != 0
                                                 : vkp_rel_err(now, s->v[i], (size_t)n);
    if (!(e <= worst)) worst = e, *which = s->p[i]->name;
    free(now);
  }
  return worst;
}

static void snap_free(snapshot *s) {
  for (int i = 0; i < s->n; i++) free(s->v[i]);
  s->n = 0;
}

static void set_targets(vkp_peft_config *c, const char *a, const char *b, const char *d) {
  const char *t[3] = {a, b, d};
  for (int i = 0; i < 3; i++)
    if (t[i]) c->target_modules[c->n_target_modules++] = strdup(t[i]);
}

// The adapter configurations under test, by label.
static void make_config(const char *label, vkp_peft_config *c) {
  if (!strcmp(label, "lora") || !strcmp(label, "rslora") || !strcmp(label, "dora")) {
    vkp_peft_config_init(c, VKP_PEFT_LORA);
    c->r = 4, c->alpha = 8;
    c->use_rslora = !strcmp(label, "rslora");
    c->use_dora = !strcmp(label, "dora");
    set_targets(c, "query", "value", NULL);
  } else if (!strcmp(label, "loha")) {
    vkp_peft_config_init(c, VKP_PEFT_LOHA);
    c->r = 4, c->alpha = 4;
    set_targets(c, "query", "value", "fc1");
  } else if (!strcmp(label, "lokr")) {
    vkp_peft_config_init(c, VKP_PEFT_LOKR);
    c->r = 4, c->alpha = 8;
    set_targets(c, "query", "value", "fc2");
    c->modules_to_save[c->n_modules_to_save++] = strdup("classifier");
  } else if (!strcmp(label, "ia3")) {
    vkp_peft_config_init(c, VKP_PEFT_IA3);
    set_targets(c, "key", "value", "fc2");
    c->feedforward_modules[c->n_feedforward_modules++] = strdup("fc2");
  } else if (!strcmp(label, "vera")) {
    vkp_peft_config_init(c, VKP_PEFT_VERA);
    c->r = 8, c->projection_seed = 5;
    set_targets(c, "query", "value", "fc1");   // fc1 is 64 x 32: the shared projections are sliced
  } else if (!strcmp(label, "houlsby") || !strcmp(label, "pfeiffer")) {
    vkp_peft_config_init(c, VKP_PEFT_BOTTLENECK);
    c->bottleneck = 8;
    c->pfeiffer = !strcmp(label, "pfeiffer");
  } else if (!strcmp(label, "adaptformer")) {
    vkp_peft_config_init(c, VKP_PEFT_ADAPTFORMER);
    c->bottleneck = 8;
  } else if (!strcmp(label, "vpt_shallow") || !strcmp(label, "vpt_deep")) {
    vkp_peft_config_init(c, VKP_PEFT_VPT);
    c->n_tokens = 3;
    c->deep = !strcmp(label, "vpt_deep");
  } else if (!strcmp(label, "prefix")) {
    vkp_peft_config_init(c, VKP_PEFT_PREFIX);
    c->n_tokens = 3;
  } else if (!strcmp(label, "bitfit")) {
    vkp_peft_config_init(c, VKP_PEFT_BITFIT);
  } else if (!strcmp(label, "ln_tuning")) {
    vkp_peft_config_init(c, VKP_PEFT_LN_TUNING);
  } else if (!strcmp(label, "oft") || !strcmp(label, "coft")) {
    vkp_peft_config_init(c, VKP_PEFT_OFT);
    c->oft_block_size = 8;
    c->coft = !strcmp(label, "coft"), c->eps = 0.5f;
    c->use_cayley_neumann = !c->coft;   // COFT with the exact Cayley transform
    set_targets(c, "query", "value", "fc1");
  } else if (!strcmp(label, "masked_random") || !strcmp(label, "masked_magnitude")) {
    vkp_peft_config_init(c, VKP_PEFT_MASKED);
    c->density = 0.1f;
    c->mask = !strcmp(label, "masked_random") ? VKP_MASK_RANDOM : VKP_MASK_MAGNITUDE;
    set_targets(c, "query", "value", "fc1");
  } else {
    fail_msg("unknown case %s", label);
  }
  c->init_weights = false;   // non-zero adapters: outputs change
}

// ---- fixture: a small random ViT with weights of "pretrained" size ----------------------------

static int group_setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/vkp_peft_rt_XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  vkp_vit_config c;
  vkp_vit_config_default(&c);
  c.image_size = IMG, c.patch_size = 4, c.hidden_size = 32, c.num_hidden_layers = 2, c.num_attention_heads = 4;
  c.intermediate_size = 64, c.num_labels = NLAB, c.layer_norm_eps = 1e-6f;
  for (int i = 0; i < NLAB; i++) snprintf(c.labels[i], sizeof c.labels[i], "class_%d", i);
  vkp_vit *v;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_vit_new(vkp_test_ctx(), &c, 7, &v));
  // transformers' init (std 0.02) makes nearly constant features; use unit-variance layers.
  vkp_rng r = vkp_rng_new(11);
  vkp_model *m = v->model;
  for (int i = 0; i < m->nparams; i++) {
    vkp_param *p = m->params[i];
    const vkp_module *mod = p->module;
    int64_t n = vkp_param_numel(p);
    float *x = malloc((size_t)n * 4);
    bool norm = mod && mod->kind == VKP_MODULE_LAYER_NORM, bias = mod && p == mod->bias;
    double bound = bias || norm ? 0.1 : mod ? sqrt(3.0 / (double)(n / p->shape[0])) : 0.5;
    for (int64_t k = 0; k < n; k++) x[k] = (float)((norm && !bias ? 1 : 0) + (2 * vkp_rng_uniform(&r) - 1) * bound);
    VKP_ASSERT_OK(m->ctx, vkp_param_write_f32(m, p, x));
    free(x);
  }
  snprintf(g_base, sizeof g_base, "%s/base", g_dir);
  vkp_error err = {0};
  if (vkp_vit_save(v, g_base, &err)) fail_msg("save base: %s", err.msg);
  vkp_vit_free(v);
  vkp_rng_uniform_fill(&r, g_pixels, NPIX, -1, 1);
  v = load_vit(g_base);
  vit_logits(v, g_pixels, NB, g_base_logits);
  vkp_vit_free(v);
  return 0;
}

static int group_teardown(void **state) {
  if (g_dir[0]) nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return vkp_test_teardown(state);
}

// ---- 1. save -> load ----------------------------------------------------------------------------

static void roundtrip(const char *const *labels, int n) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *va = load_vit(g_base);
  vkp_adapter *ad[4];
  char name[64] = "";
  for (int i = 0; i < n; i++) {
    vkp_peft_config c;
    make_config(labels[i], &c);
    if (n > 1) snprintf(c.name, sizeof c.name, "%s", labels[i]);   // hybrid: named adapters
    VKP_ASSERT_OK(ctx, vkp_peft_attach(va->model, &c, 100 + (uint64_t)i, &ad[i]));
    vkp_peft_config_clear(&c);
    strncat(name, labels[i], sizeof name - strlen(name) - 2);
    if (i + 1 < n) strcat(name, "+");
  }
  perturb_trainable(va->model, 3);
  float la[NLOG], lb[NLOG];
  vit_logits(va, g_pixels, NB, la);
  double changed = vkp_rel_err(la, g_base_logits, NLOG);
  char dirs[4][400];
  for (int i = 0; i < n; i++) {
    char leaf[80];
    snprintf(leaf, sizeof leaf, "rt_%s", labels[i]);
    make_dir(dirs[i], sizeof dirs[i], leaf);
    VKP_ASSERT_OK(ctx, vkp_peft_save(va->model, ad[i], dirs[i]));
  }
  if (!strcmp(labels[0], "ln_tuning")) {   // peft's LN-tuning layout, in the current spelling
    char path[500];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dirs[0]);
    vkp_safetensors *sf;
    vkp_error err = {0};
    if (vkp_safetensors_open(path, &sf, &err)) fail_msg("%s", err.msg);
    assert_non_null(vkp_safetensors_find(sf, "base_model.model.vit.layers.1.layernorm_before.ln_tuning_layers.weight"));
    assert_non_null(vkp_safetensors_find(sf, "base_model.model.vit.layernorm.ln_tuning_layers.bias"));
    assert_int_equal(vkp_safetensors_count(sf), 10);
    vkp_safetensors_free(sf);
  }
  vkp_vit *vb = load_vit(g_base);
  for (int i = 0; i < n; i++) {
    vkp_adapter *b;
    VKP_ASSERT_OK(ctx, vkp_peft_load(vb->model, dirs[i], &b));
    const vkp_peft_config *ca = vkp_adapter_config(ad[i]), *cb = vkp_adapter_config(b);
    assert_int_equal(ca->method, cb->method);
    assert_string_equal(ca->name, cb->name);
  }
  vit_logits(vb, g_pixels, NB, lb);
  double e = vkp_rel_err(lb, la, NLOG);
  vkp_peft_report ra = vkp_peft_get_report(va->model), rb = vkp_peft_get_report(vb->model);
  printf("  %-26s trainable %6lld (adapter %6lld)  |adapted - base| %.3f  save/load rel %.1e\n", name,
         (long long)ra.trainable_params, (long long)ra.adapter_params, changed, e);
  if (!(changed > 1e-3)) fail_msg("%s: the adapter does not change the logits (rel %.2e)", name, changed);
  if (!(e < 1e-6)) fail_msg("%s: logits after save/load differ (rel %.3e)", name, e);
  assert_int_equal(ra.trainable_params, rb.trainable_params);
  assert_int_equal(ra.adapter_params, rb.adapter_params);
  assert_int_equal(ra.total_params, rb.total_params);
  vkp_vit_free(va);
  vkp_vit_free(vb);
}

static void roundtrip1(const char *label) { roundtrip(&label, 1); }

static void test_roundtrip_lora(void **s) { (void)s; roundtrip1("lora"); }
static void test_roundtrip_rslora(void **s) { (void)s; roundtrip1("rslora"); }
static void test_roundtrip_dora(void **s) { (void)s; roundtrip1("dora"); }
static void test_roundtrip_loha(void **s) { (void)s; roundtrip1("loha"); }
static void test_roundtrip_lokr(void **s) { (void)s; roundtrip1("lokr"); }
static void test_roundtrip_ia3(void **s) { (void)s; roundtrip1("ia3"); }
static void test_roundtrip_vera(void **s) { (void)s; roundtrip1("vera"); }
static void test_roundtrip_houlsby(void **s) { (void)s; roundtrip1("houlsby"); }
static void test_roundtrip_pfeiffer(void **s) { (void)s; roundtrip1("pfeiffer"); }
static void test_roundtrip_adaptformer(void **s) { (void)s; roundtrip1("adaptformer"); }
static void test_roundtrip_vpt_shallow(void **s) { (void)s; roundtrip1("vpt_shallow"); }
static void test_roundtrip_vpt_deep(void **s) { (void)s; roundtrip1("vpt_deep"); }
static void test_roundtrip_prefix(void **s) { (void)s; roundtrip1("prefix"); }
static void test_roundtrip_bitfit(void **s) { (void)s; roundtrip1("bitfit"); }
static void test_roundtrip_ln_tuning(void **s) { (void)s; roundtrip1("ln_tuning"); }
static void test_roundtrip_masked_random(void **s) { (void)s; roundtrip1("masked_random"); }
static void test_roundtrip_masked_magnitude(void **s) { (void)s; roundtrip1("masked_magnitude"); }
static void test_roundtrip_oft(void **s) { (void)s; roundtrip1("oft"); }
static void test_roundtrip_coft(void **s) { (void)s; roundtrip1("coft"); }
static void test_roundtrip_hybrid(void **s) {
  (void)s;
  const char *labels[3] = {"lora", "bitfit", "vpt_deep"};
  roundtrip(labels, 3);
}

// ---- 2. merge / unmerge -------------------------------------------------------------------------

static void merge_case(const char *label) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *v = load_vit(g_base);
  vkp_model *m = v->model;
  vkp_peft_config c;
  make_config(label, &c);
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 9, &a));
  vkp_peft_config_clear(&c);
  snapshot base;
  snap_take(m, &base, true);
  float y1[NLOG], y2[NLOG], y3[NLOG];
  vit_logits(v, g_pixels, NB, y1);
  if (!(vkp_rel_err(y1, g_base_logits, NLOG) > 1e-3)) fail_msg("%s: adapter does not change the logits", label);
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, a));
  assert_true(vkp_adapter_is_merged(a));
  assert_int_equal(vkp_adapter_merge(m, a), VKP_ERR_INVALID);   // twice
  const char *which = "";
  double moved = snap_max_change(m, &base, &which);
  vit_logits(v, g_pixels, NB, y2);
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, a));
  assert_false(vkp_adapter_is_merged(a));
  assert_int_equal(vkp_adapter_unmerge(m, a), VKP_ERR_INVALID);
  vit_logits(v, g_pixels, NB, y3);
  double restore = snap_max_change(m, &base, &which);
  double e_merged = vkp_rel_err(y2, y1, NLOG), e_unmerged = vkp_rel_err(y3, y1, NLOG);
  printf("  %-18s merged vs unmerged rel %.1e, after unmerge %.1e, weights restored to %.1e (worst %s)\n", label,
         e_merged, e_unmerged, restore, which);
  if (!(moved > 1e-4)) fail_msg("%s: merge did not change the base weights", label);
  if (!(e_merged < 1e-5)) fail_msg("%s: merged logits differ from unmerged (rel %.3e)", label, e_merged);
  if (!(e_unmerged < 1e-5)) fail_msg("%s: logits after unmerge differ (rel %.3e)", label, e_unmerged);
  if (!(restore < 1e-6)) fail_msg("%s: unmerge leaves %s off by rel %.3e", label, which, restore);
  // At a user scale of 0.5: merged == unmerged, and unmerge restores the weights even when the
  // scale changed while merged. (IA)^3 refuses to merge a scaled adapter.
  vkp_adapter_set_scale(a, 0.5f);
  vit_logits(v, g_pixels, NB, y1);
  if (!(vkp_rel_err(y1, y3, NLOG) > 1e-4)) fail_msg("%s: scale 0.5 changes nothing", label);
  vkp_status st = vkp_adapter_merge(m, a);
  if (!strcmp(label, "ia3")) {
    assert_int_equal(st, VKP_ERR_UNSUPPORTED);
  } else {
    VKP_ASSERT_OK(ctx, st);
    vit_logits(v, g_pixels, NB, y2);
    vkp_adapter_set_scale(a, 2.0f);
    VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, a));
    restore = snap_max_change(m, &base, &which);
    e_merged = vkp_rel_err(y2, y1, NLOG);
    printf("  %-18s scale 0.5: merged vs unmerged rel %.1e; unmerge after set_scale(2): weights to %.1e\n", label,
           e_merged, restore);
    if (!(e_merged < 1e-5)) fail_msg("%s: at scale 0.5 merged logits differ from unmerged (rel %.3e)", label, e_merged);
    if (!(restore < 1e-6)) fail_msg("%s: unmerge after a scale change leaves %s off by rel %.3e", label, which, restore);
  }
  snap_free(&base);
  vkp_vit_free(v);
}

static void test_merge_lora(void **s) { (void)s; merge_case("lora"); }
static void test_merge_rslora(void **s) { (void)s; merge_case("rslora"); }
static void test_merge_dora(void **s) { (void)s; merge_case("dora"); }
static void test_merge_loha(void **s) { (void)s; merge_case("loha"); }
static void test_merge_lokr(void **s) { (void)s; merge_case("lokr"); }
static void test_merge_ia3(void **s) { (void)s; merge_case("ia3"); }
static void test_merge_vera(void **s) { (void)s; merge_case("vera"); }
static void test_merge_masked(void **s) { (void)s; merge_case("masked_random"); }
static void test_merge_oft(void **s) { (void)s; merge_case("oft"); }
static void test_merge_coft(void **s) { (void)s; merge_case("coft"); }

static void test_merge_additive_unsupported(void **s) {
  (void)s;
  vkp_ctx *ctx = vkp_test_ctx();
  const char *labels[] = {"houlsby", "pfeiffer", "adaptformer", "vpt_shallow", "vpt_deep", "prefix"};
  for (size_t i = 0; i < sizeof labels / sizeof *labels; i++) {
    vkp_vit *v = load_vit(g_base);
    vkp_peft_config c;
    make_config(labels[i], &c);
    vkp_adapter *a;
    VKP_ASSERT_OK(ctx, vkp_peft_attach(v->model, &c, 1, &a));
    vkp_peft_config_clear(&c);
    vkp_status st = vkp_adapter_merge(v->model, a);
    printf("  %-12s merge -> %s: %s\n", labels[i], vkp_status_name(st), vkp_ctx_error(ctx));
    assert_int_equal(st, VKP_ERR_UNSUPPORTED);
    assert_non_null(strstr(vkp_ctx_error(ctx), "cannot be merged"));
    assert_false(vkp_adapter_is_merged(a));
    vkp_vit_free(v);
  }
}

// ---- per-adapter scales, enable/disable: two LoRAs vs a float64 host merge ---------------------

static float *read_named(vkp_model *m, const char *name, int64_t *n) {
  vkp_param *p = vkp_model_find_param(m, name);
  if (!p) fail_msg("no parameter %s", name);
  *n = vkp_param_numel(p);
  float *v = malloc((size_t)*n * 4);
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, p, v));
  return v;
}

// Logits of the base model with W += sum_k scale[k] * (alpha/r) * B_k A_k on query and value of
// every layer, for the LoRAs "a" and "b" of `src` (computed on the host in float64 from a fresh
// copy of the base).
static void host_merged_logits(vkp_vit *src, const float scale[2], float *logits) {
  vkp_vit *dst = load_vit(g_base);
  const char *names[2] = {"a", "b"};
  for (int l = 0; l < src->cfg.num_hidden_layers; l++) {
    vkp_module *mods[2] = {src->layers[l].query, src->layers[l].value};
    for (int q = 0; q < 2; q++) {
      char pn[300];
      int64_t nw, na, nb;
      snprintf(pn, sizeof pn, "%s.weight", mods[q]->name);
      float *w = read_named(dst->model, pn, &nw);   // the base weight (src may hold a merged one)
      double *acc = malloc((size_t)nw * sizeof *acc);
      for (int64_t i = 0; i < nw; i++) acc[i] = w[i];
      int64_t out = mods[q]->out, in = mods[q]->in;
      for (int k = 0; k < 2; k++) {
        snprintf(pn, sizeof pn, "%s.%s.lora_A.weight", mods[q]->alias, names[k]);
        float *A = read_named(src->model, pn, &na);
        snprintf(pn, sizeof pn, "%s.%s.lora_B.weight", mods[q]->alias, names[k]);
        float *B = read_named(src->model, pn, &nb);
        int64_t r = na / in;
        double sc = scale[k] * 8.0 / (double)r;   // alpha 8
        for (int64_t i = 0; i < out; i++)
          for (int64_t j = 0; j < in; j++) {
            double d = 0;
            for (int64_t t = 0; t < r; t++) d += (double)B[i * r + t] * A[t * in + j];
            acc[i * in + j] += sc * d;
          }
        free(A), free(B);
      }
      for (int64_t i = 0; i < nw; i++) w[i] = (float)acc[i];
      snprintf(pn, sizeof pn, "%s.weight", mods[q]->name);
      VKP_ASSERT_OK(dst->model->ctx, vkp_param_write_f32(dst->model, vkp_model_find_param(dst->model, pn), w));
      free(w), free(acc);
    }
  }
  vit_logits(dst, g_pixels, NB, logits);
  vkp_vit_free(dst);
}

static void expect_logits(const char *what, const float *got, const float *want, double tol) {
  double e = vkp_rel_err(got, want, NLOG);
  printf("  %-52s rel %.1e\n", what, e);
  if (!(e < tol)) fail_msg("%s: rel %.3e exceeds %.0e", what, e, tol);
}

static void test_scales_and_enable(void **s) {
  (void)s;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *v = load_vit(g_base);
  vkp_model *m = v->model;
  vkp_adapter *ad[2];
  for (int k = 0; k < 2; k++) {
    vkp_peft_config c;
    make_config("lora", &c);
    snprintf(c.name, sizeof c.name, "%s", k ? "b" : "a");
    VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 20 + (uint64_t)k, &ad[k]));
    vkp_peft_config_clear(&c);
  }
  assert_int_equal(vkp_peft_count(m), 2);
  snapshot base;
  snap_take(m, &base, true);
  float y[NLOG], ref[NLOG], y0[NLOG];
  const float sc[2] = {0.5f, 1.5f};
  vkp_adapter_set_scale(ad[0], sc[0]);
  vkp_adapter_set_scale(ad[1], sc[1]);
  vit_logits(v, g_pixels, NB, y);
  host_merged_logits(v, sc, ref);
  expect_logits("scales 0.5, 1.5 vs host float64 merge", y, ref, 1e-5);
  if (!(vkp_rel_err(y, g_base_logits, NLOG) > 1e-3)) fail_msg("the adapters do not change the logits");
  // Merging with the scales set gives the same logits; unmerging restores the base weights.
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, ad[0]));
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, ad[1]));
  vit_logits(v, g_pixels, NB, y0);
  expect_logits("both merged with scales vs host merge", y0, ref, 1e-5);
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, ad[1]));
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, ad[0]));
  const char *which = "";
  double restore = snap_max_change(m, &base, &which);
  printf("  weights after unmerging both: rel %.1e (worst %s)\n", restore, which);
  if (!(restore < 1e-6)) fail_msg("unmerge leaves %s off by %.3e", which, restore);
  // One adapter disabled: only the other one counts.
  vkp_adapter_set_enabled(ad[0], false);
  vit_logits(v, g_pixels, NB, y);
  host_merged_logits(v, (const float[2]){0.0f, 1.5f}, ref);
  expect_logits("a disabled, b at 1.5 vs host merge of b", y, ref, 1e-5);
  // Both disabled, and both at scale 0: the base model.
  vkp_adapter_set_enabled(ad[1], false);
  vit_logits(v, g_pixels, NB, y);
  expect_logits("both disabled vs base (after merge cycles)", y, g_base_logits, 1e-6);
  vkp_adapter_set_enabled(ad[0], true);
  vkp_adapter_set_enabled(ad[1], true);
  vkp_adapter_set_scale(ad[0], 0.0f);
  vkp_adapter_set_scale(ad[1], 0.0f);
  vit_logits(v, g_pixels, NB, y);
  expect_logits("both at scale 0 vs base", y, g_base_logits, 1e-6);
  // Scale 1 again: the host merge at (1, 1); a single adapter merged at scale 2 == host at 2.
  vkp_adapter_set_scale(ad[0], 1.0f);
  vkp_adapter_set_scale(ad[1], 1.0f);
  vit_logits(v, g_pixels, NB, y);
  host_merged_logits(v, (const float[2]){1.0f, 1.0f}, ref);
  expect_logits("scales 1, 1 vs host merge", y, ref, 1e-5);
  vkp_adapter_set_enabled(ad[1], false);
  vkp_adapter_set_scale(ad[0], 2.0f);
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, ad[0]));
  vit_logits(v, g_pixels, NB, y);
  host_merged_logits(v, (const float[2]){2.0f, 0.0f}, ref);
  expect_logits("a merged at scale 2 vs host merge", y, ref, 1e-5);
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, ad[0]));
  restore = snap_max_change(m, &base, &which);
  if (!(restore < 1e-6)) fail_msg("unmerge at scale 2 leaves %s off by %.3e", which, restore);
  snap_free(&base);
  vkp_vit_free(v);
}

// ---- 3. transformers-4 key spelling -------------------------------------------------------------

static void fixture_pixels(float **px, size_t *n) {
  vkp_safetensors *io;
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("vit/io.safetensors"), &io, &err)) fail_msg("%s", err.msg);
  const vkp_st_tensor *t = vkp_safetensors_find(io, "pixel_values");
  if (!t) fail_msg("pixel_values missing");
  *n = vkp_st_tensor_numel(t);
  *px = malloc(*n * 4);
  vkp_convert_to_f32(t->dtype, t->data, *px, *n);
  vkp_safetensors_free(io);
}

// Replaces every occurrence of `from` in s (in place, s has room for 600 chars).
static void replace_all(char *s, const char *from, const char *to) {
  char buf[600], *p;
  while ((p = strstr(s, from))) {
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
    snprintf(s, 600, "%s", buf);
  }
}

// Writes `dir` = the fixture LoRA with every key in the checkpoint (transformers 4) spelling.
static void write_hub_spelling(const char *dir) {
  vkp_error err = {0};
  char path[600];
  snprintf(path, sizeof path, "%s/lora/adapter_model.safetensors", vkp_fixture_path("vit/adapters"));
  vkp_safetensors *sf;
  if (vkp_safetensors_open(path, &sf, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer *w;
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    char name[600];
    snprintf(name, sizeof name, "%s", t->name);
    replace_all(name, "vit.layers.", "vit.encoder.layer.");
    replace_all(name, ".attention.q_proj.", ".attention.attention.query.");
    replace_all(name, ".attention.v_proj.", ".attention.attention.value.");
    if (vkp_safetensors_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, &err)) fail_msg("%s", err.msg);
  }
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_safetensors_free(sf);
  // The config names the targets in the old spelling too.
  snprintf(path, sizeof path, "%s/lora/adapter_config.json", vkp_fixture_path("vit/adapters"));
  char *text = read_text(path);
  cJSON *j = cJSON_Parse(text);
  free(text);
  cJSON *tm = cJSON_CreateArray();
  cJSON_AddItemToArray(tm, cJSON_CreateString("query"));
  cJSON_AddItemToArray(tm, cJSON_CreateString("value"));
  cJSON_ReplaceItemInObjectCaseSensitive(j, "target_modules", tm);
  text = cJSON_Print(j);
  cJSON_Delete(j);
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  write_text(path, text);
  free(text);
}

static void test_transformers4_spelling(void **s) {
  (void)s;
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400], path[700], orig[600];
  make_dir(dir, sizeof dir, "hub_spelling");
  write_hub_spelling(dir);
  float *px;
  size_t np;
  fixture_pixels(&px, &np);
  int n = (int)(np / (3 * 32 * 32));
  float base[16], l5[16], l4[16];
  vkp_vit *v5 = load_vit(vkp_fixture_path("vit/model"));
  int nl = n * v5->cfg.num_labels;
  vit_logits(v5, px, n, base);
  snprintf(orig, sizeof orig, "%s/lora", vkp_fixture_path("vit/adapters"));
  vkp_adapter *a5, *a4;
  VKP_ASSERT_OK(ctx, vkp_peft_load(v5->model, orig, &a5));
  vit_logits(v5, px, n, l5);
  vkp_vit *v4 = load_vit(vkp_fixture_path("vit/model"));
  VKP_ASSERT_OK(ctx, vkp_peft_load(v4->model, dir, &a4));
  vit_logits(v4, px, n, l4);
  double changed = vkp_rel_err(l5, base, (size_t)nl), e = vkp_rel_err(l4, l5, (size_t)nl);
  printf("  fixture LoRA: |adapted - base| %.3f; transformers-4 spelling vs 5: rel %.1e\n", changed, e);
  if (!(changed > 1e-3)) fail_msg("the fixture adapter does not change the logits");
  if (!(e < 1e-6)) fail_msg("transformers-4 spelling gives other logits (rel %.3e)", e);
  // Saving writes the current (transformers 5) spelling: the same keys as the fixture.
  char out[400];
  make_dir(out, sizeof out, "hub_spelling_saved");
  VKP_ASSERT_OK(ctx, vkp_peft_save(v4->model, a4, out));
  vkp_safetensors *sa, *sb;
  vkp_error err = {0};
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", out);
  if (vkp_safetensors_open(path, &sa, &err)) fail_msg("%s", err.msg);
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", orig);
  if (vkp_safetensors_open(path, &sb, &err)) fail_msg("%s", err.msg);
  assert_int_equal(vkp_safetensors_count(sa), vkp_safetensors_count(sb));
  for (size_t i = 0; i < vkp_safetensors_count(sb); i++) {
    const vkp_st_tensor *tb = vkp_safetensors_at(sb, i), *ta = vkp_safetensors_find(sa, tb->name);
    if (!ta) fail_msg("saved adapter lacks '%s'", tb->name);
    assert_int_equal(ta->nbytes, tb->nbytes);
    if (memcmp(ta->data, tb->data, ta->nbytes)) fail_msg("saved '%s' differs from the fixture", tb->name);
  }
  vkp_safetensors_free(sa);
  vkp_safetensors_free(sb);
  free(px);
  vkp_vit_free(v4);
  vkp_vit_free(v5);
}

// ---- 4. bad adapter folders ---------------------------------------------------------------------

typedef struct bad_case {
  const char *label;
  const char *config_edit;      // JSON object merged into the fixture config ("" = none, NULL = no config file)
  const char *raw_config;       // written verbatim instead, if non-NULL
  int tensors;                  // 0: copy the fixture's tensors; 1: none; 2: drop one; 3: add a stray one
  vkp_status want;
  const char *msg[3];           // substrings the message must hold
} bad_case;

static void write_tensors(const char *dir, int mode) {
  char from[600], to[600];
  snprintf(from, sizeof from, "%s/lora/adapter_model.safetensors", vkp_fixture_path("vit/adapters"));
  snprintf(to, sizeof to, "%s/adapter_model.safetensors", dir);
  if (mode == 0) vkp_test_copy_file(from, to);
  if (mode == 0 || mode == 1) return;
  vkp_error err = {0};
  vkp_safetensors *sf;
  vkp_safetensors_writer *w;
  if (vkp_safetensors_open(from, &sf, &err) || vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    if (mode == 2 && strstr(t->name, "layers.1.attention.v_proj.lora_B")) continue;
    if (vkp_safetensors_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err)) fail_msg("%s", err.msg);
  }
  if (mode == 3) {
    float z[4] = {0};
    if (vkp_safetensors_writer_add_f32(w, "base_model.model.vit.layers.0.mlp.fc1.lora_A.weight", VKP_DTYPE_F32, 2,
                                       (int64_t[]){1, 4}, z, &err))
      fail_msg("%s", err.msg);
  }
  if (vkp_safetensors_writer_save(w, to, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_safetensors_free(sf);
}

static void write_config(const char *dir, const bad_case *c) {
  char path[600];
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  if (c->raw_config) write_text(path, c->raw_config);
  if (c->raw_config || !c->config_edit) return;
  char src[600];
  snprintf(src, sizeof src, "%s/lora/adapter_config.json", vkp_fixture_path("vit/adapters"));
  char *text = read_text(src);
  cJSON *j = cJSON_Parse(text), *edit = cJSON_Parse(c->config_edit[0] ? c->config_edit : "{}");
  free(text);
  if (!j || !edit) fail_msg("bad test JSON in %s", c->label);
  for (cJSON *e = edit->child; e; e = e->next) {
    cJSON_DeleteItemFromObjectCaseSensitive(j, e->string);
    cJSON_AddItemToObject(j, e->string, cJSON_Duplicate(e, true));
  }
  text = cJSON_Print(j);
  write_text(path, text);
  free(text);
  cJSON_Delete(j);
  cJSON_Delete(edit);
}

static void test_bad_adapters(void **s) {
  (void)s;
  vkp_ctx *ctx = vkp_test_ctx();
  const bad_case cases[] = {
      {"r_mismatch", "{\"r\": 8}", NULL, 0, VKP_ERR_SHAPE,
       {"adapter_model.safetensors", "lora_A.weight' has shape (4, 48)", "needs (8, 48)"}},
      {"no_target_match", "{\"target_modules\": [\"nonexistent\"]}", NULL, 0, VKP_ERR_NOT_FOUND,
       {"no_target_match", "no module matches target_modules"}},
      {"unknown_key", "{\"lora_fancy\": 1}", NULL, 0, VKP_ERR_INVALID,
       {"adapter_config.json", "unknown key 'lora_fancy' for peft_type LORA"}},
      {"wrong_type", "{\"r\": \"four\"}", NULL, 0, VKP_ERR_INVALID, {"adapter_config.json", "key 'r' must be an integer in [1, 65536], not a string"}},
      {"not_integer", "{\"r\": 2.5}", NULL, 0, VKP_ERR_INVALID, {"adapter_config.json", "key 'r' must be an integer in [1, 65536], not 2.5"}},
      {"targets_type", "{\"target_modules\": 5}", NULL, 0, VKP_ERR_INVALID,
       {"adapter_config.json", "key 'target_modules': expected a list of strings"}},
      {"invalid_json", NULL, "{\"peft_type\": \"LORA\", \"r\": 4,", 0, VKP_ERR_FORMAT,
       {"adapter_config.json", "not valid JSON"}},
      {"no_peft_type", NULL, "{\"r\": 4}", 0, VKP_ERR_INVALID, {"adapter_config.json", "peft_type"}},
      {"missing_tensors_file", "", NULL, 1, VKP_ERR_IO, {"missing_tensors_file/adapter_model.safetensors"}},
      {"missing_config", NULL, NULL, 0, VKP_ERR_IO, {"missing_config/adapter_config.json"}},
      {"fan_in_fan_out", "{\"fan_in_fan_out\": true}", NULL, 0, VKP_ERR_UNSUPPORTED,
       {"adapter_config.json", "key 'fan_in_fan_out': only the default value is supported"}},
      {"rank_pattern", "{\"rank_pattern\": {\"q_proj\": 8}}", NULL, 0, VKP_ERR_UNSUPPORTED,
       {"adapter_config.json", "key 'rank_pattern'"}},
      {"lora_bias", "{\"bias\": \"all\"}", NULL, 0, VKP_ERR_UNSUPPORTED, {"adapter_config.json", "key 'bias'"}},
      {"tensor_missing", "", NULL, 2, VKP_ERR_FORMAT, {"adapter_model.safetensors", "9 of the adapter's 10 tensors"}},
      {"stray_tensor", "", NULL, 3, VKP_ERR_SHAPE,
       {"adapter_model.safetensors", "'base_model.model.vit.layers.0.mlp.fc1.lora_A.weight' does not belong"}},
  };
  vkp_vit *v = load_vit(vkp_fixture_path("vit/model"));
  vkp_model *m = v->model;
  float *px;
  size_t np;
  fixture_pixels(&px, &np);
  int n = (int)(np / (3 * 32 * 32)), nl = n * v->cfg.num_labels;
  float base[16], y[16];
  vit_logits(v, px, n, base);
  snapshot before;
  snap_take(m, &before, false);
  int nparams = m->nparams;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const bad_case *c = &cases[i];
    char dir[400];
    make_dir(dir, sizeof dir, c->label);
    write_config(dir, c);
    write_tensors(dir, c->tensors);
    vkp_adapter *a = (vkp_adapter *)1;
    vkp_status st = vkp_peft_load(m, dir, &a);
    const char *msg = vkp_ctx_error(ctx);
    printf("  %-20s -> %-18s %s\n", c->label, vkp_status_name(st), msg);
    if (st != c->want) fail_msg("%s: status %s, want %s", c->label, vkp_status_name(st), vkp_status_name(c->want));
    assert_null(a);
    for (int k = 0; k < 3 && c->msg[k]; k++)
      if (!strstr(msg, c->msg[k])) fail_msg("%s: message lacks \"%s\"", c->label, c->msg[k]);
    // The model is as it was: no adapter, no new parameter, every value unchanged, same logits.
    assert_int_equal(vkp_peft_count(m), 0);
    assert_int_equal(m->nparams, nparams);
    const char *which = "";
    double moved = snap_max_change(m, &before, &which);
    if (moved != 0) fail_msg("%s: failed load changed %s (rel %.3e)", c->label, which, moved);
    vit_logits(v, px, n, y);
    if (memcmp(y, base, (size_t)nl * 4)) fail_msg("%s: logits changed after a failed load", c->label);
  }
  // A good adapter still loads onto the same model afterwards.
  char good[600];
  snprintf(good, sizeof good, "%s/lora", vkp_fixture_path("vit/adapters"));
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_load(m, good, &a));
  vit_logits(v, px, n, y);
  if (!(vkp_rel_err(y, base, (size_t)nl) > 1e-3)) fail_msg("the good adapter changes nothing");
  snap_free(&before);
  free(px);
  vkp_vit_free(v);
}

// ---- targeting: HF PEFT semantics over both spellings ------------------------------------------

typedef struct target_case {
  const char *desc;
  vkp_peft_method method;
  const char *targets[3];
  const char *regex;
  int layer;                // layers_to_transform (one layer), or -1
  int64_t want;             // trainable parameters (0: VKP_ERR_NOT_FOUND)
} target_case;

static void test_targeting(void **s) {
  (void)s;
  vkp_ctx *ctx = vkp_test_ctx();
  // LoRA r = 4 adds 256 parameters to a 32x32 linear, 384 to fc1 (64x32) / fc2 (32x64), 140 to the classifier.
  const target_case cases[] = {
      {"suffixes query, value", VKP_PEFT_LORA, {"query", "value"}, NULL, -1, 1024},
      {"suffix output.dense (attention's too)", VKP_PEFT_LORA, {"output.dense"}, NULL, -1, 2 * (256 + 384)},
      {"suffix dense", VKP_PEFT_LORA, {"dense"}, NULL, -1, 2 * (256 + 384 + 384)},
      {"alias q_proj", VKP_PEFT_LORA, {"q_proj"}, NULL, -1, 512},
      {"alias path layers.1.mlp.fc1", VKP_PEFT_LORA, {"layers.1.mlp.fc1"}, NULL, -1, 384},
      {"long suffix attention.attention.query", VKP_PEFT_LORA, {"attention.attention.query"}, NULL, -1, 512},
      {"classifier", VKP_PEFT_LORA, {"classifier"}, NULL, -1, 140},
      {"layers_to_transform [1]", VKP_PEFT_LORA, {"query", "value"}, NULL, 1, 512},
      {"regex over names", VKP_PEFT_LORA, {NULL}, "vit\\.encoder\\.layer\\.1\\..*\\.(query|key)", -1, 512},
      {"regex over aliases", VKP_PEFT_LORA, {NULL}, "vit\\.layers\\.0\\.attention\\.[qkv]_proj", -1, 768},
      {"partial word 'uery' matches nothing", VKP_PEFT_LORA, {"uery"}, NULL, -1, 0},
      {"regex must match the whole name", VKP_PEFT_LORA, {NULL}, "query", -1, 0},
      {"bitfit on query biases", VKP_PEFT_BITFIT, {"query"}, NULL, -1, 64},
      {"bitfit by regex over aliases", VKP_PEFT_BITFIT, {NULL}, "vit\\.layers\\.[01]\\.mlp\\.fc1", -1, 128},
      {"ln_tuning of layer 0", VKP_PEFT_LN_TUNING, {NULL}, NULL, 0, 128},
      {"vpt_deep on layer 1 only", VKP_PEFT_VPT, {NULL}, NULL, 1, 10 * 32},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const target_case *t = &cases[i];
    vkp_vit *v = load_vit(g_base);
    vkp_peft_config c;
    vkp_peft_config_init(&c, t->method);
    c.r = 4;
    c.deep = true;
    for (int k = 0; k < 3 && t->targets[k]; k++) c.target_modules[c.n_target_modules++] = strdup(t->targets[k]);
    if (t->regex) c.target_regex = strdup(t->regex);
    if (t->layer >= 0) c.layers_to_transform[c.n_layers_to_transform++] = t->layer;
    vkp_adapter *a = NULL;
    vkp_status st = vkp_peft_attach(v->model, &c, 1, &a);
    vkp_peft_config_clear(&c);
    int64_t got = st ? 0 : vkp_peft_get_report(v->model).trainable_params;
    printf("  %-40s -> %s, %lld trainable\n", t->desc, vkp_status_name(st), (long long)got);
    if (t->want == 0) {
      assert_int_equal(st, VKP_ERR_NOT_FOUND);
      assert_null(a);
      assert_int_equal(vkp_peft_count(v->model), 0);
    } else {
      VKP_ASSERT_OK(ctx, st);
      if (got != t->want) fail_msg("%s: %lld trainable parameters, want %lld", t->desc, (long long)got, (long long)t->want);
    }
    vkp_vit_free(v);
  }
}

// A masked adapter whose index points outside the weight is refused (it would write out of bounds).
static void test_bad_masked_index(void **s) {
  (void)s;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *v = load_vit(g_base);
  vkp_peft_config c;
  make_config("masked_random", &c);
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(v->model, &c, 1, &a));
  vkp_peft_config_clear(&c);
  char dir[400], path[500];
  make_dir(dir, sizeof dir, "masked_bad_index");
  VKP_ASSERT_OK(ctx, vkp_peft_save(v->model, a, dir));
  vkp_vit_free(v);
  // Rewrite the file with one index = numel(weight) (one past the end).
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
  vkp_error err = {0};
  vkp_safetensors *sf;
  vkp_safetensors_writer *w;
  if (vkp_safetensors_open(path, &sf, &err) || vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  int patched = 0;
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    if (strstr(t->name, "layers.1.mlp.fc1.sparse_index")) {
      assert_int_equal(t->dtype, VKP_DTYPE_I32);
      int32_t *idx = malloc(t->nbytes);
      memcpy(idx, t->data, t->nbytes);
      idx[3] = 64 * 32;
      if (vkp_safetensors_writer_add(w, t->name, t->dtype, t->ndim, t->shape, idx, &err)) fail_msg("%s", err.msg);
      free(idx);
      patched++;
    } else if (vkp_safetensors_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err)) {
      fail_msg("%s", err.msg);
    }
  }
  vkp_safetensors_free(sf);
  assert_int_equal(patched, 1);
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  v = load_vit(g_base);
  int nparams = v->model->nparams;
  vkp_status st = vkp_peft_load(v->model, dir, &a);
  printf("  %s: %s\n", vkp_status_name(st), vkp_ctx_error(ctx));
  assert_int_equal(st, VKP_ERR_FORMAT);
  assert_non_null(strstr(vkp_ctx_error(ctx), "sparse_index': index 2048 at [3] is outside the weight (2048 elements)"));
  assert_int_equal(vkp_peft_count(v->model), 0);
  assert_int_equal(v->model->nparams, nparams);
  float y[NLOG];
  vit_logits(v, g_pixels, NB, y);
  if (memcmp(y, g_base_logits, sizeof y)) fail_msg("logits changed after a failed load");
  vkp_vit_free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_lora),
      cmocka_unit_test(test_roundtrip_rslora),
      cmocka_unit_test(test_roundtrip_dora),
      cmocka_unit_test(test_roundtrip_loha),
      cmocka_unit_test(test_roundtrip_lokr),
      cmocka_unit_test(test_roundtrip_ia3),
      cmocka_unit_test(test_roundtrip_vera),
      cmocka_unit_test(test_roundtrip_houlsby),
      cmocka_unit_test(test_roundtrip_pfeiffer),
      cmocka_unit_test(test_roundtrip_adaptformer),
      cmocka_unit_test(test_roundtrip_vpt_shallow),
      cmocka_unit_test(test_roundtrip_vpt_deep),
      cmocka_unit_test(test_roundtrip_prefix),
      cmocka_unit_test(test_roundtrip_bitfit),
      cmocka_unit_test(test_roundtrip_ln_tuning),
      cmocka_unit_test(test_roundtrip_masked_random),
      cmocka_unit_test(test_roundtrip_masked_magnitude),
      cmocka_unit_test(test_roundtrip_oft),
      cmocka_unit_test(test_roundtrip_coft),
      cmocka_unit_test(test_roundtrip_hybrid),
      cmocka_unit_test(test_merge_lora),
      cmocka_unit_test(test_merge_rslora),
      cmocka_unit_test(test_merge_dora),
      cmocka_unit_test(test_merge_loha),
      cmocka_unit_test(test_merge_lokr),
      cmocka_unit_test(test_merge_ia3),
      cmocka_unit_test(test_merge_vera),
      cmocka_unit_test(test_merge_masked),
      cmocka_unit_test(test_merge_oft),
      cmocka_unit_test(test_merge_coft),
      cmocka_unit_test(test_merge_additive_unsupported),
      cmocka_unit_test(test_scales_and_enable),
      cmocka_unit_test(test_transformers4_spelling),
      cmocka_unit_test(test_bad_adapters),
      cmocka_unit_test(test_targeting),
      cmocka_unit_test(test_bad_masked_index),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
