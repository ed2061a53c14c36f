// sampler.c — the sampler object (vkp_sampler.h): each diffusers scheduler's `step` as an
// elementwise update on host latents, the run loop, img2img noising, classifier-free guidance and
// sampler names.
//
// Update rules (σ: VE noise level of the schedule; x̂0: the model's prediction of the clean latents,
// from epsilon, v or sample output; all per element, in double):
//   DDIM     x' = √ᾱ' x̂0 + √(1 − ᾱ' − s²) ε̂ + s·z,  s = η √((1−ᾱ')/(1−ᾱ)) √(1 − ᾱ/ᾱ')   (VP latents)
//   Euler    x' = x + (x − x̂0)/σ · (σ' − σ)                                          (VE latents)
//   Euler a  σ↑ = √(σ'²(σ² − σ'²)/σ²), σ↓ = √(σ'² − σ↑²); x' = x + (x − x̂0)/σ · (σ↓ − σ) + σ↑ z
//   Heun     Euler to σ', then (if σ' > 0) the trapezoid of the two slopes from x (diffusers: two
//            evaluations per step, the second at t' on the Euler point)
//   DPM++ 2M λ = log(α/σ_vp); h = λ' − λ; x' = (σ'_vp/σ_vp) x − α'(e^{−h} − 1) D with D = x̂0 (first
//            order: the first step, the last when `lower_order_final` applies) or
//            D = x̂0 + (x̂0 − x̂0_prev)/(2r), r = h_prev/h (midpoint; `solver_type` heun:
//            x' += α'((e^{−h}−1)/h + 1)·(x̂0 − x̂0_prev)/r instead)                      (VP latents)
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_sampler.h"

struct vkp_sampler {
  vkp_sampler_kind kind;
  vkp_scheduler *sc;          // owned; built for the kind's class
  vkp_sampler_schedule sch;   // owned
  size_t n;                   // latent elements
  int batch;                  // images in them (per-image generators)
  double eta;                 // DDIM
  int next;                   // the evaluation step() expects next
  int begin;                  // the first evaluation of this run
  float *noise;               // (n) ancestral noise (Euler a, DDIM eta > 0)
  // Heun: the first-order half of a step
  bool heun_second;           // the next step is the second-order (correction) one
  double heun_dt;
  float *heun_deriv;          // (n) slope at the step's start
  float *heun_sample;         // (n) latents at the step's start
  // DPM++: the previous x̂0 and how many lower-order steps ran
  float *dpm_prev;            // (n)
  int dpm_lower_order_nums;
};

vkp_sampler_opts vkp_sampler_opts_default(vkp_sampler_kind kind, int steps) {
  return (vkp_sampler_opts){.kind = kind, .steps = steps, .karras = VKP_SAMPLER_FROM_CONFIG,
                            .spacing = VKP_SAMPLER_FROM_CONFIG, .eta = 0.0, .batch = 1};
}

// ---- names --------------------------------------------------------------------------------------

static const struct {
  const char *name, *a1111;
  vkp_scheduler_class cls;
} kinds[VKP_SAMPLER_COUNT] = {
    [VKP_SAMPLER_DDIM] = {"ddim", "DDIM", VKP_SCHED_DDIM},
    [VKP_SAMPLER_EULER] = {"euler", "Euler", VKP_SCHED_EULER},
    [VKP_SAMPLER_EULER_A] = {"euler_a", "Euler a", VKP_SCHED_EULER_A},
    [VKP_SAMPLER_HEUN] = {"heun", "Heun", VKP_SCHED_HEUN},
    [VKP_SAMPLER_DPMPP_2M] = {"dpmpp_2m", "DPM++ 2M", VKP_SCHED_DPMSOLVER},
};

const char *vkp_sampler_name(vkp_sampler_kind kind) {
  return kind >= 0 && kind < VKP_SAMPLER_COUNT ? kinds[kind].name : "?";
}

