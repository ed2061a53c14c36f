// test_generate_prompt.c — the pipeline's prompt path and img2img start, against references
// computed here:
// - text states: a float64 CLIP text tower written in this file from the fixture's weights
//   (../shared/fixtures/clip/model), itself pinned to transformers through the fixture's
//   `text_embeds` (the end-of-text row · text_projectionᵀ, L2-normalised); the pipeline's states for the
//   tokenizer cases (ids from tokenizer_cases.json) must match it, with clip skip 1 and 2;
// - LoRA text-encoder parts: a kohya file with `lora_te_*` keys and the same weights in the
//   diffusers layout (`text_encoder.*`) give the reference with W + scale·(alpha/r)·up·down; a file
//   whose keys name nothing in either model is refused with the file named;
// - img2img: the VAE encode matches diffusers' posterior (fixture vae_in -> vae_mean/vae_logvar),
//   and the starting latents match a float64 evaluation of diffusers' recipe (get_timesteps'
//   trimming, posterior sample · scaling_factor, add_noise at the first kept timestep) with
//   σ and ᾱ from the betas computed here, for Euler and DDIM, batch 2 (per-image generators).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate_fixture.h"
#include "vkp_fileio.h"
#include "vkp_parity.h"
#include "vkp_pipeline.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

// ---- a float64 CLIP text tower ------------------------------------------------------------------

enum { T = 77, C = 32, L = 2, HEADS = 4, FF = 64, PROJ = 16 };

typedef struct clip_ref {
  float *tok, *pos;                      // (vocab, C), (T, C)
  float *ln1_w[L], *ln1_b[L], *ln2_w[L], *ln2_b[L];
  float *q_w[L], *q_b[L], *k_w[L], *k_b[L], *v_w[L], *v_b[L], *o_w[L], *o_b[L];
  float *fc1_w[L], *fc1_b[L], *fc2_w[L], *fc2_b[L];
  float *lnf_w, *lnf_b, *proj;           // proj (PROJ, C)
} clip_ref;

static float *load_w(vkp_safetensors *sf, const char *fmt, int l) {
  char k[256];
  snprintf(k, sizeof k, fmt, l);
  size_t n;
  return vkp_fixture_tensor(sf, k, &n);
}

static void clip_ref_load(clip_ref *r) {
  vkp_safetensors *sf;
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("clip/model/model.safetensors"), &sf, &err)) fail_msg("%s", err.msg);
  r->tok = load_w(sf, "text_model.embeddings.token_embedding.weight", 0);
  r->pos = load_w(sf, "text_model.embeddings.position_embedding.weight", 0);
  const char *p = "text_model.encoder.layers.%d.";
  char f[200];
#define LW(field, name)                       \
  snprintf(f, sizeof f, "%s%s", p, name);     \
  for (int l = 0; l < L; l++) r->field[l] = load_w(sf, f, l);
  LW(ln1_w, "layer_norm1.weight") LW(ln1_b, "layer_norm1.bias") LW(ln2_w, "layer_norm2.weight")
  LW(ln2_b, "layer_norm2.bias") LW(q_w, "self_attn.q_proj.weight") LW(q_b, "self_attn.q_proj.bias")
  LW(k_w, "self_attn.k_proj.weight") LW(k_b, "self_attn.k_proj.bias") LW(v_w, "self_attn.v_proj.weight")
  LW(v_b, "self_attn.v_proj.bias") LW(o_w, "self_attn.out_proj.weight") LW(o_b, "self_attn.out_proj.bias")
  LW(fc1_w, "mlp.fc1.weight") LW(fc1_b, "mlp.fc1.bias") LW(fc2_w, "mlp.fc2.weight") LW(fc2_b, "mlp.fc2.bias")
#undef LW
  r->lnf_w = load_w(sf, "text_model.final_layer_norm.weight", 0);
  r->lnf_b = load_w(sf, "text_model.final_layer_norm.bias", 0);
  r->proj = load_w(sf, "text_projection.weight", 0);
  vkp_safetensors_free(sf);
}

