// scheduler.c — the DDPM training schedule (betas, ᾱ) with diffusers' float32 rounding points, the
// zero-terminal-SNR rescale, and the forward-process helpers training uses (vkp_scheduler.h).
//
// Float32 emulation: each float operation below is one torch float32 op of diffusers' code, written
// as its own C statement on `float`s, so no compiler fuses a multiply and an add (GCC in ISO C mode
// contracts nothing; clang only within one expression); torch's linspace *is* fused, so it is
// written with fmaf. Doubles appear only where Python or torch
// computes in double (Python's betas_for_alpha_bar, torch's cumprod accumulator).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_scheduler.h"

// torch.linspace(start, end, n, dtype=torch.float32) on the CPU (ATen's linspace kernel, scalar
// path, built with FMA): step = (end - start) / (n - 1) in float; the first half counts up from
// start, the second half down from end, each value one fused multiply-add. Checked bit for bit
// against diffusers' alphas_cumprod of the fixture (the vectorised arange path, or unfused
// arithmetic, miss 121..246 of the 1000 values by an ulp).
void vkp_scheduler_linspace_f32(float start, float end, int n, float *out) {
  if (n == 1) {
    out[0] = start;
    return;
  }
  float step = (end - start) / (float)(n - 1);
  int half = n / 2;
  for (int i = 0; i < n; i++)
    out[i] = i < half ? fmaf(step, (float)i, start) : fmaf(-step, (float)(n - i - 1), end);
}

// diffusers' betas_for_alpha_bar(T) (cosine, max_beta 0.999), in Python doubles, then
// torch.tensor(..., float32).
static void betas_cosine(int n, float *out) {
  const double pi = 3.141592653589793;
  for (int i = 0; i < n; i++) {
    double t1 = (double)i / n, t2 = (double)(i + 1) / n;
    double c1 = cos((t1 + 0.008) / 1.008 * pi / 2), c2 = cos((t2 + 0.008) / 1.008 * pi / 2);
    double b = 1 - (c2 * c2) / (c1 * c1);
    out[i] = (float)(b < 0.999 ? b : 0.999);
  }
}

// torch.cumprod on float32 (CPU): a double accumulator, each partial product rounded to float.
static void cumprod_f32(const float *a, int n, float *out) {
  double acc = 1.0;
  for (int i = 0; i < n; i++) {
    acc *= (double)a[i];
    out[i] = (float)acc;
  }
}

// diffusers' rescale_zero_terminal_snr, op for op in float32. Returns VKP_ERR_INVALID, betas
// untouched, when √ᾱ_0 = √ᾱ_{n-1} (nothing to rescale: 0/0), VKP_ERR_OOM when out of memory.
static vkp_status rescale_zero_snr_f32(float *betas, int n) {
  if (n < 2) return VKP_ERR_INVALID;
  float *s = malloc((size_t)n * sizeof *s);
  float *alphas = malloc((size_t)n * sizeof *alphas);
  vkp_status st = VKP_OK;
  if (!s || !alphas) {
    st = VKP_ERR_OOM;
    goto free_scratch;
  }
  for (int i = 0; i < n; i++) alphas[i] = 1.0f - betas[i];
  cumprod_f32(alphas, n, s);
  for (int i = 0; i < n; i++) s[i] = sqrtf(s[i]);
  float s0 = s[0], sT = s[n - 1];
  float denom = s0 - sT;
  if (!(denom > 0)) {
    st = VKP_ERR_INVALID;
    goto free_scratch;
  }
  float scale = s0 / denom;
  for (int i = 0; i < n; i++) {
    s[i] = s[i] - sT;
    s[i] = s[i] * scale;
    s[i] = s[i] * s[i];   // alphas_bar
  }
  alphas[0] = s[0];
  for (int i = 1; i < n; i++) alphas[i] = s[i] / s[i - 1];
  for (int i = 0; i < n; i++) betas[i] = 1.0f - alphas[i];
free_scratch:
  free(s);
  free(alphas);
  return st;
}

void vkp_scheduler_rescale_zero_snr(double *betas, int n) {
  float *b = malloc((size_t)n * sizeof *b);
  if (!b) return;
  for (int i = 0; i < n; i++) b[i] = (float)betas[i];
  if (rescale_zero_snr_f32(b, n) == VKP_OK)
    for (int i = 0; i < n; i++) betas[i] = b[i];
  free(b);
}

void vkp_scheduler_free(vkp_scheduler *s) {
  if (!s) return;
  free(s->betas);
  free(s->alphas_cumprod);
  free(s);
}