const char *vkp_sampler_a1111_name(vkp_sampler_kind kind, bool karras) {
  static const char *const with_karras[VKP_SAMPLER_COUNT] = {
      [VKP_SAMPLER_DDIM] = "DDIM", [VKP_SAMPLER_EULER] = "Euler Karras", [VKP_SAMPLER_EULER_A] = "Euler a Karras",
      [VKP_SAMPLER_HEUN] = "Heun Karras", [VKP_SAMPLER_DPMPP_2M] = "DPM++ 2M Karras"};
  if (kind < 0 || kind >= VKP_SAMPLER_COUNT) return "?";
  return karras ? with_karras[kind] : kinds[kind].a1111;
}

vkp_scheduler_class vkp_sampler_class(vkp_sampler_kind kind) {
  return kind >= 0 && kind < VKP_SAMPLER_COUNT ? kinds[kind].cls : VKP_SCHED_NONE;
}

int vkp_sampler_for_class(vkp_scheduler_class cls) {
  for (int k = 0; k < VKP_SAMPLER_COUNT; k++)
    if (kinds[k].cls == cls) return k;
  return -1;
}

vkp_status vkp_sampler_parse_name(const char *name, vkp_sampler_kind *kind, int *karras, vkp_error *err) {
  // Normalise: lower case, ' ' and '-' as '_', "++" as "pp".
  char buf[64];
  size_t o = 0;
  for (const char *p = name; *p && o + 3 < sizeof buf; p++) {
    if (p[0] == '+' && p[1] == '+') {
      buf[o++] = 'p';
      buf[o++] = 'p';
      p++;
    } else {
      buf[o++] = (*p == ' ' || *p == '-') ? '_' : (char)tolower((unsigned char)*p);
    }
  }
  buf[o] = '\0';
  *karras = VKP_SAMPLER_FROM_CONFIG;
  size_t len = strlen(buf);
  if (len > 7 && !strcmp(buf + len - 7, "_karras")) {
    *karras = 1;
    buf[len - 7] = '\0';
  }
  static const struct {
    const char *alias;
    vkp_sampler_kind kind;
  } aliases[] = {
      {"ddim", VKP_SAMPLER_DDIM},         {"euler", VKP_SAMPLER_EULER},       {"euler_a", VKP_SAMPLER_EULER_A},
      {"euler_ancestral", VKP_SAMPLER_EULER_A}, {"k_euler_a", VKP_SAMPLER_EULER_A}, {"k_euler", VKP_SAMPLER_EULER},
      {"heun", VKP_SAMPLER_HEUN},         {"k_heun", VKP_SAMPLER_HEUN},       {"dpmpp_2m", VKP_SAMPLER_DPMPP_2M},
      {"dpmpp2m", VKP_SAMPLER_DPMPP_2M},  {"k_dpmpp_2m", VKP_SAMPLER_DPMPP_2M},
  };
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (!strcmp(buf, aliases[i].alias)) {
      *kind = aliases[i].kind;
      if (*kind == VKP_SAMPLER_DDIM && *karras == 1)
        return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "sampler '%s': DDIM has no Karras schedule", name);
      return VKP_OK;
    }
  return vkp_error_set(err, VKP_ERR_INVALID,
                       "unknown sampler '%s' (known: ddim, euler, euler_a, heun, dpmpp_2m; add ' karras' for the "
                       "Karras schedule)", name);
}

// ---- creation -----------------------------------------------------------------------------------