static void clip_ref_free(clip_ref *r) {
  free(r->tok), free(r->pos), free(r->lnf_w), free(r->lnf_b), free(r->proj);
  for (int l = 0; l < L; l++) {
    float *all[] = {r->ln1_w[l], r->ln1_b[l], r->ln2_w[l], r->ln2_b[l], r->q_w[l], r->q_b[l], r->k_w[l], r->k_b[l],
                    r->v_w[l], r->v_b[l], r->o_w[l], r->o_b[l], r->fc1_w[l], r->fc1_b[l], r->fc2_w[l], r->fc2_b[l]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
  }
}

static void layer_norm(const double *x, const float *w, const float *b, double *y) {
  for (int t = 0; t < T; t++) {
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += x[t * C + c];
    m /= C;
    for (int c = 0; c < C; c++) v += (x[t * C + c] - m) * (x[t * C + c] - m);
    v /= C;
    for (int c = 0; c < C; c++) y[t * C + c] = (x[t * C + c] - m) / sqrt(v + 1e-5) * w[c] + b[c];
  }
}

// y (T, out) = x (T, in) · Wᵀ + b; dq (out, in) is added to W when given (a LoRA delta).
static void linear(const double *x, int in, const float *w, const double *dw, const float *b, int out, double *y) {
  for (int t = 0; t < T; t++)
    for (int o = 0; o < out; o++) {
      double s = b[o];
      for (int i = 0; i < in; i++) s += x[t * in + i] * (w[o * in + i] + (dw ? dw[o * in + i] : 0));
      y[t * out + o] = s;
    }
}

// The text states: `layers` encoder layers (causal attention, quick_gelu MLP), then the final
// LayerNorm. dq: a delta for layer 0's q_proj (or NULL).
static void clip_ref_states(const clip_ref *r, const int32_t *ids, int layers, const double *dq, double *out) {
  static double h[T * C], x[T * C], q[T * C], k[T * C], v[T * C], a[T * C], o[T * C], f[T * FF];
  for (int t = 0; t < T; t++)
    for (int c = 0; c < C; c++) h[t * C + c] = (double)r->tok[(size_t)ids[t] * C + c] + r->pos[t * C + c];
  const int hd = C / HEADS;
  for (int l = 0; l < layers; l++) {
    layer_norm(h, r->ln1_w[l], r->ln1_b[l], x);
    linear(x, C, r->q_w[l], l == 0 ? dq : NULL, r->q_b[l], C, q);
    linear(x, C, r->k_w[l], NULL, r->k_b[l], C, k);
    linear(x, C, r->v_w[l], NULL, r->v_b[l], C, v);
    for (int hh = 0; hh < HEADS; hh++)
      for (int i = 0; i < T; i++) {
        double s[T], mx = -INFINITY, z = 0;
        for (int j = 0; j <= i; j++) {
          s[j] = 0;
          for (int d = 0; d < hd; d++) s[j] += q[i * C + hh * hd + d] * k[j * C + hh * hd + d];
          s[j] /= sqrt((double)hd);
          mx = fmax(mx, s[j]);
        }
        for (int j = 0; j <= i; j++) z += s[j] = exp(s[j] - mx);
        for (int d = 0; d < hd; d++) {
          double acc = 0;
          for (int j = 0; j <= i; j++) acc += s[j] / z * v[j * C + hh * hd + d];
          a[i * C + hh * hd + d] = acc;
        }
      }
    linear(a, C, r->o_w[l], NULL, r->o_b[l], C, o);
    for (int i = 0; i < T * C; i++) h[i] += o[i];
    layer_norm(h, r->ln2_w[l], r->ln2_b[l], x);
    linear(x, C, r->fc1_w[l], NULL, r->fc1_b[l], FF, f);
    for (int i = 0; i < T * FF; i++) f[i] = f[i] / (1 + exp(-1.702 * f[i]));   // quick_gelu
    linear(f, FF, r->fc2_w[l], NULL, r->fc2_b[l], C, o);
    for (int i = 0; i < T * C; i++) h[i] += o[i];
  }
  layer_norm(h, r->lnf_w, r->lnf_b, out);
}

static int eos_pos(const int32_t *ids) {
  for (int t = 0; t < T; t++)
    if (ids[t] == 49407) return t;
  return T - 1;
}

static double max_rel(const float *got, const double *want, size_t n) {
  double e = 0, m = 0;
  for (size_t i = 0; i < n; i++) e = fmax(e, fabs(got[i] - want[i])), m = fmax(m, fabs(want[i]));
  return e / m;
}

// tokenizer_cases.json: texts[i] and hf_input_ids[i].
static cJSON *load_cases(void) {
  char *s;
  size_t n;
  vkp_error err = {0};
  if (vkp_file_read_all(vkp_fixture_path("clip/tokenizer_cases.json"), 1 << 24, &s, &n, &err)) fail_msg("%s", err.msg);
  cJSON *j = cJSON_Parse(s);
  free(s);
  assert_non_null(j);
  return j;
}

static void case_ids(cJSON *cases, int i, int32_t *ids) {
  cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItem(cases, "hf_input_ids"), i);
  assert_int_equal(cJSON_GetArraySize(row), T);
  for (int t = 0; t < T; t++) ids[t] = (int32_t)cJSON_GetArrayItem(row, t)->valueint;
}