vkp_status vkp_scheduler_new(const vkp_scheduler_config *cfg, vkp_scheduler_class cls, vkp_scheduler **out,
                             vkp_error *err) {
  *out = NULL;
  vkp_scheduler *s = calloc(1, sizeof *s);
  if (!s) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of host memory for the noise schedule", cfg->file);
  vkp_scheduler_config_for_class(cfg, cls, &s->cfg);
  s->cfg.trained_betas = NULL;
  int n = s->num_train_timesteps = cfg->num_train_timesteps;
  vkp_status st = VKP_OK;
  float *b = malloc((size_t)n * sizeof *b), *a = malloc((size_t)n * sizeof *a);
  s->betas = malloc((size_t)n * sizeof *s->betas);
  s->alphas_cumprod = malloc((size_t)n * sizeof *s->alphas_cumprod);
  if (!b || !a || !s->betas || !s->alphas_cumprod) {
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of host memory for the noise schedule", cfg->file);
    goto free_scratch;
  }
  if (cfg->trained_betas) {
    for (int i = 0; i < n; i++) b[i] = (float)cfg->trained_betas[i];
  } else if (cfg->beta_schedule == VKP_BETA_LINEAR) {
    vkp_scheduler_linspace_f32((float)s->cfg.beta_start, (float)s->cfg.beta_end, n, b);
  } else if (cfg->beta_schedule == VKP_BETA_SCALED_LINEAR) {
    vkp_scheduler_linspace_f32((float)sqrt(s->cfg.beta_start), (float)sqrt(s->cfg.beta_end), n, b);
    for (int i = 0; i < n; i++) b[i] = b[i] * b[i];
  } else {
    betas_cosine(n, b);
  }
  if (cfg->rescale_betas_zero_snr) {
    st = rescale_zero_snr_f32(b, n);
    if (st == VKP_ERR_INVALID)
      st = vkp_error_set(err, st, "%s: key 'rescale_betas_zero_snr': the schedule's alphas_cumprod does not decrease, "
                         "there is nothing to rescale", cfg->file);
    else if (st)
      st = vkp_error_set(err, st, "%s: out of host memory for the noise schedule", cfg->file);
    if (st) goto free_scratch;
  }
  for (int i = 0; i < n; i++) {
    s->betas[i] = b[i];
    a[i] = 1.0f - b[i];
  }
  cumprod_f32(a, n, b);
  for (int i = 0; i < n; i++) s->alphas_cumprod[i] = b[i];
free_scratch:
  free(b);
  free(a);
  if (st) {
    vkp_scheduler_free(s);
    return st;
  }
  *out = s;
  return VKP_OK;
}

// ---- forward process ---------------------------------------------------------------------------

void vkp_scheduler_add_noise(const vkp_scheduler *s, const float *x0, const float *noise, const int *t, int batch,
                             size_t item, float *out) {
  for (int b = 0; b < batch; b++) {
    double ac = s->alphas_cumprod[t[b]], ca = sqrt(ac), cn = sqrt(1.0 - ac);
    size_t o = (size_t)b * item;
    for (size_t i = 0; i < item; i++) out[o + i] = (float)(ca * x0[o + i] + cn * noise[o + i]);
  }
}

void vkp_scheduler_velocity(const vkp_scheduler *s, const float *x0, const float *noise, const int *t, int batch,
                            size_t item, float *out) {
  for (int b = 0; b < batch; b++) {
    double ac = s->alphas_cumprod[t[b]], ca = sqrt(ac), cn = sqrt(1.0 - ac);
    size_t o = (size_t)b * item;
    for (size_t i = 0; i < item; i++) out[o + i] = (float)(ca * noise[o + i] - cn * x0[o + i]);
  }
}

void vkp_scheduler_target(const vkp_scheduler *s, const float *x0, const float *noise, const int *t, int batch,
                          size_t item, float *out) {
  size_t n = (size_t)batch * item;
  switch (s->cfg.prediction_type) {
    case VKP_PRED_EPSILON: memcpy(out, noise, n * sizeof *out); break;
    case VKP_PRED_V: vkp_scheduler_velocity(s, x0, noise, t, batch, item, out); break;
    case VKP_PRED_SAMPLE: memcpy(out, x0, n * sizeof *out); break;
  }
}

double vkp_scheduler_snr(const vkp_scheduler *s, int t) {
  double ac = s->alphas_cumprod[t];
  return ac >= 1.0 ? INFINITY : ac / (1.0 - ac);
}

double vkp_scheduler_min_snr_weight(const vkp_scheduler *s, int t, double gamma) {
  double snr = vkp_scheduler_snr(s, t), m = snr < gamma ? snr : gamma;
  switch (s->cfg.prediction_type) {
    case VKP_PRED_EPSILON: return snr < gamma ? 1.0 : gamma / snr;   // min(snr, γ)/snr, 1 at snr = 0
    case VKP_PRED_V: return m / (snr + 1.0);
    case VKP_PRED_SAMPLE: return m;
  }
  return 1.0;
}