// A config value the kind's diffusers class would use but this code does not implement.
static vkp_status check_supported(const vkp_scheduler_config *c, vkp_sampler_kind kind, vkp_error *err) {
  const char *who = vkp_sampler_name(kind);
  bool ddim = kind == VKP_SAMPLER_DDIM, dpm = kind == VKP_SAMPLER_DPMPP_2M;
  bool karras_family = kind == VKP_SAMPLER_EULER || kind == VKP_SAMPLER_HEUN || dpm;
  const char *key = NULL;
  if ((ddim || dpm) && c->thresholding) key = "thresholding";
  else if (karras_family && c->use_exponential_sigmas) key = "use_exponential_sigmas";
  else if (karras_family && c->use_beta_sigmas) key = "use_beta_sigmas";
  else if (dpm && c->use_lu_lambdas) key = "use_lu_lambdas";
  else if (dpm && c->use_flow_sigmas) key = "use_flow_sigmas";
  if (key)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key '%s': true is not supported by the %s sampler", c->file, key,
                         who);
  if (dpm && c->variance_learned)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key 'variance_type': learned variance is not supported by the "
                         "%s sampler", c->file, who);
  if (dpm && c->algorithm_type != VKP_DPM_PLUSPLUS)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key 'algorithm_type': only \"dpmsolver++\" is supported by the %s "
                         "sampler", c->file, who);
  if (dpm && c->solver_order > 2)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key 'solver_order': %d is not supported by the %s sampler (1 or 2)",
                         c->file, c->solver_order, who);
  return VKP_OK;
}

vkp_status vkp_sampler_new(const vkp_scheduler_config *cfg, const vkp_sampler_opts *o, size_t n, vkp_sampler **out,
                           vkp_error *err) {
  *out = NULL;
  if (o->kind < 0 || o->kind >= VKP_SAMPLER_COUNT)
    return vkp_error_set(err, VKP_ERR_INVALID, "unknown sampler kind %d", (int)o->kind);
  if (!isfinite(o->eta) || o->eta < 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "sampler eta %g: must be a finite number >= 0", o->eta);
  if (o->eta != 0 && o->kind != VKP_SAMPLER_DDIM)
    return vkp_error_set(err, VKP_ERR_INVALID, "sampler eta %g: eta applies to the ddim sampler only, not %s", o->eta,
                         vkp_sampler_name(o->kind));
  if (o->karras != VKP_SAMPLER_FROM_CONFIG && o->karras != 0 && o->karras != 1)
    return vkp_error_set(err, VKP_ERR_INVALID, "sampler karras flag %d: must be 0, 1 or VKP_SAMPLER_FROM_CONFIG",
                         o->karras);
  if (o->spacing != VKP_SAMPLER_FROM_CONFIG && (o->spacing < 0 || o->spacing > VKP_SPACING_LINSPACE))
    return vkp_error_set(err, VKP_ERR_INVALID, "unknown timestep spacing %d", o->spacing);
  if (n == 0) return vkp_error_set(err, VKP_ERR_INVALID, "sampler for 0 latent elements");
  int batch = o->batch > 0 ? o->batch : 1;
  if (n % (size_t)batch)
    return vkp_error_set(err, VKP_ERR_INVALID, "sampler batch %d does not divide the %zu latent elements", batch, n);

  vkp_sampler *s = calloc(1, sizeof *s);
  if (!s) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory for a sampler");
  s->kind = o->kind;
  s->n = n;
  s->batch = batch;
  s->eta = o->eta;
  vkp_status st = vkp_scheduler_new(cfg, vkp_sampler_class(o->kind), &s->sc, err);
  if (st) goto fail;
  st = check_supported(&s->sc->cfg, o->kind, err);
  if (st) goto fail;
  bool karras_key = o->kind == VKP_SAMPLER_EULER || o->kind == VKP_SAMPLER_HEUN || o->kind == VKP_SAMPLER_DPMPP_2M;
  bool karras = o->karras == VKP_SAMPLER_FROM_CONFIG ? karras_key && s->sc->cfg.use_karras_sigmas : o->karras == 1;
  vkp_spacing spacing = o->spacing == VKP_SAMPLER_FROM_CONFIG ? s->sc->cfg.timestep_spacing : (vkp_spacing)o->spacing;
  st = vkp_sampler_schedule_build(s->sc, o->kind, o->steps, karras, spacing, &s->sch, err);
  if (st) goto fail;
  bool need_noise = o->kind == VKP_SAMPLER_EULER_A || (o->kind == VKP_SAMPLER_DDIM && o->eta > 0);
  if (need_noise && !(s->noise = malloc(n * sizeof *s->noise))) goto oom;
  if (o->kind == VKP_SAMPLER_HEUN &&
      (!(s->heun_deriv = malloc(n * sizeof(float))) || !(s->heun_sample = malloc(n * sizeof(float)))))
    goto oom;
  if (o->kind == VKP_SAMPLER_DPMPP_2M && !(s->dpm_prev = malloc(n * sizeof(float)))) goto oom;
  *out = s;
  return VKP_OK;
oom:
  st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory for a sampler over %zu latent elements", n);
fail:
  vkp_sampler_free(s);
  return st;
}