static vkp_pipeline *load_pipeline(void **state, const char *name, const char *sched, bool text, int clip_skip) {
  char dir[1024];
  gen_make_pipeline(state, name, sched, text, dir, sizeof dir);
  vkp_pipeline_opts po = {.clip_skip = clip_skip, .text_encoder = text ? VKP_PIPELINE_TEXT_REQUIRED : 0};
  vkp_pipeline *p = NULL;
  vkp_error err = {0};
  if (vkp_pipeline_load(vkp_test_ctx(), dir, &po, &p, &err)) fail_msg("%s", err.msg);
  return p;
}

// The reference itself against transformers: row eos · text_projectionᵀ = text_embeds.
static void test_reference_vs_transformers(void **state) {
  (void)state;
  clip_ref r;
  clip_ref_load(&r);
  vkp_safetensors *io;
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("clip/io.safetensors"), &io, &err)) fail_msg("%s", err.msg);
  size_t n;
  float *ids_f = vkp_fixture_tensor(io, "input_ids", &n), *emb = vkp_fixture_tensor(io, "text_embeds", &n);
  static double st[T * C];
  double worst = 0;
  for (int b = 0; b < 4; b++) {
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = (int32_t)ids_f[b * T + t];
    clip_ref_states(&r, ids, L, NULL, st);
    int e = eos_pos(ids);
    double pr[PROJ], nrm = 0;   // CLIPModel's text_embeds are L2-normalised
    for (int p = 0; p < PROJ; p++) {
      pr[p] = 0;
      for (int c = 0; c < C; c++) pr[p] += st[e * C + c] * r.proj[p * C + c];
      nrm += pr[p] * pr[p];
    }
    for (int p = 0; p < PROJ; p++) worst = fmax(worst, fabs(pr[p] / sqrt(nrm) - emb[b * PROJ + p]));
  }
  printf("  float64 reference vs transformers text_embeds: max abs err %.3g\n", worst);
  assert_true(worst < 1e-5);
  free(ids_f), free(emb);
  vkp_safetensors_free(io);
  clip_ref_free(&r);
}

// The pipeline's prompt -> states for every tokenizer case, clip skip 1 and 2.
static void test_text_states(void **state) {
  clip_ref r;
  clip_ref_load(&r);
  cJSON *cases = load_cases();
  static double want[T * C];
  static float got[T * C];
  vkp_error err = {0};
  for (int skip = 1; skip <= 2; skip++) {
    vkp_pipeline *p = load_pipeline(state, skip == 1 ? "pipe_s1" : "pipe_s2", GEN_EULER_CFG, true, skip);
    int tokens, dim;
    vkp_pipeline_text_shape(p, &tokens, &dim);
    assert_int_equal(tokens, T);
    assert_int_equal(dim, C);
    double worst = 0;
    cJSON *texts = cJSON_GetObjectItem(cases, "texts");
    for (int i = 0; i < cJSON_GetArraySize(texts); i++) {
      int32_t ids[T];
      case_ids(cases, i, ids);
      if (vkp_pipeline_encode_prompt(p, cJSON_GetArrayItem(texts, i)->valuestring, got, &err)) fail_msg("%s", err.msg);
      clip_ref_states(&r, ids, L + 1 - skip, NULL, want);
      worst = fmax(worst, max_rel(got, want, T * C));
    }
    printf("  text states, clip skip %d, %d prompts: max rel err %.3g\n", skip, cJSON_GetArraySize(texts), worst);
    assert_true(worst < 1e-5);
    vkp_pipeline_free(p);
  }
  cJSON_Delete(cases);
  clip_ref_free(&r);
}