void vkp_sampler_free(vkp_sampler *s) {
  if (!s) return;
  vkp_scheduler_free(s->sc);
  vkp_sampler_schedule_free(&s->sch);
  free(s->noise);
  free(s->heun_deriv);
  free(s->heun_sample);
  free(s->dpm_prev);
  free(s);
}

const vkp_sampler_schedule *vkp_sampler_get_schedule(const vkp_sampler *s) { return &s->sch; }
const vkp_scheduler *vkp_sampler_scheduler(const vkp_sampler *s) { return s->sc; }
vkp_sampler_kind vkp_sampler_get_kind(const vkp_sampler *s) { return s->kind; }
int vkp_sampler_evals(const vkp_sampler *s) { return s->sch.n_evals; }
double vkp_sampler_timestep(const vkp_sampler *s, int i) { return s->sch.timesteps[i]; }
double vkp_sampler_init_noise_sigma(const vkp_sampler *s) { return s->sch.init_noise_sigma; }

int vkp_sampler_batch(const vkp_sampler *s) { return s->batch; }

void vkp_sampler_randn(const vkp_sampler *s, vkp_rng *rng, float *out) {
  size_t item = s->n / (size_t)s->batch;
  for (int k = 0; k < s->batch; k++) vkp_rng_randn(&rng[k], out + (size_t)k * item, item);
}

void vkp_sampler_init_latents(const vkp_sampler *s, vkp_rng *rng, float *latents) {
  vkp_sampler_randn(s, rng, latents);
  float sigma = (float)s->sch.init_noise_sigma;
  for (size_t i = 0; i < s->n; i++) latents[i] = latents[i] * sigma;
}

void vkp_sampler_scale_input(const vkp_sampler *s, int i, const float *x, float *x_in) {
  if (!s->sch.scale_input) {
    if (x_in != x) memcpy(x_in, x, s->n * sizeof *x);
    return;
  }
  double sigma = s->sch.sigmas[i], c = sqrt(sigma * sigma + 1);
  for (size_t k = 0; k < s->n; k++) x_in[k] = (float)(x[k] / c);
}

void vkp_sampler_set_begin(vkp_sampler *s, int i) {
  s->begin = s->next = i;
  s->heun_second = false;
  s->dpm_lower_order_nums = 0;
}

int vkp_sampler_get_begin(const vkp_sampler *s) { return s->begin; }

void vkp_sampler_reset(vkp_sampler *s) { vkp_sampler_set_begin(s, 0); }

// ---- updates ------------------------------------------------------------------------------------

// x̂0 from a VE-space model output at noise level σ (Euler family: the model saw x/√(σ²+1)).
static inline double x0_ve(vkp_prediction p, double x, double out, double sigma) {
  switch (p) {
    case VKP_PRED_EPSILON: return x - sigma * out;
    case VKP_PRED_V: return out * (-sigma / sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1);
    case VKP_PRED_SAMPLE: return out;
  }
  return out;
}

static vkp_status step_ddim(vkp_sampler *s, int i, const float *mo, float *x, vkp_rng *rng) {
  const vkp_scheduler_config *c = &s->sc->cfg;
  double ac = s->sc->alphas_cumprod[(int)s->sch.timesteps[i]], ap = s->sch.alphas_prev[i];
  double sa = sqrt(ac), sb = sqrt(1 - ac), sap = sqrt(ap);
  double var = (1 - ap) / (1 - ac) * (1 - ac / ap), std = s->eta * sqrt(var);
  double dir = 1 - ap - std * std;
  dir = dir > 0 ? sqrt(dir) : 0;
  if (s->eta > 0) vkp_sampler_randn(s, rng, s->noise);
  for (size_t k = 0; k < s->n; k++) {
    double xk = x[k], o = mo[k], x0, eps;
    switch (c->prediction_type) {
      case VKP_PRED_EPSILON: x0 = (xk - sb * o) / sa, eps = o; break;
      case VKP_PRED_V: x0 = sa * xk - sb * o, eps = sa * o + sb * xk; break;
      default: x0 = o, eps = (xk - sa * o) / sb; break;
    }
    if (c->clip_sample) x0 = x0 < -c->clip_sample_range ? -c->clip_sample_range
                             : x0 > c->clip_sample_range ? c->clip_sample_range : x0;
    double v = sap * x0 + dir * eps;
    if (s->eta > 0) v += std * s->noise[k];
    x[k] = (float)v;
  }
  return VKP_OK;
}

static vkp_status step_euler(vkp_sampler *s, int i, const float *mo, float *x) {
  vkp_prediction p = s->sc->cfg.prediction_type;
  double sigma = s->sch.sigmas[i], dt = s->sch.sigmas[i + 1] - sigma;
  for (size_t k = 0; k < s->n; k++) {
    double xk = x[k], d = (xk - x0_ve(p, xk, mo[k], sigma)) / sigma;
    x[k] = (float)(xk + d * dt);
  }
  return VKP_OK;
}

static vkp_status step_euler_a(vkp_sampler *s, int i, const float *mo, float *x, vkp_rng *rng) {
  vkp_prediction p = s->sc->cfg.prediction_type;
  double from = s->sch.sigmas[i], to = s->sch.sigmas[i + 1];
  double up = sqrt(to * to * (from * from - to * to) / (from * from));
  double down = sqrt(to * to - up * up), dt = down - from;
  vkp_sampler_randn(s, rng, s->noise);   // drawn on every step, the last too, as diffusers
  for (size_t k = 0; k < s->n; k++) {
    double xk = x[k], d = (xk - x0_ve(p, xk, mo[k], from)) / from;
    x[k] = (float)(xk + d * dt + s->noise[k] * up);
  }
  return VKP_OK;
}

static vkp_status step_heun(vkp_sampler *s, int i, const float *mo, float *x) {
  const vkp_scheduler_config *c = &s->sc->cfg;
  double lim = c->clip_sample_range;
  if (!s->heun_second) {
    double sigma = s->sch.sigmas[i], next = s->sch.sigmas[i + 1];
    s->heun_dt = next - sigma;
    for (size_t k = 0; k < s->n; k++) {
      double xk = x[k], x0 = x0_ve(c->prediction_type, xk, mo[k], sigma);
      if (c->clip_sample) x0 = x0 < -lim ? -lim : x0 > lim ? lim : x0;
      double d = (xk - x0) / sigma;
      s->heun_deriv[k] = (float)d;
      s->heun_sample[k] = x[k];
      x[k] = (float)(xk + d * s->heun_dt);
    }
    s->heun_second = true;
  } else {
    double next = s->sch.sigmas[i];   // the second evaluation is at σ' (sigmas[i] of the doubled list)
    for (size_t k = 0; k < s->n; k++) {
      double xk = x[k], x0 = x0_ve(c->prediction_type, xk, mo[k], next);
      if (c->clip_sample) x0 = x0 < -lim ? -lim : x0 > lim ? lim : x0;
      double d = ((double)s->heun_deriv[k] + (xk - x0) / next) / 2;
      x[k] = (float)(s->heun_sample[k] + d * s->heun_dt);
    }
    s->heun_second = false;
  }
  return VKP_OK;
}