// A LoRA file with a text-encoder part (q_proj of layer 0, r 2, alpha 1) and the fixture's UNet
// part; written in the kohya layout (`lora_te_`) or the diffusers one (`text_encoder.`).
static void write_te_lora(const char *path, bool kohya, const float *down, const float *up) {
  vkp_safetensors_writer *w;
  vkp_error err = {0};
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  const char *k = kohya ? "lora_te_text_model_encoder_layers_0_self_attn_q_proj" : "text_encoder.text_model.encoder.layers.0.self_attn.q_proj";
  char key[256];
  float alpha = 1.0f;
  snprintf(key, sizeof key, kohya ? "%s.lora_down.weight" : "%s.lora_A.weight", k);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, 2, (int64_t[]){2, C}, down, &err), 0);
  snprintf(key, sizeof key, kohya ? "%s.lora_up.weight" : "%s.lora_B.weight", k);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, 2, (int64_t[]){C, 2}, up, &err), 0);
  snprintf(key, sizeof key, "%s.alpha", k);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, 0, NULL, &alpha, &err), 0);
  // The UNet part: the fixture's kohya file, renamed for the diffusers layout only where needed.
  vkp_safetensors *u;
  const char *src = kohya ? "unet/lora/kohya.safetensors" : "unet/lora/pytorch_lora_weights.safetensors";
  if (vkp_safetensors_open(vkp_fixture_path(src), &u, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < vkp_safetensors_count(u); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(u, i);
    size_t n;
    float *v = vkp_fixture_tensor(u, t->name, &n);
    assert_int_equal(vkp_safetensors_writer_add_f32(w, t->name, VKP_DTYPE_F32, t->ndim, t->shape, v, &err), 0);
    free(v);
  }
  vkp_safetensors_free(u);
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
}