// VP α_t and σ_t of a VE σ (diffusers' _sigma_to_alpha_sigma_t), and λ = log α − log σ_t.
static void vp_of(double sigma, double *alpha, double *sigma_t, double *lambda) {
  *alpha = 1 / sqrt(sigma * sigma + 1);
  *sigma_t = sigma * *alpha;
  *lambda = log(*alpha) - log(*sigma_t);
}

static vkp_status step_dpmpp(vkp_sampler *s, int i, const float *mo, float *x) {
  const vkp_scheduler_config *c = &s->sc->cfg;
  int n_evals = s->sch.n_evals;
  bool final_lower = i == n_evals - 1 &&
                     (c->euler_at_final || (c->lower_order_final && n_evals < 15) ||
                      c->final_sigmas_type == VKP_FINAL_SIGMA_ZERO);
  bool first = c->solver_order == 1 || s->dpm_lower_order_nums < 1 || final_lower;
  double a_s, s_s, l_s, a_t, s_t, l_t;
  vp_of(s->sch.sigmas[i], &a_s, &s_s, &l_s);
  double sigma_next = s->sch.sigmas[i + 1];
  bool to_zero = sigma_next == 0;   // α_t = 1, σ_t = 0: λ_t = ∞, the update is x' = x̂0
  if (!to_zero) vp_of(sigma_next, &a_t, &s_t, &l_t);
  else a_t = 1, s_t = 0, l_t = INFINITY;
  double h = l_t - l_s, em1 = to_zero ? -1.0 : exp(-h) - 1.0, ratio = s_t / s_s;
  double d1_coef = 0;
  if (!first) {
    double a1, s1, l1;
    vp_of(s->sch.sigmas[i - 1], &a1, &s1, &l1);
    double r0 = (l_s - l1) / h;
    // D1 = (x̂0 − x̂0_prev)/r0; midpoint: −½α_t(e^{−h}−1)·D1; heun: α_t((e^{−h}−1)/h + 1)·D1
    d1_coef = (c->solver_type == VKP_DPM_MIDPOINT ? -0.5 * a_t * em1 : a_t * (em1 / h + 1.0)) / r0;
  }
  for (size_t k = 0; k < s->n; k++) {
    double xk = x[k], o = mo[k], x0;
    switch (c->prediction_type) {
      case VKP_PRED_EPSILON: x0 = (xk - s_s * o) / a_s; break;
      case VKP_PRED_V: x0 = a_s * xk - s_s * o; break;
      default: x0 = o; break;
    }
    double v = to_zero ? x0 : ratio * xk - a_t * em1 * x0;
    if (!first) v += d1_coef * (x0 - (double)s->dpm_prev[k]);
    s->dpm_prev[k] = (float)x0;
    x[k] = (float)v;
  }
  if (s->dpm_lower_order_nums < c->solver_order) s->dpm_lower_order_nums++;
  return VKP_OK;
}

vkp_status vkp_sampler_step(vkp_sampler *s, int i, const float *model_output, float *latents, vkp_rng *rng,
                            vkp_error *err) {
  if (i != s->next || i >= s->sch.n_evals)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s sampler: step %d out of order (expected %d of %d)",
                         vkp_sampler_name(s->kind), i, s->next, s->sch.n_evals);
  bool needs_rng = s->kind == VKP_SAMPLER_EULER_A || (s->kind == VKP_SAMPLER_DDIM && s->eta > 0);
  if (needs_rng && !rng)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s sampler: step %d needs a random generator for its noise",
                         vkp_sampler_name(s->kind), i);
  vkp_status st = VKP_OK;
  switch (s->kind) {
    case VKP_SAMPLER_DDIM: st = step_ddim(s, i, model_output, latents, rng); break;
    case VKP_SAMPLER_EULER: st = step_euler(s, i, model_output, latents); break;
    case VKP_SAMPLER_EULER_A: st = step_euler_a(s, i, model_output, latents, rng); break;
    case VKP_SAMPLER_HEUN: st = step_heun(s, i, model_output, latents); break;
    case VKP_SAMPLER_DPMPP_2M: st = step_dpmpp(s, i, model_output, latents); break;
    default: break;
  }
  if (st == VKP_OK) s->next++;
  return st;
}

vkp_status vkp_sampler_run(vkp_sampler *s, float *latents, vkp_denoise_fn fn, void *user, vkp_rng *rng,
                           vkp_error *err) {
  float *x_in = malloc(s->n * sizeof *x_in), *out = malloc(s->n * sizeof *out);
  vkp_status st = VKP_OK;
  if (!x_in || !out) {
    st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory for a sampling run over %zu latent elements", s->n);
    goto free_buffers;
  }
  for (int i = s->next; i < s->sch.n_evals; i++) {
    vkp_sampler_scale_input(s, i, latents, x_in);
    st = fn(user, i, s->sch.timesteps[i], x_in, out, err);
    if (st) break;
    st = vkp_sampler_step(s, i, out, latents, rng, err);
    if (st) break;
  }
free_buffers:
  free(x_in);
  free(out);
  return st;
}

// ---- img2img ------------------------------------------------------------------------------------

int vkp_sampler_strength_begin(const vkp_sampler *s, double strength) {
  int steps = s->sch.steps, order = s->kind == VKP_SAMPLER_HEUN ? 2 : 1;
  if (!(strength > 0)) return s->sch.n_evals;
  if (strength > 1) strength = 1;
  int init = (int)(steps * strength);
  if (init > steps) init = steps;
  int start = (steps - init) * order;
  return start < s->sch.n_evals ? start : s->sch.n_evals;
}

void vkp_sampler_add_noise(const vkp_sampler *s, int i, const float *x0, const float *noise, float *out) {
  if (s->kind == VKP_SAMPLER_DDIM) {
    double ac = s->sc->alphas_cumprod[(int)s->sch.timesteps[i]], a = sqrt(ac), b = sqrt(1 - ac);
    for (size_t k = 0; k < s->n; k++) out[k] = (float)(a * x0[k] + b * noise[k]);
  } else if (s->kind == VKP_SAMPLER_DPMPP_2M) {
    double a, st, l;
    vp_of(s->sch.sigmas[i], &a, &st, &l);
    for (size_t k = 0; k < s->n; k++) out[k] = (float)(a * x0[k] + st * noise[k]);
  } else {
    double sigma = s->sch.sigmas[i];
    for (size_t k = 0; k < s->n; k++) out[k] = (float)(x0[k] + noise[k] * sigma);
  }
}

// ---- guidance -----------------------------------------------------------------------------------

void vkp_cfg_combine(const float *uncond, const float *cond, float scale, size_t n, float *out) {
  for (size_t i = 0; i < n; i++) {
    float diff = cond[i] - uncond[i];
    float scaled = scale * diff;
    out[i] = uncond[i] + scaled;
  }
}

// torch.std (unbiased) of n floats, in double.
static double std_unbiased(const float *x, size_t n) {
  if (n < 2) return 0;
  double mean = 0, ss = 0;
  for (size_t i = 0; i < n; i++) mean += x[i];
  mean /= (double)n;
  for (size_t i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
  return sqrt(ss / (double)(n - 1));
}

void vkp_cfg_rescale(const float *cond, float *guided, int batch, size_t item, double phi) {
  for (int b = 0; b < batch; b++) {
    const float *c = cond + (size_t)b * item;
    float *g = guided + (size_t)b * item;
    double sc = std_unbiased(c, item), sg = std_unbiased(g, item);
    double f = sg > 0 ? sc / sg : 1.0;
    for (size_t i = 0; i < item; i++) g[i] = (float)(phi * g[i] * f + (1 - phi) * g[i]);
  }
}