static void test_te_lora(void **state) {
  clip_ref r;
  clip_ref_load(&r);
  cJSON *cases = load_cases();
  float down[2 * C], up[C * 2];
  vkp_rng g = vkp_rng_new(11);
  vkp_rng_normal_fill(&g, down, 2 * C, 0, 0.3);
  vkp_rng_normal_fill(&g, up, 2 * C, 0, 0.3);
  const float scale = 0.8f;
  static double dq[C * C], want[T * C];
  for (int o = 0; o < C; o++)   // scale · (alpha / r) · up · down, alpha 1, r 2
    for (int i = 0; i < C; i++) dq[o * C + i] = scale * 0.5 * ((double)up[o * 2] * down[i] + (double)up[o * 2 + 1] * down[C + i]);
  int32_t ids[T];
  case_ids(cases, 2, ids);
  const char *text = cJSON_GetArrayItem(cJSON_GetObjectItem(cases, "texts"), 2)->valuestring;
  clip_ref_states(&r, ids, L, dq, want);
  static float got[T * C];
  vkp_error err = {0};
  for (int layout = 0; layout < 2; layout++) {
    char file[1024];
    vkp_test_dir_path(state, layout ? "te_diffusers.safetensors" : "te_kohya.safetensors", file, sizeof file);
    write_te_lora(file, layout == 0, down, up);
    vkp_pipeline *p = load_pipeline(state, layout ? "pipe_ted" : "pipe_tek", GEN_EULER_CFG, true, 1);
    // Encode once before attaching: the graph must be rebuilt with the adapter.
    if (vkp_pipeline_encode_prompt(p, text, got, &err)) fail_msg("%s", err.msg);
    if (vkp_pipeline_add_lora(p, file, scale, false, &err)) fail_msg("%s", err.msg);
    bool on_unet, on_te;
    vkp_pipeline_lora_parts(p, 0, &on_unet, &on_te);
    assert_true(on_unet && on_te);
    if (vkp_pipeline_encode_prompt(p, text, got, &err)) fail_msg("%s", err.msg);
    double e = max_rel(got, want, T * C);
    printf("  %s text-encoder LoRA (scale %.1f): states max rel err %.3g\n", layout ? "diffusers" : "kohya", scale, e);
    assert_true(e < 1e-5);
    // Scale 0: the plain tower again.
    if (vkp_pipeline_set_lora_scale(p, 0, 0.0f, &err)) fail_msg("%s", err.msg);
    if (vkp_pipeline_encode_prompt(p, text, got, &err)) fail_msg("%s", err.msg);
    static double plain[T * C];
    clip_ref_states(&r, ids, L, NULL, plain);
    assert_true(max_rel(got, plain, T * C) < 1e-5);
    vkp_pipeline_free(p);
  }
  // Keys that name no module of either model: refused, the file named.
  char file[1024];
  vkp_test_dir_path(state, "stranger.safetensors", file, sizeof file);
  vkp_safetensors_writer *w;
  assert_int_equal(vkp_safetensors_writer_new(&w, &err), 0);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "lora_unet_no_such_block.lora_down.weight", VKP_DTYPE_F32, 2,
                                                  (int64_t[]){2, C}, down, &err), 0);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "lora_unet_no_such_block.lora_up.weight", VKP_DTYPE_F32, 2,
                                                  (int64_t[]){C, 2}, up, &err), 0);
  assert_int_equal(vkp_safetensors_writer_save(w, file, &err), 0);
  vkp_safetensors_writer_free(w);
  vkp_pipeline *p = load_pipeline(state, "pipe_bad", GEN_EULER_CFG, true, 1);
  assert_int_not_equal(vkp_pipeline_add_lora(p, file, 1.0f, false, &err), 0);
  printf("  unmatched LoRA: %s\n", err.msg);
  assert_non_null(strstr(err.msg, file));
  assert_null(strchr(err.msg, '\n'));
  assert_int_equal(vkp_pipeline_lora_count(p), 0);
  vkp_pipeline_free(p);
  cJSON_Delete(cases);
  clip_ref_free(&r);
}

// ---- img2img --------------------------------------------------------------------------------------

// ᾱ of SD's scaled_linear schedule in double.
static void alphas_cumprod(double *ac) {
  double a = sqrt(0.00085), b = sqrt(0.012), prod = 1;
  for (int i = 0; i < 1000; i++) {
    double s = a + (b - a) * i / 999.0;
    prod *= 1 - s * s;
    ac[i] = prod;
  }
}

static void check_img2img(void **state, const char *sched, bool euler) {
  vkp_pipeline *p = load_pipeline(state, euler ? "pipe_i2i_e" : "pipe_i2i_d", sched, false, 1);
  vkp_safetensors *io;
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("unet/io.safetensors"), &io, &err)) fail_msg("%s", err.msg);
  size_t np, nm;
  float *pix = vkp_fixture_tensor(io, "vae_in", &np), *fmean = vkp_fixture_tensor(io, "vae_mean", &nm);
  float *flogv = vkp_fixture_tensor(io, "vae_logvar", &nm);
  const size_t n = nm / 2;   // the fixture has 2 images; the first
  float *mean = malloc(n * sizeof(float)), *logv = malloc(n * sizeof(float));
  if (vkp_pipeline_encode_image(p, pix, mean, logv, &err)) fail_msg("%s", err.msg);
  vkp_check_rel("VAE encode mean (diffusers)", mean, fmean, n, 1e-4);
  vkp_check_rel("VAE encode logvar (diffusers)", logv, flogv, n, 1e-4);
  const int steps = 10, B = 2;
  const double strength = 0.6;
  vkp_sampler_opts so = vkp_sampler_opts_default(euler ? VKP_SAMPLER_EULER : VKP_SAMPLER_DDIM, steps);
  so.batch = B;
  vkp_sampler *s;
  if (vkp_sampler_new(vkp_pipeline_scheduler_config(p), &so, B * n, &s, &err)) fail_msg("%s", err.msg);
  vkp_rng rng[2] = {vkp_rng_new(5), vkp_rng_new(6)};
  float *lat = malloc(B * n * sizeof(float));
  if (vkp_pipeline_img2img_latents(p, s, pix, strength, rng, lat, &err)) fail_msg("%s", err.msg);
  // diffusers: init = min(int(steps·strength), steps) = 6, t_start = 4; the first kept timestep.
  int t_start = steps - (int)fmin((int)(steps * strength), steps);
  assert_int_equal(t_start, 4);
  assert_int_equal(vkp_sampler_get_begin(s), t_start);
  static double ac[1000];
  alphas_cumprod(ac);
  double a_x0, a_noise;
  if (euler) {   // linspace spacing: t = 999·(steps−1−i)/(steps−1), σ interpolated linearly in t
    double t = 999.0 * (steps - 1 - t_start) / (steps - 1);
    int lo = (int)floor(t);
    double w = t - lo, s0 = sqrt((1 - ac[lo]) / ac[lo]), s1 = sqrt((1 - ac[lo + 1]) / ac[lo + 1]);
    a_x0 = 1, a_noise = s0 + w * (s1 - s0);
  } else {   // leading spacing with steps_offset 1: t = (steps−1−i)·(1000/steps) + 1
    int t = (steps - 1 - t_start) * (1000 / steps) + 1;
    a_x0 = sqrt(ac[t]), a_noise = sqrt(1 - ac[t]);
  }
  double worst = 0, mx = 0;
  for (int b = 0; b < B; b++) {
    vkp_rng g = vkp_rng_new(5 + b);
    float *e1 = malloc(n * sizeof(float)), *e2 = malloc(n * sizeof(float));
    vkp_rng_randn(&g, e1, n);   // the posterior sample's noise, then add_noise's
    vkp_rng_randn(&g, e2, n);
    for (size_t i = 0; i < n; i++) {
      double x0 = ((double)fmean[i] + exp(0.5 * flogv[i]) * e1[i]) * 0.18215;
      double want = a_x0 * x0 + a_noise * e2[i];
      worst = fmax(worst, fabs(lat[b * n + i] - want));
      mx = fmax(mx, fabs(want));
    }
    free(e1), free(e2);
  }
  printf("  img2img %s start (strength %.1f, begin %d): max rel err %.3g vs float64\n", euler ? "Euler" : "DDIM", strength,
         t_start, worst / mx);
  assert_true(worst / mx < 1e-4);
  // The run then makes steps − t_start evaluations; strength 0 is refused.
  assert_int_equal(vkp_sampler_evals(s) - vkp_sampler_get_begin(s), 6);
  assert_int_equal(vkp_pipeline_img2img_latents(p, s, pix, 0.0, rng, lat, &err), VKP_ERR_INVALID);
  assert_int_equal(vkp_pipeline_img2img_latents(p, s, pix, 1.5, rng, lat, &err), VKP_ERR_INVALID);
  vkp_sampler_free(s);
  free(pix), free(fmean), free(flogv), free(mean), free(logv), free(lat);
  vkp_safetensors_free(io);
  vkp_pipeline_free(p);
}

// Sizes the UNet cannot take: multiples of the VAE factor (2) times 2^(blocks − 1) (2) only.
static void test_size_check(void **state) {
  char dir[1024];
  gen_make_pipeline(state, "pipe_size", GEN_EULER_CFG, false, dir, sizeof dir);
  vkp_pipeline_opts po = {.width = 6, .height = 32};
  vkp_pipeline *p = NULL;
  vkp_error err = {0};
  assert_int_equal(vkp_pipeline_load(vkp_test_ctx(), dir, &po, &p, &err), VKP_ERR_INVALID);
  printf("  %s\n", err.msg);
  assert_non_null(strstr(err.msg, "multiples of 4"));
  assert_null(p);
}

static void test_img2img_euler(void **state) { check_img2img(state, GEN_EULER_CFG, true); }
static void test_img2img_ddim(void **state) { check_img2img(state, GEN_DDIM_CFG, false); }

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_vs_transformers),
      cmocka_unit_test_setup_teardown(test_text_states, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_te_lora, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_size_check, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_img2img_euler, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_img2img_ddim, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
