// test_schedulers.c — diffusion noise schedules and samplers (diffusion/scheduler*.c, sampler*.c)
// against diffusers and against float64 references written here.
//
//  1. The fixture (../shared/fixtures/unet/sampling.safetensors, diffusers with Stable Diffusion's
//     schedule): ddpm/alphas_cumprod (bit for bit), ddim10/timesteps, euler10/timesteps and
//     euler10/sigmas, from SD 1.5's own scheduler_config.json (a PNDMScheduler config, which the
//     DDIM and Euler samplers read with their own class defaults, as diffusers' from_config does).
//  2. Every sampler × {default, Karras} × {epsilon, v} on an analytic denoiser: data x0 ~ N(μ, s²)
//     per element, whose exact posterior mean D(x, σ) = (s²x + σ²μ)/(s² + σ²) gives the model
//     output in closed form. (a) Final latents against a float64 reference of the same update rule
//     written here from the papers / k-diffusion (not diffusers' bookkeeping), on a schedule
//     computed here too (rel < 1e-5). (b) Convergence: started from the exact noisy marginal, the
//     deterministic samplers approach the exact probability-flow solution at their order, and every
//     sampler, the stochastic ones (Euler a, DDIM η = 1) included, gives samples with the data's
//     mean; the stochastic ones with the variance their discrete chain must have.
//  3. Timestep spacings (leading + steps_offset, trailing, linspace) of DDIM, Euler and DPM-Solver
//     for 10/20/25/50 steps against tables transcribed from diffusers' formulas.
//  4. Zero terminal SNR: ᾱ_{T-1} = 0 exactly, the rest as Lin et al.'s formula.
//  5. Bad configs: errors naming the file and the key.
//  6. Training helpers, guidance, class defaults, Heun's doubled timesteps, img2img, names.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_fileio.h"
#include "vkp_safetensors.h"
#include "vkp_sampler.h"
#include "vkp_scheduler.h"
#include "vkp_test.h"

#define T_TRAIN 1000

// Stable Diffusion 1.5's scheduler/scheduler_config.json as on the hub.
static const char *const SD15_CONFIG =
    "{\"_class_name\": \"PNDMScheduler\", \"_diffusers_version\": \"0.6.0\", \"beta_end\": 0.012,"
    " \"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"num_train_timesteps\": 1000,"
    " \"set_alpha_to_one\": false, \"skip_prk_steps\": true, \"steps_offset\": 1, \"trained_betas\": null,"
    " \"clip_sample\": false}";

static void write_text(void **state, const char *name, const char *text, char *path, size_t cap) {
  vkp_error err = {0};
  vkp_test_dir_path(state, name, path, cap);
  const void *chunks[1] = {text};
  size_t sizes[1] = {strlen(text)};
  if (vkp_file_write_atomic(path, chunks, sizes, 1, &err)) fail_msg("%s", err.msg);
}

static void load_config(void **state, const char *json, vkp_scheduler_config *c) {
  char path[256];
  vkp_error err = {0};
  write_text(state, "scheduler_config.json", json, path, sizeof path);
  if (vkp_scheduler_config_load(path, c, &err)) fail_msg("%s", err.msg);
}

// SD 1.5's config with a prediction type and extra keys spliced in.
static void sd_config(void **state, vkp_prediction pred, const char *extra, vkp_scheduler_config *c) {
  char json[1024];
  snprintf(json, sizeof json, "{\"_class_name\": \"PNDMScheduler\", \"beta_end\": 0.012, \"beta_schedule\": "
           "\"scaled_linear\", \"beta_start\": 0.00085, \"num_train_timesteps\": 1000, \"set_alpha_to_one\": false, "
           "\"steps_offset\": 1, \"clip_sample\": false, \"prediction_type\": \"%s\"%s%s}",
           pred == VKP_PRED_V ? "v_prediction" : "epsilon", extra ? ", " : "", extra ? extra : "");
  load_config(state, json, c);
}

static vkp_sampler *new_sampler(const vkp_scheduler_config *c, vkp_sampler_kind kind, int steps, int karras,
                                size_t n) {
  vkp_sampler_opts o = vkp_sampler_opts_default(kind, steps);
  o.karras = karras;
  vkp_sampler *s;
  vkp_error err = {0};
  if (vkp_sampler_new(c, &o, n, &s, &err)) fail_msg("%s: %s", vkp_sampler_name(kind), err.msg);
  return s;
}

// ---- 1. the diffusers fixture ------------------------------------------------------------------

static void test_fixture(void **state) {
  vkp_error err = {0};
  vkp_safetensors *st;
  if (vkp_safetensors_open(vkp_fixture_path("unet/sampling.safetensors"), &st, &err)) fail_msg("%s", err.msg);
  float ac[T_TRAIN], ddim_t[10], euler_t[10], euler_s[11];
  assert_int_equal(vkp_safetensors_read_f32(st, "ddpm/alphas_cumprod", ac, T_TRAIN, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_read_f32(st, "ddim10/timesteps", ddim_t, 10, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_read_f32(st, "euler10/timesteps", euler_t, 10, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_read_f32(st, "euler10/sigmas", euler_s, 11, &err), VKP_OK);
  vkp_safetensors_free(st);

  vkp_scheduler_config c;
  load_config(state, SD15_CONFIG, &c);
  assert_int_equal(c.cls, VKP_SCHED_PNDM);
  vkp_scheduler *s;
  assert_int_equal(vkp_scheduler_new(&c, VKP_SCHED_DDPM, &s, &err), VKP_OK);
  int exact = 0;
  for (int t = 0; t < T_TRAIN; t++) exact += (float)s->alphas_cumprod[t] == ac[t];
  double rel = 0;
  for (int t = 0; t < T_TRAIN; t++) rel = fmax(rel, fabs(s->alphas_cumprod[t] - ac[t]) / ac[t]);
  printf("ddpm/alphas_cumprod: %d of %d bit-exact, max rel %.3g\n", exact, T_TRAIN, rel);
  assert_true(rel <= 1e-6);
  assert_int_equal(exact, T_TRAIN);   // torch's float32 linspace (fused) and cumprod (double) reproduced
  vkp_scheduler_free(s);

  // DDIMScheduler.from_config(sd15): leading spacing (DDIM's default) + steps_offset 1
  vkp_sampler *d = new_sampler(&c, VKP_SAMPLER_DDIM, 10, VKP_SAMPLER_FROM_CONFIG, 4);
  const vkp_sampler_schedule *sd = vkp_sampler_get_schedule(d);
  assert_int_equal(sd->n_evals, 10);
  for (int i = 0; i < 10; i++) assert_true(sd->timesteps[i] == ddim_t[i]);
  assert_true(sd->alphas_prev[9] == vkp_sampler_scheduler(d)->alphas_cumprod[0]);   // set_alpha_to_one: false
  assert_true(sd->alphas_prev[0] == vkp_sampler_scheduler(d)->alphas_cumprod[801]);
  vkp_sampler_free(d);

  // EulerDiscreteScheduler.from_config(sd15): linspace (Euler's default), linear interpolation
  vkp_sampler *e = new_sampler(&c, VKP_SAMPLER_EULER, 10, VKP_SAMPLER_FROM_CONFIG, 4);
  const vkp_sampler_schedule *se = vkp_sampler_get_schedule(e);
  double worst = 0;
  for (int i = 0; i < 10; i++) assert_true(se->timesteps[i] == euler_t[i]);
  for (int i = 0; i <= 10; i++) {
    double r = euler_s[i] == 0 ? fabs(se->sigmas[i]) : fabs(se->sigmas[i] - euler_s[i]) / euler_s[i];
    worst = fmax(worst, r);
  }
  printf("euler10/sigmas: max rel %.3g; init_noise_sigma %.9g\n", worst, se->init_noise_sigma);
  assert_true(worst <= 1e-6);
  assert_true(se->init_noise_sigma == euler_s[0]);   // linspace: max σ
  assert_true(se->scale_input);
  vkp_sampler_free(e);
  vkp_scheduler_config_free(&c);
}

// ---- 2. the analytic denoiser and the float64 references ---------------------------------------
// Data: x0_i ~ N(μ_i, s_i²) independently per element, so the exact denoiser (posterior mean of x0
// given x = x0 + σ·ε) is D(x, σ) = (s²x + σ²μ)/(s² + σ²) and the exact model outputs are
// ε = (x − D)/σ and v = √ᾱ·ε − √(1−ᾱ)·D (√ᾱ = 1/√(σ²+1)). The model sees what a UNet sees: its
// input (x/√(σ²+1) = the VP latents, for every sampler) and the timestep t; it maps t to σ by
// interpolating log σ between the integer timesteps of the training schedule.

typedef struct gauss_model {
  int n;
  const double *mu, *s2;      // (n)
  vkp_prediction pred;
  double sig[T_TRAIN], log_sig[T_TRAIN];   // σ_t = √((1−ᾱ_t)/ᾱ_t) in double
  int calls;
  double *buf[4];             // (n) scratch of model_cb and ref_denoise; model_free frees them
} gauss_model;

static void model_init(gauss_model *m, const vkp_scheduler *sc, int n, const double *mu, const double *s2,
                       vkp_prediction pred) {
  m->n = n, m->mu = mu, m->s2 = s2, m->pred = pred, m->calls = 0;
  for (int i = 0; i < 4; i++)
    if (!(m->buf[i] = calloc((size_t)n, sizeof(double)))) fail_msg("out of memory");
  for (int t = 0; t < T_TRAIN; t++) {
    double ac = sc->alphas_cumprod[t];
    m->sig[t] = sqrt((1 - ac) / ac);
    m->log_sig[t] = log(m->sig[t]);
  }
}

static void model_free(gauss_model *m) {
  for (int i = 0; i < 4; i++) free(m->buf[i]);
}

static double model_sigma(const gauss_model *m, double t) {
  if (t <= 0) return m->sig[0];
  if (t >= T_TRAIN - 1) return m->sig[T_TRAIN - 1];
  int j = (int)floor(t);
  double w = t - j;
  return exp((1 - w) * m->log_sig[j] + w * m->log_sig[j + 1]);
}

static void model_eval(gauss_model *m, const double *x_in, double t, double *out) {
  double sigma = model_sigma(m, t), c = sqrt(sigma * sigma + 1);
  m->calls++;
  for (int i = 0; i < m->n; i++) {
    double x = x_in[i] * c, d = (m->s2[i] * x + sigma * sigma * m->mu[i]) / (m->s2[i] + sigma * sigma);
    double eps = (x - d) / sigma;
    out[i] = m->pred == VKP_PRED_EPSILON ? eps : (eps - sigma * d) / c;
  }
}

// The library's callback: float in, the double model, float out.
static vkp_status model_cb(void *user, int i, double t, const float *x_in, float *out, vkp_error *err) {
  gauss_model *m = user;
  double *xd = m->buf[0], *od = m->buf[1];
  for (int k = 0; k < m->n; k++) xd[k] = x_in[k];
  model_eval(m, xd, t, od);
  for (int k = 0; k < m->n; k++) out[k] = (float)od[k];
  return VKP_OK;
}

// x̂0 from the model's output at VE noise level σ, with x the VE latents (x = x0 + σε).
static double ref_x0(vkp_prediction pred, double x, double out, double sigma) {
  double c = sqrt(sigma * sigma + 1);
  if (pred == VKP_PRED_EPSILON) return x - sigma * out;
  return x / (c * c) - sigma / c * out;   // v: √ᾱ·x_vp − √(1−ᾱ)·v with x_vp = x/c
}

// D(x, σ) as the sampler sees it: evaluate the model on x/√(σ²+1) at t, convert.
static void ref_denoise(gauss_model *m, const double *x, double sigma, double t, double *d) {
  int n = m->n;
  double *xin = m->buf[2], *o = m->buf[3], c = sqrt(sigma * sigma + 1);
  for (int k = 0; k < n; k++) xin[k] = x[k] / c;
  model_eval(m, xin, t, o);
  for (int k = 0; k < n; k++) d[k] = ref_x0(m->pred, x[k], o[k], sigma);
}

// The reference schedule: computed here from ᾱ (double) and diffusers' formulas.
#define MAX_STEPS 256
typedef struct ref_sched {
  int n;                          // steps
  double t[MAX_STEPS];            // timesteps
  double sigma[MAX_STEPS + 1];    // VE σ (DDIM: unused)
  double ac[MAX_STEPS], ac_prev[MAX_STEPS];   // DDIM
} ref_sched;

// np.interp over the σ table at a fractional t.
static double interp_sigma(const gauss_model *m, double t) {
  if (t <= 0) return m->sig[0];
  if (t >= T_TRAIN - 1) return m->sig[T_TRAIN - 1];
  int j = (int)floor(t);
  return m->sig[j] + (m->sig[j + 1] - m->sig[j]) * (t - j);
}

// The fractional timestep whose log-interpolated σ is sigma (inverse of model_sigma).
static double t_of_sigma(const gauss_model *m, double sigma) {
  double l = log(sigma);
  if (l <= m->log_sig[0]) return 0;
  for (int j = 0; j < T_TRAIN - 1; j++)
    if (l < m->log_sig[j + 1]) return j + (l - m->log_sig[j]) / (m->log_sig[j + 1] - m->log_sig[j]);
  return T_TRAIN - 1;
}

// Karras et al. (2022) eq. 5 with ρ = 7.
static double karras_sigma(double smin, double smax, int i, int n) {
  double a = pow(smax, 1 / 7.0), b = pow(smin, 1 / 7.0);
  return pow(a + (n == 1 ? 0 : (double)i / (n - 1)) * (b - a), 7.0);
}

static void ref_schedule(const gauss_model *m, const vkp_scheduler *sc, vkp_sampler_kind kind, int n, bool karras,
                         bool alpha_to_one, ref_sched *r) {
  memset(r, 0, sizeof *r);
  r->n = n;
  if (kind == VKP_SAMPLER_DDIM) {   // leading + steps_offset 1 (SD's config); prev = t − T/n
    for (int k = 0; k < n; k++) {
      int t = (n - 1 - k) * (T_TRAIN / n) + 1, prev = t - T_TRAIN / n;
      r->t[k] = t;
      r->ac[k] = sc->alphas_cumprod[t];
      r->ac_prev[k] = prev >= 0 ? sc->alphas_cumprod[prev] : alpha_to_one ? 1.0 : sc->alphas_cumprod[0];
    }
    return;
  }
  if (kind == VKP_SAMPLER_DPMPP_2M) {   // linspace over n+1 points, rounded, the last (0) dropped
    for (int k = 0; k < n; k++) {
      double t = rint((double)(n - k) * (T_TRAIN - 1) / n);
      if (karras) {
        r->sigma[k] = karras_sigma(m->sig[0], m->sig[T_TRAIN - 1], k, n);
        t = rint(t_of_sigma(m, r->sigma[k]));
      } else {
        r->sigma[k] = m->sig[(int)t];
      }
      r->t[k] = t;
    }
    r->sigma[n] = 0;
    return;
  }
  // Euler family: linspace(0, T−1, n) as float32, σ linearly interpolated
  for (int k = 0; k < n; k++) {
    int i = n - 1 - k;
    r->t[k] = n == 1 ? 0 : (float)(i == n - 1 ? T_TRAIN - 1 : i * ((T_TRAIN - 1.0) / (n - 1)));
    r->sigma[k] = interp_sigma(m, r->t[k]);
  }
  if (karras) {
    double smin = r->sigma[n - 1], smax = r->sigma[0];
    for (int k = 0; k < n; k++) {
      r->sigma[k] = karras_sigma(smin, smax, k, n);
      r->t[k] = t_of_sigma(m, r->sigma[k]);
    }
  }
  r->sigma[n] = 0;
}

// DDIM (Song et al. 2021, eq. 12) on VP latents x_t = √ᾱ x0 + √(1−ᾱ) ε; η scales the noise.
static void ref_ddim(gauss_model *m, const ref_sched *r, double eta, double *x, vkp_rng *rng) {
  int n = m->n;
  double *o = malloc((size_t)n * sizeof *o);
  float *z = malloc((size_t)n * sizeof *z);
  for (int k = 0; k < r->n; k++) {
    double a = r->ac[k], ap = r->ac_prev[k];
    model_eval(m, x, r->t[k], o);
    double sig = eta * sqrt((1 - ap) / (1 - a)) * sqrt(1 - a / ap);
    if (eta > 0) vkp_rng_randn(rng, z, (size_t)n);
    for (int i = 0; i < n; i++) {
      double x0, eps;
      if (m->pred == VKP_PRED_EPSILON) x0 = (x[i] - sqrt(1 - a) * o[i]) / sqrt(a), eps = o[i];
      else x0 = sqrt(a) * x[i] - sqrt(1 - a) * o[i], eps = sqrt(a) * o[i] + sqrt(1 - a) * x[i];
      x[i] = sqrt(ap) * x0 + sqrt(fmax(0, 1 - ap - sig * sig)) * eps + (eta > 0 ? sig * z[i] : 0);
    }
  }
  free(o);
  free(z);
}

// k-diffusion's sample_euler / sample_euler_ancestral (eta 1) / sample_heun on VE latents.
static void ref_euler(gauss_model *m, const ref_sched *r, bool ancestral, double *x, vkp_rng *rng) {
  int n = m->n;
  double *d = malloc((size_t)n * sizeof *d);
  float *z = malloc((size_t)n * sizeof *z);
  for (int k = 0; k < r->n; k++) {
    double s = r->sigma[k], s1 = r->sigma[k + 1], down = s1, up = 0;
    ref_denoise(m, x, s, r->t[k], d);
    if (ancestral) {
      up = fmin(s1, sqrt(s1 * s1 * (s * s - s1 * s1) / (s * s)));
      down = sqrt(s1 * s1 - up * up);
      vkp_rng_randn(rng, z, (size_t)n);
    }
    for (int i = 0; i < n; i++) x[i] += (x[i] - d[i]) / s * (down - s) + (ancestral ? z[i] * up : 0);
  }
  free(d);
  free(z);
}

static void ref_heun(gauss_model *m, const ref_sched *r, double *x) {
  int n = m->n;
  double *d = malloc((size_t)n * sizeof *d), *d1 = malloc((size_t)n * sizeof *d1), *x2 = malloc((size_t)n * sizeof *x2);
  for (int k = 0; k < r->n; k++) {
    double s = r->sigma[k], s1 = r->sigma[k + 1], dt = s1 - s;
    ref_denoise(m, x, s, r->t[k], d);
    for (int i = 0; i < n; i++) d1[i] = (x[i] - d[i]) / s, x2[i] = x[i] + d1[i] * dt;
    if (s1 == 0) {   // Euler on the last step
      memcpy(x, x2, (size_t)n * sizeof *x);
      continue;
    }
    ref_denoise(m, x2, s1, r->t[k + 1], d);
    for (int i = 0; i < n; i++) x[i] += (d1[i] + (x2[i] - d[i]) / s1) / 2 * dt;
  }
  free(d);
  free(d1);
  free(x2);
}

// k-diffusion's sample_dpmpp_2m (Lu et al. 2022, DPM-Solver++(2M)) on VE latents, t = −log σ, with
// DPMSolverMultistepScheduler's options: order 1, the "heun" solver type (Lu et al. eq. for the
// second-order term: ((e^{−h} − 1)/h + 1)·D1 instead of −½(e^{−h} − 1)·D1), and a first-order
// last step (`final_first`).
typedef struct dpm_opts {
  int order;
  bool heun_type, final_first;
} dpm_opts;

static void ref_dpmpp(gauss_model *m, const ref_sched *r, const dpm_opts *o, double *x) {
  int n = m->n;
  double *d = malloc((size_t)n * sizeof *d), *old = malloc((size_t)n * sizeof *old);
  for (int k = 0; k < r->n; k++) {
    double s = r->sigma[k], s1 = r->sigma[k + 1];
    ref_denoise(m, x, s, r->t[k], d);
    if (s1 == 0) {
      memcpy(x, d, (size_t)n * sizeof *x);
      continue;
    }
    double h = -log(s1) + log(s);
    bool first = k == 0 || o->order == 1 || (k == r->n - 1 && o->final_first);
    double rr = first ? 0 : (log(r->sigma[k - 1]) - log(s)) / h;   // h_last / h
    for (int i = 0; i < n; i++) {
      double v = (s1 / s) * x[i] - expm1(-h) * d[i];
      if (!first) {
        double d1 = (d[i] - old[i]) / rr;
        v += o->heun_type ? (expm1(-h) / h + 1) * d1 : -0.5 * expm1(-h) * d1;
      }
      x[i] = v;
    }
    memcpy(old, d, (size_t)n * sizeof *d);
  }
  free(d);
  free(old);
}

static void ref_dpmpp_2m(gauss_model *m, const ref_sched *r, double *x) {
  ref_dpmpp(m, r, &(dpm_opts){.order = 2}, x);
}

static void ref_run(gauss_model *m, const ref_sched *r, vkp_sampler_kind kind, double eta, double *x, vkp_rng *rng) {
  switch (kind) {
    case VKP_SAMPLER_DDIM: ref_ddim(m, r, eta, x, rng); break;
    case VKP_SAMPLER_EULER: ref_euler(m, r, false, x, rng); break;
    case VKP_SAMPLER_EULER_A: ref_euler(m, r, true, x, rng); break;
    case VKP_SAMPLER_HEUN: ref_heun(m, r, x); break;
    case VKP_SAMPLER_DPMPP_2M: ref_dpmpp_2m(m, r, x); break;
    default: fail_msg("kind");
  }
}

// The library's schedule against the reference's: timesteps exactly where they are integers or
// float32 values of the same formula; Karras timesteps to 1e-3 (float32 rounding of a fractional t
// and of diffusers' float32 log σ table); sigmas to 1e-6 relative (float32 rounding).
static void check_schedule(const vkp_sampler_schedule *sch, const ref_sched *r, vkp_sampler_kind kind, bool karras,
                           const char *what) {
  bool heun = kind == VKP_SAMPLER_HEUN;
  assert_int_equal(sch->n_evals, heun ? 2 * r->n - 1 : r->n);
  for (int k = 0; k < r->n; k++) {
    int e = heun && k > 0 ? 2 * k - 1 : k;   // Heun: t_k at evaluations 2k−1 and 2k
    double tol = karras && kind != VKP_SAMPLER_DPMPP_2M ? 1e-3 : 0;
    if (!(fabs(sch->timesteps[e] - r->t[k]) <= tol))
      fail_msg("%s: timestep %d is %.9g, reference %.9g", what, k, sch->timesteps[e], r->t[k]);
    if (heun && k > 0) assert_true(sch->timesteps[2 * k] == sch->timesteps[2 * k - 1]);
    if (kind == VKP_SAMPLER_DDIM) {
      assert_true(sch->alphas_prev[k] == r->ac_prev[k]);
      continue;
    }
    double got = sch->sigmas[e];
    if (!(fabs(got - r->sigma[k]) <= 1e-6 * r->sigma[k]))
      fail_msg("%s: sigma %d is %.9g, reference %.9g", what, k, got, r->sigma[k]);
  }
  if (kind != VKP_SAMPLER_DDIM) assert_true(sch->sigmas[sch->n_evals] == 0);
}

// A deterministic data set: μ_i in [−0.5, 0.7], s_i in [0.25, 0.75].
static void data_init(int n, double *mu, double *s2) {
  for (int i = 0; i < n; i++) {
    mu[i] = 0.6 * sin(0.37 * i) + 0.1;
    double s = 0.25 + 0.05 * ((i * 7) % 11);
    s2[i] = s * s;
  }
}

static const char *pred_name(vkp_prediction p) { return p == VKP_PRED_V ? "v" : "epsilon"; }

// 2a: library vs reference, same start, same noise (Euler a, DDIM η = 1: the same torch.randn stream),
// 10 and 25 steps (DPM++ 2M's lower_order_final applies below 15). The library stores latents and
// sigmas in float32 (diffusers' precision) and the reference keeps everything in double, so they
// differ by float32 rounding accumulated over the steps: required < 1e-5 relative to the latents'
// scale and per element (relative to max(|x|, 0.25), the smallest data s); measured ≤ 2.2e-7 and
// ≤ 1.4e-6.
static void test_reference(void **state) {
  enum { N = 256 };
  double mu[N], s2[N], xr[N];
  float x[N];
  data_init(N, mu, s2);
  const int steps_list[] = {10, 25};
  double worst_all = 0;
  for (int kind = 0; kind < VKP_SAMPLER_COUNT; kind++)
    for (int karras = 0; karras < 2; karras++)
      for (int p = 0; p < 2; p++)
        for (int si = 0; si < 2; si++)
          for (int eta_i = 0; eta_i < (kind == VKP_SAMPLER_DDIM ? 2 : 1); eta_i++) {
            if (karras && kind == VKP_SAMPLER_DDIM) continue;
            vkp_prediction pred = p ? VKP_PRED_V : VKP_PRED_EPSILON;
            int steps = steps_list[si];
            double eta = eta_i;
            vkp_scheduler_config c;
            sd_config(state, pred, NULL, &c);
            vkp_sampler_opts o = vkp_sampler_opts_default((vkp_sampler_kind)kind, steps);
            o.karras = karras;
            o.eta = eta;
            vkp_sampler *s;
            vkp_error err = {0};
            if (vkp_sampler_new(&c, &o, N, &s, &err)) fail_msg("%s", err.msg);
            char what[96];
            snprintf(what, sizeof what, "%s%s %s %d steps%s", vkp_sampler_name(kind), karras ? " karras" : "",
                     pred_name(pred), steps, eta > 0 ? " eta 1" : "");
            gauss_model m;
            model_init(&m, vkp_sampler_scheduler(s), N, mu, s2, pred);
            ref_sched r;
            ref_schedule(&m, vkp_sampler_scheduler(s), kind, steps, karras, false, &r);
            check_schedule(vkp_sampler_get_schedule(s), &r, kind, karras, what);

            vkp_rng rng = vkp_rng_new(1234);
            vkp_sampler_init_latents(s, &rng, x);
            vkp_rng rng_ref = rng;   // the stream after the initial latents, for the ancestral noise
            // DPM++ keeps VP latents (init_noise_sigma 1); the k-diffusion reference runs on VE ones
            double to_ve = kind == VKP_SAMPLER_DPMPP_2M ? sqrt(r.sigma[0] * r.sigma[0] + 1) : 1;
            for (int i = 0; i < N; i++) xr[i] = x[i] * to_ve;
            if (vkp_sampler_run(s, x, model_cb, &m, &rng, &err)) fail_msg("%s: %s", what, err.msg);
            int lib_calls = m.calls;
            m.calls = 0;
            ref_run(&m, &r, kind, eta, xr, &rng_ref);
            assert_int_equal(lib_calls, m.calls);
            // relative to the latents' scale, and per element relative to max(|x|, 0.25) (the smallest s)
            double scale = 0, worst = 0;
            for (int i = 0; i < N; i++) scale = fmax(scale, fabs(xr[i]));
            for (int i = 0; i < N; i++) worst = fmax(worst, fabs(x[i] - xr[i]) / scale);
            double rel = vkp_max_rel_err(x, xr, N, 0.25);
            printf("%-34s final latents: max|Δ|/max|x| %.2e, per element %.2e, %d model calls\n", what, worst, rel,
                   lib_calls);
            worst_all = fmax(worst_all, fmax(worst, rel));
            if (!(worst < 1e-5 && rel < 1e-5))
              fail_msg("%s: final latents differ from the float64 reference by %.3g (%.3g per element)", what, worst,
                       rel);
            model_free(&m);
            vkp_sampler_free(s);
            vkp_scheduler_config_free(&c);
          }
  printf("worst over all samplers: %.2e\n", worst_all);
}

// 2b: convergence. Started from the exact noisy marginal at the first noise level σ0 (VE latents
// x = μ + √(s² + σ0²)·z), the probability-flow ODE with the exact denoiser keeps x − μ ∝ √(s² + σ²)
// and the reverse SDE keeps x ~ N(μ, s² + σ²), down to any σ. diffusers' schedules (like
// k-diffusion's) end with one first-order step from the last noise level σ_L = σ(t_last) > 0 to 0,
// and every sampler's last step lands on x̂0 = D(x, σ_L); so the limit of many steps is
//   deterministic: x* = D(μ + √(s² + σ_L²) z, σ_L) = μ + s·z·s/√(s² + σ_L²), element by element;
//   stochastic:    x ~ N(μ, s²·s²/(s² + σ_L²)).
// Checks, with r_i = (x_i − μ_i)/s_i over N = 20000 elements:
//  - mean: every update keeps μ fixed (D(μ, σ) = μ), so mean(r) differs from 0 only by the start's
//    sampling error, at most 1/√N = 0.0071 in standard deviation (the flow contracts, the added
//    noise is zero-mean): |mean r| < 4/√N = 0.028 for every sampler at 200 steps;
//  - deterministic samplers: e(n) = max_i |r_i − r*_i| must fall from 50 to 200 steps and be below
//    0.12 (first order: DDIM, Euler) or 0.01 (second order: Heun, DPM++ 2M) at 200; on the Karras
//    schedule it must fall at the sampler's order, e(50)/e(200) > 3 (first) or > 6 (second; ideal
//    4 and 16). (Not on linspace-in-t schedules: their last few steps have a fixed size in
//    log σ whatever n is, which caps every solver near first order there.)
//  - stochastic samplers (Euler a, DDIM η = 1): each step is y' = a·y + b·ξ on y = x − μ (VE), so
//    the variance the chain must produce, Σ_i v_i/s_i² / N, follows exactly from the schedule by
//    v' = a²v + b² (computed here): the 200-step sample variance must match it within
//    4·√(2/N) = 0.057 (its sampling error), and the chain's distance to the continuous limit
//    s²/(s² + σ_L²) must shrink at first order: by more than 1.8× from 200 to 500 steps (2.5× ideal,
//    measured 2.1–3.0). (Euler a on the linspace schedule is 7% low at 200 steps, 3% at 500.)

// Expected var(r) of a stochastic sampler's 200-step chain (see above), and its continuous limit.
static void chain_variance(const gauss_model *m, const vkp_sampler_schedule *sch, const vkp_scheduler *sc,
                           vkp_sampler_kind kind, double *chain, double *limit) {
  double sum = 0, lim = 0;
  for (int i = 0; i < m->n; i++) {
    double s2 = m->s2[i], v = 0, sl = 0;
    for (int k = 0; k < sch->n_evals; k++) {
      double a, b, sig;
      if (kind == VKP_SAMPLER_DDIM) {
        double ac = sc->alphas_cumprod[(int)sch->timesteps[k]], ap = sch->alphas_prev[k];
        sig = sqrt((1 - ac) / ac);
        double se = sqrt((1 - ap) / (1 - ac)) * sqrt(1 - ac / ap);   // η = 1
        a = s2 / (s2 + sig * sig) + sqrt(fmax(0, 1 - ap - se * se) / ap) * sig / (s2 + sig * sig);
        b = se / sqrt(ap);
      } else {
        sig = sch->sigmas[k];
        double to = sch->sigmas[k + 1], up = sqrt(to * to * (sig * sig - to * to) / (sig * sig));
        double down = sqrt(to * to - up * up);
        a = 1 + (down - sig) * sig / (s2 + sig * sig);
        b = up;
      }
      if (k == 0) v = s2 + sig * sig;
      v = a * a * v + b * b;
      sl = sig;
    }
    sum += v / s2;
    lim += s2 / (s2 + sl * sl);
  }
  *chain = sum / m->n;
  *limit = lim / m->n;
}

static void test_convergence(void **state) {
  enum { N = 20000 };
  double *mu = malloc(N * sizeof *mu), *s2 = malloc(N * sizeof *s2);
  float *z = malloc(N * sizeof *z), *x = malloc(N * sizeof *x);
  data_init(N, mu, s2);
  vkp_rng zr = vkp_rng_new(7);
  vkp_rng_randn(&zr, z, N);
  for (int kind = 0; kind < VKP_SAMPLER_COUNT; kind++)
    for (int karras = 0; karras < 2; karras++)
      for (int p = 0; p < 2; p++)
        for (int eta_i = 0; eta_i < (kind == VKP_SAMPLER_DDIM ? 2 : 1); eta_i++) {
          if (karras && kind == VKP_SAMPLER_DDIM) continue;
          vkp_prediction pred = p ? VKP_PRED_V : VKP_PRED_EPSILON;
          bool stochastic = kind == VKP_SAMPLER_EULER_A || eta_i;
          int order = kind == VKP_SAMPLER_HEUN || kind == VKP_SAMPLER_DPMPP_2M ? 2 : 1;
          double e[2] = {0, 0}, mean = 0, var = 0, chain = 0, limit = 0;
          char what[96];
          snprintf(what, sizeof what, "%s%s %s%s", vkp_sampler_name(kind), karras ? " karras" : "", pred_name(pred),
                   eta_i ? " eta 1" : "");
          double gap500 = 0;
          for (int si = 0; si < 3; si++) {
            int steps = si == 0 ? 50 : si == 1 ? 200 : 500;
            if (si == 2 && !stochastic) break;
            vkp_scheduler_config c;
            sd_config(state, pred, "\"set_alpha_to_one\": true", &c);   // DDIM's last step to ᾱ = 1
            vkp_sampler_opts o = vkp_sampler_opts_default((vkp_sampler_kind)kind, steps);
            o.karras = karras;
            o.eta = eta_i;
            vkp_sampler *s;
            vkp_error err = {0};
            if (vkp_sampler_new(&c, &o, N, &s, &err)) fail_msg("%s", err.msg);
            const vkp_sampler_schedule *sch = vkp_sampler_get_schedule(s);
            gauss_model m;
            model_init(&m, vkp_sampler_scheduler(s), N, mu, s2, pred);
            if (si == 2) {   // the 500-step chain's variance only
              double ch, li;
              chain_variance(&m, sch, vkp_sampler_scheduler(s), kind, &ch, &li);
              gap500 = fabs(ch - li);
              model_free(&m);
              vkp_sampler_free(s);
              vkp_scheduler_config_free(&c);
              continue;
            }
            bool ddim = kind == VKP_SAMPLER_DDIM;
            double s0 = ddim ? m.sig[(int)sch->timesteps[0]] : sch->sigmas[0];
            double sl = ddim ? m.sig[(int)sch->timesteps[sch->n_evals - 1]] : sch->sigmas[sch->n_evals - 1];
            double vp = sch->scale_input ? 1 : 1 / sqrt(s0 * s0 + 1);   // DDIM, DPM++: VP latents
            for (int i = 0; i < N; i++) x[i] = (float)((mu[i] + sqrt(s2[i] + s0 * s0) * z[i]) * vp);
            vkp_rng rng = vkp_rng_new(99);
            if (vkp_sampler_run(s, x, model_cb, &m, &rng, &err)) fail_msg("%s: %s", what, err.msg);
            mean = var = 0;
            for (int i = 0; i < N; i++) {
              double r = (x[i] - mu[i]) / sqrt(s2[i]);
              e[si] = fmax(e[si], fabs(r - z[i] * sqrt(s2[i] / (s2[i] + sl * sl))));
              mean += r;
            }
            mean /= N;
            for (int i = 0; i < N; i++) {
              double r = (x[i] - mu[i]) / sqrt(s2[i]);
              var += (r - mean) * (r - mean);
            }
            var /= N - 1;
            if (stochastic) chain_variance(&m, sch, vkp_sampler_scheduler(s), kind, &chain, &limit);
            model_free(&m);
            vkp_sampler_free(s);
            vkp_scheduler_config_free(&c);
          }
          double lim_mean = 4 / sqrt(N), lim_var = 4 * sqrt(2.0 / N);
          if (stochastic)
            printf("%-28s 200 steps: mean r %+.4f; var r %.4f, chain %.4f, limit %.4f; 500 steps: chain %+.4f off\n",
                   what, mean, var, chain, limit, gap500);
          else
            printf("%-28s e(50) %.2e e(200) %.2e ratio %5.1f (order %d); mean r %+.4f\n", what, e[0], e[1],
                   e[0] / e[1], order, mean);
          if (!(fabs(mean) < lim_mean)) fail_msg("%s: sample mean off by %.4f standard deviations", what, mean);
          if (stochastic) {
            if (!(fabs(var - chain) < lim_var)) fail_msg("%s: sample variance %.4f, the chain's %.4f", what, var, chain);
            if (!(gap500 < fabs(chain - limit) / 1.8))
              fail_msg("%s: the chain's variance does not converge: %.4f off at 200 steps, %.4f at 500", what,
                       fabs(chain - limit), gap500);
          } else {
            if (!(e[1] < e[0] && e[1] < (order == 2 ? 0.01 : 0.12)))
              fail_msg("%s: 200 steps end %.3g from the exact solution (50 steps: %.3g)", what, e[1], e[0]);
            if (karras && !(e[0] / e[1] > (order == 2 ? 6 : 3)))
              fail_msg("%s: error ratio 50 -> 200 steps %.2f, expected order %d", what, e[0] / e[1], order);
          }
        }
  free(mu);
  free(s2);
  free(z);
  free(x);
}

// ---- 3. timestep spacings ------------------------------------------------------------------------
// Transcribed from diffusers' set_timesteps (T = 1000, steps_offset = 1; numpy float64 arithmetic,
// np.round half to even, np.arange with a float step filled as start + i·((start + step) − start)):
//   DDIM   leading:  arange(n)·(T//n) [::-1] + 1                 e.g. n=10: 901, 801, ..., 1
//          trailing: round(arange(T, 0, −T/n)) − 1                  n=10: 999, 899, ..., 99
//          linspace: round(linspace(0, T−1, n)) [::-1] (no offset)  n=25: 999, 957, ..., 167, 166
//                    (41.625·4 = 166.5 rounds to even)
//   Euler  the same as float32, without rounding linspace:        n=20: 999, 946.421082, ...
//   DPM    leading:  arange(n+1)·(T//(n+1)) [::-1][:-1] + 1        n=10: 901, 811, ..., 91
//          trailing: as DDIM
//          linspace: round(linspace(0, T−1, n+1)) [::-1][:-1]      n=10: 999, 899, 799, ...
// The values below were computed with these formulas in Python (whose floats are numpy's float64),
// independently of the C code.
static const struct spacing_case {
  const char *sampler;
  vkp_spacing spacing;
  int n;
  double t[50];
} spacing_cases[] = {
    {"ddim", VKP_SPACING_LEADING, 10, {901, 801, 701, 601, 501, 401, 301, 201, 101, 1}},
    {"ddim", VKP_SPACING_LEADING, 20, {
        951, 901, 851, 801, 751, 701, 651, 601, 551, 501, 451, 401, 351, 301, 251, 201, 151, 101, 51, 1}},
    {"ddim", VKP_SPACING_LEADING, 25, {
        961, 921, 881, 841, 801, 761, 721, 681, 641, 601, 561, 521, 481, 441, 401, 361, 321, 281, 241, 201, 161,
        121, 81, 41, 1}},
    {"ddim", VKP_SPACING_LEADING, 50, {
        981, 961, 941, 921, 901, 881, 861, 841, 821, 801, 781, 761, 741, 721, 701, 681, 661, 641, 621, 601, 581,
        561, 541, 521, 501, 481, 461, 441, 421, 401, 381, 361, 341, 321, 301, 281, 261, 241, 221, 201, 181, 161,
        141, 121, 101, 81, 61, 41, 21, 1}},
    {"ddim", VKP_SPACING_TRAILING, 10, {999, 899, 799, 699, 599, 499, 399, 299, 199, 99}},
    {"ddim", VKP_SPACING_TRAILING, 20, {
        999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 499, 449, 399, 349, 299, 249, 199, 149, 99, 49}},
    {"ddim", VKP_SPACING_TRAILING, 25, {
        999, 959, 919, 879, 839, 799, 759, 719, 679, 639, 599, 559, 519, 479, 439, 399, 359, 319, 279, 239, 199,
        159, 119, 79, 39}},
    {"ddim", VKP_SPACING_TRAILING, 50, {
        999, 979, 959, 939, 919, 899, 879, 859, 839, 819, 799, 779, 759, 739, 719, 699, 679, 659, 639, 619, 599,
        579, 559, 539, 519, 499, 479, 459, 439, 419, 399, 379, 359, 339, 319, 299, 279, 259, 239, 219, 199, 179,
        159, 139, 119, 99, 79, 59, 39, 19}},
    {"ddim", VKP_SPACING_LINSPACE, 10, {999, 888, 777, 666, 555, 444, 333, 222, 111, 0}},
    {"ddim", VKP_SPACING_LINSPACE, 20, {
        999, 946, 894, 841, 789, 736, 684, 631, 578, 526, 473, 421, 368, 315, 263, 210, 158, 105, 53, 0}},
    {"ddim", VKP_SPACING_LINSPACE, 25, {
        999, 957, 916, 874, 832, 791, 749, 708, 666, 624, 583, 541, 500, 458, 416, 375, 333, 291, 250, 208, 166,
        125, 83, 42, 0}},
    {"ddim", VKP_SPACING_LINSPACE, 50, {
        999, 979, 958, 938, 917, 897, 877, 856, 836, 816, 795, 775, 754, 734, 714, 693, 673, 652, 632, 612, 591,
        571, 550, 530, 510, 489, 469, 449, 428, 408, 387, 367, 347, 326, 306, 285, 265, 245, 224, 204, 183, 163,
        143, 122, 102, 82, 61, 41, 20, 0}},
    {"euler", VKP_SPACING_LEADING, 10, {901, 801, 701, 601, 501, 401, 301, 201, 101, 1}},
    {"euler", VKP_SPACING_LEADING, 20, {
        951, 901, 851, 801, 751, 701, 651, 601, 551, 501, 451, 401, 351, 301, 251, 201, 151, 101, 51, 1}},
    {"euler", VKP_SPACING_LEADING, 25, {
        961, 921, 881, 841, 801, 761, 721, 681, 641, 601, 561, 521, 481, 441, 401, 361, 321, 281, 241, 201, 161,
        121, 81, 41, 1}},
    {"euler", VKP_SPACING_LEADING, 50, {
        981, 961, 941, 921, 901, 881, 861, 841, 821, 801, 781, 761, 741, 721, 701, 681, 661, 641, 621, 601, 581,
        561, 541, 521, 501, 481, 461, 441, 421, 401, 381, 361, 341, 321, 301, 281, 261, 241, 221, 201, 181, 161,
        141, 121, 101, 81, 61, 41, 21, 1}},
    {"euler", VKP_SPACING_TRAILING, 10, {999, 899, 799, 699, 599, 499, 399, 299, 199, 99}},
    {"euler", VKP_SPACING_TRAILING, 20, {
        999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 499, 449, 399, 349, 299, 249, 199, 149, 99, 49}},
    {"euler", VKP_SPACING_TRAILING, 25, {
        999, 959, 919, 879, 839, 799, 759, 719, 679, 639, 599, 559, 519, 479, 439, 399, 359, 319, 279, 239, 199,
        159, 119, 79, 39}},
    {"euler", VKP_SPACING_TRAILING, 50, {
        999, 979, 959, 939, 919, 899, 879, 859, 839, 819, 799, 779, 759, 739, 719, 699, 679, 659, 639, 619, 599,
        579, 559, 539, 519, 499, 479, 459, 439, 419, 399, 379, 359, 339, 319, 299, 279, 259, 239, 219, 199, 179,
        159, 139, 119, 99, 79, 59, 39, 19}},
    {"euler", VKP_SPACING_LINSPACE, 10, {999, 888, 777, 666, 555, 444, 333, 222, 111, 0}},
    {"euler", VKP_SPACING_LINSPACE, 20, {
        999, 946.421082, 893.842102, 841.263184, 788.684204, 736.105286, 683.526306, 630.947388, 578.368408,
        525.78949, 473.210541, 420.631592, 368.052643, 315.473694, 262.894745, 210.315796, 157.736847, 105.157898,
        52.578949, 0}},
    {"euler", VKP_SPACING_LINSPACE, 25, {
        999, 957.375, 915.75, 874.125, 832.5, 790.875, 749.25, 707.625, 666, 624.375, 582.75, 541.125, 499.5,
        457.875, 416.25, 374.625, 333, 291.375, 249.75, 208.125, 166.5, 124.875, 83.25, 41.625, 0}},
    {"euler", VKP_SPACING_LINSPACE, 50, {
        999, 978.612244, 958.224487, 937.836731, 917.448975, 897.061218, 876.673462, 856.285706, 835.897949,
        815.510193, 795.122437, 774.73468, 754.346924, 733.959167, 713.571411, 693.183655, 672.795898, 652.408142,
        632.020386, 611.632629, 591.244873, 570.857117, 550.46936, 530.081604, 509.693878, 489.306122, 468.918365,
        448.530609, 428.142853, 407.755096, 387.36734, 366.979584, 346.591827, 326.204071, 305.816315, 285.428558,
        265.040802, 244.653061, 224.265305, 203.877548, 183.489792, 163.102036, 142.714279, 122.32653, 101.938774,
        81.5510178, 61.1632652, 40.7755089, 20.3877544, 0}},
    {"dpm", VKP_SPACING_LEADING, 10, {901, 811, 721, 631, 541, 451, 361, 271, 181, 91}},
    {"dpm", VKP_SPACING_LEADING, 20, {
        941, 894, 847, 800, 753, 706, 659, 612, 565, 518, 471, 424, 377, 330, 283, 236, 189, 142, 95, 48}},
    {"dpm", VKP_SPACING_LEADING, 25, {
        951, 913, 875, 837, 799, 761, 723, 685, 647, 609, 571, 533, 495, 457, 419, 381, 343, 305, 267, 229, 191,
        153, 115, 77, 39}},
    {"dpm", VKP_SPACING_LEADING, 50, {
        951, 932, 913, 894, 875, 856, 837, 818, 799, 780, 761, 742, 723, 704, 685, 666, 647, 628, 609, 590, 571,
        552, 533, 514, 495, 476, 457, 438, 419, 400, 381, 362, 343, 324, 305, 286, 267, 248, 229, 210, 191, 172,
        153, 134, 115, 96, 77, 58, 39, 20}},
    {"dpm", VKP_SPACING_TRAILING, 10, {999, 899, 799, 699, 599, 499, 399, 299, 199, 99}},
    {"dpm", VKP_SPACING_TRAILING, 20, {
        999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 499, 449, 399, 349, 299, 249, 199, 149, 99, 49}},
    {"dpm", VKP_SPACING_TRAILING, 25, {
        999, 959, 919, 879, 839, 799, 759, 719, 679, 639, 599, 559, 519, 479, 439, 399, 359, 319, 279, 239, 199,
        159, 119, 79, 39}},
    {"dpm", VKP_SPACING_TRAILING, 50, {
        999, 979, 959, 939, 919, 899, 879, 859, 839, 819, 799, 779, 759, 739, 719, 699, 679, 659, 639, 619, 599,
        579, 559, 539, 519, 499, 479, 459, 439, 419, 399, 379, 359, 339, 319, 299, 279, 259, 239, 219, 199, 179,
        159, 139, 119, 99, 79, 59, 39, 19}},
    {"dpm", VKP_SPACING_LINSPACE, 10, {999, 899, 799, 699, 599, 500, 400, 300, 200, 100}},
    {"dpm", VKP_SPACING_LINSPACE, 20, {
        999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50}},
    {"dpm", VKP_SPACING_LINSPACE, 25, {
        999, 959, 919, 879, 839, 799, 759, 719, 679, 639, 599, 559, 519, 480, 440, 400, 360, 320, 280, 240, 200,
        160, 120, 80, 40}},
    {"dpm", VKP_SPACING_LINSPACE, 50, {
        999, 979, 959, 939, 919, 899, 879, 859, 839, 819, 799, 779, 759, 739, 719, 699, 679, 659, 639, 619, 599,
        579, 559, 539, 519, 500, 480, 460, 440, 420, 400, 380, 360, 340, 320, 300, 280, 260, 240, 220, 200, 180,
        160, 140, 120, 100, 80, 60, 40, 20}},
};

static void test_spacings(void **state) {
  vkp_scheduler_config c;
  sd_config(state, VKP_PRED_EPSILON, NULL, &c);
  for (size_t i = 0; i < sizeof spacing_cases / sizeof spacing_cases[0]; i++) {
    const struct spacing_case *sc = &spacing_cases[i];
    vkp_sampler_kind kind = !strcmp(sc->sampler, "ddim") ? VKP_SAMPLER_DDIM
                            : !strcmp(sc->sampler, "euler") ? VKP_SAMPLER_EULER
                                                            : VKP_SAMPLER_DPMPP_2M;
    vkp_sampler_opts o = vkp_sampler_opts_default(kind, sc->n);
    o.spacing = sc->spacing;
    vkp_sampler *s;
    vkp_error err = {0};
    if (vkp_sampler_new(&c, &o, 4, &s, &err)) fail_msg("%s", err.msg);
    const vkp_sampler_schedule *sch = vkp_sampler_get_schedule(s);
    assert_int_equal(sch->n_evals, sc->n);
    for (int k = 0; k < sc->n; k++)
      if ((float)sch->timesteps[k] != (float)sc->t[k])
        fail_msg("%s spacing %d, %d steps: timestep %d is %.9g, diffusers %.9g", sc->sampler, sc->spacing, sc->n, k,
                 sch->timesteps[k], sc->t[k]);
    // the same spacing from the config key instead of the option
    if (sc->n == 20) {
      char extra[64];
      static const char *const names[] = {"leading", "trailing", "linspace"};
      snprintf(extra, sizeof extra, "\"timestep_spacing\": \"%s\"", names[sc->spacing]);
      vkp_scheduler_config c2;
      sd_config(state, VKP_PRED_EPSILON, extra, &c2);
      vkp_sampler *s2 = new_sampler(&c2, kind, sc->n, VKP_SAMPLER_FROM_CONFIG, 4);
      for (int k = 0; k < sc->n; k++) assert_true(vkp_sampler_timestep(s2, k) == sch->timesteps[k]);
      vkp_sampler_free(s2);
      vkp_scheduler_config_free(&c2);
    }
    vkp_sampler_free(s);
  }
  vkp_scheduler_config_free(&c);
}

// ---- 4. zero terminal SNR ------------------------------------------------------------------------

static void test_zero_snr(void **state) {
  vkp_error err = {0};
  vkp_scheduler_config c0, c;
  sd_config(state, VKP_PRED_V, NULL, &c0);
  sd_config(state, VKP_PRED_V, "\"rescale_betas_zero_snr\": true, \"timestep_spacing\": \"trailing\"", &c);
  vkp_scheduler *s0, *s;
  assert_int_equal(vkp_scheduler_new(&c0, VKP_SCHED_DDPM, &s0, &err), VKP_OK);
  assert_int_equal(vkp_scheduler_new(&c, VKP_SCHED_DDPM, &s, &err), VKP_OK);
  assert_true(s->alphas_cumprod[T_TRAIN - 1] == 0.0);   // exactly
  assert_true(s->betas[T_TRAIN - 1] == 1.0);
  // Lin et al. 2023, Algorithm 1: √ᾱ' = (√ᾱ − √ᾱ_T)·√ᾱ_0/(√ᾱ_0 − √ᾱ_T), in double from the plain schedule
  double a0 = sqrt(s0->alphas_cumprod[0]), aT = sqrt(s0->alphas_cumprod[T_TRAIN - 1]), worst_sqrt = 0, worst_rel = 0;
  for (int t = 0; t < T_TRAIN; t++) {
    double want = (sqrt(s0->alphas_cumprod[t]) - aT) * a0 / (a0 - aT), got = sqrt(s->alphas_cumprod[t]);
    worst_sqrt = fmax(worst_sqrt, fabs(got - want));
    if (t < T_TRAIN - 1) worst_rel = fmax(worst_rel, fabs(got * got - want * want) / (want * want));
  }
  printf("zero-SNR ᾱ vs formula: max |Δ√ᾱ| %.2e, max rel Δᾱ %.2e (float32 arithmetic, as diffusers)\n", worst_sqrt,
         worst_rel);
  assert_true(worst_sqrt < 1e-6);   // float32 rounding of √ᾱ ≈ 0.1–1: ulps of 1e-8..6e-8
  assert_true(fabs(s->alphas_cumprod[0] - s0->alphas_cumprod[0]) <= 1e-6 * s0->alphas_cumprod[0]);
  // the forward process and its weights at the pure-noise end
  assert_true(vkp_scheduler_snr(s, T_TRAIN - 1) == 0.0);
  assert_true(vkp_scheduler_min_snr_weight(s, T_TRAIN - 1, 5.0) == 0.0);   // v: min(0, γ)/(0 + 1)
  s->cfg.prediction_type = VKP_PRED_EPSILON;
  assert_true(vkp_scheduler_min_snr_weight(s, T_TRAIN - 1, 5.0) == 1.0);   // the limit of min(snr, γ)/snr
  float x0[4] = {0.5f, -1, 2, 0}, eps[4] = {1, 2, -3, 0.25f}, xt[4];
  int t = T_TRAIN - 1;
  vkp_scheduler_add_noise(s, x0, eps, &t, 1, 4, xt);
  assert_memory_equal(xt, eps, sizeof xt);   // x_T = ε
  // the helper on a plain array
  double b[T_TRAIN];
  for (int i = 0; i < T_TRAIN; i++) b[i] = s0->betas[i];
  vkp_scheduler_rescale_zero_snr(b, T_TRAIN);
  for (int i = 0; i < T_TRAIN; i++) assert_true(b[i] == s->betas[i]);

  // Euler-family samplers keep σ finite: ᾱ_{T-1} = 2^-24 there (diffusers), so σ_max ≈ 4096
  vkp_sampler *e = new_sampler(&c, VKP_SAMPLER_EULER, 10, VKP_SAMPLER_FROM_CONFIG, 4);
  const vkp_sampler_schedule *sch = vkp_sampler_get_schedule(e);
  float q = (1.0f - 0x1p-24f) / 0x1p-24f;
  assert_true(sch->timesteps[0] == 999);
  assert_true(sch->sigmas[0] == sqrtf(q));
  assert_true(sch->init_noise_sigma == sqrtf(q));   // trailing: max σ
  vkp_sampler_free(e);
  // DDIM from t = 999 with v-prediction: ᾱ = 0 is fine (x̂0 = −v)
  vkp_sampler *d = new_sampler(&c, VKP_SAMPLER_DDIM, 10, VKP_SAMPLER_FROM_CONFIG, 4);
  assert_true(vkp_sampler_timestep(d, 0) == 999);
  const float x_in[4] = {1, -1, 0.5f, 2}, v[4] = {0.1f, 0.2f, -0.3f, 0.4f};
  float x[4];
  memcpy(x, x_in, sizeof x);
  assert_int_equal(vkp_sampler_step(d, 0, v, x, NULL, &err), VKP_OK);
  double ap = vkp_sampler_get_schedule(d)->alphas_prev[0];
  for (int i = 0; i < 4; i++) {   // ᾱ = 0: x̂0 = −v, ε̂ = x; x' = √ᾱ' x̂0 + √(1 − ᾱ') ε̂
    double want = sqrt(ap) * -v[i] + sqrt(1 - ap) * x_in[i];
    assert_true(fabs(x[i] - want) <= 1e-6 * fabs(want));
  }
  vkp_sampler_free(d);
  vkp_scheduler_free(s0);
  vkp_scheduler_free(s);
  vkp_scheduler_config_free(&c0);
  vkp_scheduler_config_free(&c);
}

// Config-driven variants: Euler's log_linear interpolation, final_sigmas_type sigma_min and
// continuous timesteps; DPM-Solver's lambda_min_clipped, solver_order 1, solver_type heun and
// euler_at_final (the last three against the reference).
static void test_config_variants(void **state) {
  enum { N = 64 };
  double mu[N], s2[N], xr[N];
  float x[N];
  data_init(N, mu, s2);
  vkp_scheduler_config c;
  sd_config(state, VKP_PRED_EPSILON, "\"interpolation_type\": \"log_linear\"", &c);
  vkp_sampler *e = new_sampler(&c, VKP_SAMPLER_EULER, 10, 0, N);
  const vkp_sampler_schedule *sch = vkp_sampler_get_schedule(e);
  gauss_model m;
  model_init(&m, vkp_sampler_scheduler(e), N, mu, s2, VKP_PRED_EPSILON);
  // exp(linspace(log σmax, log σmin, n + 1)): ends at σmin, not 0, evenly spaced in log σ
  assert_true(fabs(sch->sigmas[0] - m.sig[T_TRAIN - 1]) <= 1e-6 * m.sig[T_TRAIN - 1]);
  assert_true(fabs(sch->sigmas[10] - m.sig[0]) <= 1e-6 * m.sig[0]);
  double step = log(sch->sigmas[1] / sch->sigmas[0]);
  for (int k = 0; k < 10; k++) assert_true(fabs(log(sch->sigmas[k + 1] / sch->sigmas[k]) - step) < 1e-5);
  assert_true(sch->timesteps[0] == 999 && sch->timesteps[9] == 0);   // the spacing is unchanged
  vkp_sampler_free(e);
  vkp_scheduler_config_free(&c);

  sd_config(state, VKP_PRED_V, "\"final_sigmas_type\": \"sigma_min\", \"timestep_type\": \"continuous\"", &c);
  e = new_sampler(&c, VKP_SAMPLER_EULER, 10, 0, N);
  sch = vkp_sampler_get_schedule(e);
  assert_true(fabs(sch->sigmas[10] - m.sig[0]) <= 1e-6 * m.sig[0]);
  for (int k = 0; k < 10; k++) assert_true(fabs(sch->timesteps[k] - 0.25 * log(sch->sigmas[k])) < 1e-6);
  vkp_sampler_free(e);
  vkp_scheduler_config_free(&c);

  // lambda_min_clipped: timesteps whose λ = log(√ᾱ/√(1−ᾱ)) is below it are cut off the top
  sd_config(state, VKP_PRED_EPSILON, "\"lambda_min_clipped\": -2.5", &c);
  vkp_sampler *d = new_sampler(&c, VKP_SAMPLER_DPMPP_2M, 10, 0, N);
  int clipped = 0;
  for (int t = 0; t < T_TRAIN; t++) clipped += -log(m.sig[t]) < -2.5;
  assert_true(clipped > 0);
  assert_true(vkp_sampler_timestep(d, 0) == T_TRAIN - clipped - 1);   // linspace(0, last − 1, n + 1)
  vkp_sampler_free(d);
  vkp_scheduler_config_free(&c);

  const struct {
    const char *extra;
    dpm_opts o;
    int steps;
  } dpm_cases[] = {
      {"\"solver_order\": 1", {.order = 1}, 10},
      {"\"solver_type\": \"heun\"", {.order = 2, .heun_type = true}, 10},
      // σ_min as the last level: with 20 steps the last step is second order unless euler_at_final
      {"\"final_sigmas_type\": \"sigma_min\"", {.order = 2}, 20},
      {"\"final_sigmas_type\": \"sigma_min\", \"euler_at_final\": true", {.order = 2, .final_first = true}, 20},
      {"\"final_sigmas_type\": \"sigma_min\"", {.order = 2, .final_first = true}, 10},   // lower_order_final
  };
  for (size_t i = 0; i < sizeof dpm_cases / sizeof dpm_cases[0]; i++) {
    sd_config(state, VKP_PRED_EPSILON, dpm_cases[i].extra, &c);
    d = new_sampler(&c, VKP_SAMPLER_DPMPP_2M, dpm_cases[i].steps, 0, N);
    ref_sched r;
    ref_schedule(&m, vkp_sampler_scheduler(d), VKP_SAMPLER_DPMPP_2M, dpm_cases[i].steps, false, false, &r);
    if (strstr(dpm_cases[i].extra, "sigma_min")) r.sigma[r.n] = m.sig[0];
    sch = vkp_sampler_get_schedule(d);
    assert_true(fabs(sch->sigmas[r.n] - r.sigma[r.n]) <= 1e-6 * fmax(r.sigma[r.n], 1e-30));
    vkp_rng rng = vkp_rng_new(3);
    vkp_sampler_init_latents(d, &rng, x);
    for (int k = 0; k < N; k++) xr[k] = x[k] * sqrt(r.sigma[0] * r.sigma[0] + 1);   // VP -> VE
    vkp_error err = {0};
    assert_int_equal(vkp_sampler_run(d, x, model_cb, &m, NULL, &err), VKP_OK);
    ref_dpmpp(&m, &r, &dpm_cases[i].o, xr);
    if (r.sigma[r.n] > 0)   // the sample ends at σ_min: VE -> VP
      for (int k = 0; k < N; k++) xr[k] /= sqrt(r.sigma[r.n] * r.sigma[r.n] + 1);
    double rel = vkp_max_rel_err(x, xr, N, 0.25);
    printf("dpmpp_2m %-62s final latents: per element %.2e\n", dpm_cases[i].extra, rel);
    if (!(rel < 1e-5)) fail_msg("dpmpp_2m with %s: %.3g from the reference", dpm_cases[i].extra, rel);
    vkp_sampler_free(d);
    vkp_scheduler_config_free(&c);
  }
  model_free(&m);
}

// ---- 5. bad configs --------------------------------------------------------------------------------

static void expect_config(void **state, const char *json, vkp_status want, const char *key) {
  char path[256];
  vkp_error err = {0};
  write_text(state, "scheduler_config.json", json, path, sizeof path);
  vkp_scheduler_config c;
  vkp_status st = vkp_scheduler_config_load(path, &c, &err);
  if (st == VKP_OK) vkp_scheduler_config_free(&c);
  if (st != want) fail_msg("%s: status %d, expected %d: %s", json, st, want, err.msg);
  if (!strstr(err.msg, path) || !strstr(err.msg, key))
    fail_msg("%s: message '%s' names neither the file nor %s", json, err.msg, key);
}

// A config that loads, and a sampler over it that must fail naming `key`.
static void expect_sampler(void **state, const char *json, vkp_sampler_kind kind, int karras, int steps,
                           vkp_status want, const char *key, bool names_file) {
  char path[256];
  vkp_error err = {0};
  write_text(state, "scheduler_config.json", json, path, sizeof path);
  vkp_scheduler_config c;
  if (vkp_scheduler_config_load(path, &c, &err)) fail_msg("%s: %s", json, err.msg);
  vkp_sampler_opts o = vkp_sampler_opts_default(kind, steps);
  o.karras = karras;
  vkp_sampler *s = NULL;
  vkp_status st = vkp_sampler_new(&c, &o, 4, &s, &err);
  vkp_sampler_free(s);
  vkp_scheduler_config_free(&c);
  if (st != want) fail_msg("%s (%s): status %d, expected %d: %s", json, vkp_sampler_name(kind), st, want, err.msg);
  if ((names_file && !strstr(err.msg, path)) || !strstr(err.msg, key))
    fail_msg("%s: message '%s' does not name %s%s", json, err.msg, key, names_file ? " and the file" : "");
  printf("  %s\n", err.msg);
}

static void test_bad_configs(void **state) {
  expect_config(state, "{\"beta_schedule\": \"sigmoid\"}", VKP_ERR_UNSUPPORTED, "'beta_schedule'");
  expect_config(state, "{\"beta_schedule\": \"exp\"}", VKP_ERR_UNSUPPORTED, "'beta_schedule'");
  expect_config(state, "{\"beta_schedule\": 2}", VKP_ERR_INVALID, "'beta_schedule'");
  expect_config(state, "{\"prediction_type\": \"flow_prediction\"}", VKP_ERR_UNSUPPORTED, "'prediction_type'");
  expect_config(state, "{\"timestep_spacing\": \"uniform\"}", VKP_ERR_INVALID, "'timestep_spacing'");
  expect_config(state, "{\"num_train_timesteps\": 0}", VKP_ERR_INVALID, "'num_train_timesteps'");
  expect_config(state, "{\"num_train_timesteps\": 1000.5}", VKP_ERR_INVALID, "'num_train_timesteps'");
  expect_config(state, "{\"beta_start\": -0.1}", VKP_ERR_INVALID, "'beta_start'");
  expect_config(state, "{\"beta_end\": 1.5}", VKP_ERR_INVALID, "'beta_end'");
  expect_config(state, "{\"beta_end\": \"0.012\"}", VKP_ERR_INVALID, "'beta_end'");
  expect_config(state, "{\"steps_offset\": -1}", VKP_ERR_INVALID, "'steps_offset'");
  expect_config(state, "{\"steps_offset\": 1000}", VKP_ERR_INVALID, "'steps_offset'");
  expect_config(state, "{\"clip_sample\": \"no\"}", VKP_ERR_INVALID, "'clip_sample'");
  expect_config(state, "{\"use_karras_sigmas\": 1}", VKP_ERR_INVALID, "'use_karras_sigmas'");
  expect_config(state, "{\"solver_order\": 4}", VKP_ERR_INVALID, "'solver_order'");
  expect_config(state, "{\"algorithm_type\": \"unipc\"}", VKP_ERR_INVALID, "'algorithm_type'");
  expect_config(state, "{\"interpolation_type\": \"cubic\"}", VKP_ERR_INVALID, "'interpolation_type'");
  expect_config(state, "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\"}", VKP_ERR_UNSUPPORTED, "'_class_name'");
  expect_config(state, "{\"trained_betas\": [0.1, 0.2]}", VKP_ERR_INVALID, "'trained_betas'");
  expect_config(state, "{\"trained_betas\": \"linear\"}", VKP_ERR_INVALID, "'trained_betas'");
  expect_config(state, "{\"num_train_timesteps\": 3, \"trained_betas\": [0.1, 0, 0.3]}", VKP_ERR_INVALID,
                "'trained_betas'[1]");
  expect_config(state, "{\"num_train_timesteps\": 3, \"trained_betas\": [0.1, 0.2, \"x\"]}", VKP_ERR_INVALID,
                "'trained_betas'[2]");
  expect_config(state, "{\"beta_end\": 0.012} }", VKP_ERR_FORMAT, "trailing text");
  expect_config(state, "[0.012]", VKP_ERR_FORMAT, "not a JSON object");
  {   // a missing file names itself
    vkp_scheduler_config c;
    vkp_error err = {0};
    assert_int_equal(vkp_scheduler_config_load("/nonexistent/scheduler_config.json", &c, &err), VKP_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/scheduler_config.json"));
  }
  // values a file may hold that a sampler does not implement: refused when that sampler is made
  printf("sampler-level errors:\n");
  expect_sampler(state, "{\"thresholding\": true}", VKP_SAMPLER_DDIM, 0, 10, VKP_ERR_UNSUPPORTED, "'thresholding'",
                 true);
  expect_sampler(state, "{\"use_exponential_sigmas\": true}", VKP_SAMPLER_EULER, 0, 10, VKP_ERR_UNSUPPORTED,
                 "'use_exponential_sigmas'", true);
  expect_sampler(state, "{\"algorithm_type\": \"sde-dpmsolver++\"}", VKP_SAMPLER_DPMPP_2M, 0, 10,
                 VKP_ERR_UNSUPPORTED, "'algorithm_type'", true);
  expect_sampler(state, "{\"solver_order\": 3}", VKP_SAMPLER_DPMPP_2M, 0, 10, VKP_ERR_UNSUPPORTED, "'solver_order'",
                 true);
  expect_sampler(state, "{\"variance_type\": \"learned_range\"}", VKP_SAMPLER_DPMPP_2M, 0, 10, VKP_ERR_UNSUPPORTED,
                 "'variance_type'", true);
  expect_sampler(state, "{\"steps_offset\": 150}", VKP_SAMPLER_DDIM, 0, 10, VKP_ERR_INVALID, "'steps_offset'", true);
  expect_sampler(state, "{\"rescale_betas_zero_snr\": true, \"num_train_timesteps\": 2, \"trained_betas\": "
                 "[1e-30, 1e-30]}", VKP_SAMPLER_EULER, 0, 1, VKP_ERR_INVALID, "'rescale_betas_zero_snr'", true);
  expect_sampler(state, "{}", VKP_SAMPLER_EULER, 0, 0, VKP_ERR_INVALID, "steps", true);
  expect_sampler(state, "{}", VKP_SAMPLER_EULER, 0, 1001, VKP_ERR_INVALID, "steps", true);
  expect_sampler(state, "{}", VKP_SAMPLER_DDIM, 1, 10, VKP_ERR_UNSUPPORTED, "Karras", false);
  // the thresholding key of a DDPM training config does not stop the samplers that lack it
  vkp_scheduler_config c;
  load_config(state, "{\"_class_name\": \"DDPMScheduler\", \"thresholding\": true}", &c);
  vkp_sampler_free(new_sampler(&c, VKP_SAMPLER_EULER, 10, VKP_SAMPLER_FROM_CONFIG, 4));
  vkp_scheduler_config_free(&c);
}

// ---- 6. the rest of the API ----------------------------------------------------------------------

// Class defaults: a key the file lacks takes the default of the class that reads it.
static void test_class_defaults(void **state) {
  vkp_error err = {0};
  vkp_scheduler_config c;
  load_config(state, SD15_CONFIG, &c);   // PNDM: leading by default, set_alpha_to_one false here
  vkp_scheduler_config d;
  vkp_scheduler_config_for_class(&c, VKP_SCHED_EULER, &d);
  assert_int_equal(d.timestep_spacing, VKP_SPACING_LINSPACE);
  vkp_scheduler_config_for_class(&c, VKP_SCHED_DDIM, &d);
  assert_int_equal(d.timestep_spacing, VKP_SPACING_LEADING);
  assert_false(d.set_alpha_to_one);   // the file's
  assert_false(d.clip_sample);        // the file's (DDIM's default would be true)
  vkp_scheduler_config_free(&c);
  load_config(state, "{\"_class_name\": \"EulerDiscreteScheduler\", \"beta_schedule\": \"scaled_linear\"}", &c);
  assert_int_equal(c.timestep_spacing, VKP_SPACING_LINSPACE);
  vkp_scheduler_config_for_class(&c, VKP_SCHED_DDIM, &d);
  assert_true(d.clip_sample && d.set_alpha_to_one);   // DDIMScheduler's defaults
  assert_int_equal(d.timestep_spacing, VKP_SPACING_LEADING);
  // HeunDiscreteScheduler defaults to SD's beta range (0.00085, 0.012): its schedule is the fixture's
  vkp_scheduler *h, *sd;
  assert_int_equal(vkp_scheduler_new(&c, VKP_SCHED_HEUN, &h, &err), VKP_OK);
  vkp_scheduler_config sdc;
  load_config(state, SD15_CONFIG, &sdc);
  assert_int_equal(vkp_scheduler_new(&sdc, VKP_SCHED_FILE, &sd, &err), VKP_OK);
  assert_memory_equal(h->alphas_cumprod, sd->alphas_cumprod, T_TRAIN * sizeof(double));
  vkp_scheduler_free(h);
  assert_int_equal(vkp_scheduler_new(&c, VKP_SCHED_FILE, &h, &err), VKP_OK);   // Euler: 0.0001, 0.02
  assert_true(h->betas[0] == (float)sqrt(0.0001) * (float)sqrt(0.0001));
  vkp_scheduler_free(h);
  vkp_scheduler_free(sd);
  vkp_scheduler_config_free(&sdc);
  vkp_scheduler_config_free(&c);
  // other diffusers classes read; default samplers
  load_config(state, "{\"_class_name\": \"UniPCMultistepScheduler\", \"beta_schedule\": \"squaredcos_cap_v2\"}", &c);
  assert_int_equal(c.cls, VKP_SCHED_OTHER);
  assert_int_equal(vkp_sampler_for_class(c.cls), -1);
  assert_int_equal(vkp_scheduler_new(&c, VKP_SCHED_FILE, &h, &err), VKP_OK);
  // betas_for_alpha_bar: β_0 = 1 − ᾱ(1/T)/ᾱ(0), ᾱ(t) = cos²((t + 0.008)/1.008 · π/2)
  double c0 = cos(0.008 / 1.008 * M_PI / 2), c1 = cos((0.001 + 0.008) / 1.008 * M_PI / 2);
  assert_true(h->betas[0] == (float)(1 - (c1 * c1) / (c0 * c0)));
  assert_true(h->betas[T_TRAIN - 1] == (float)0.999);
  vkp_scheduler_free(h);
  vkp_scheduler_config_free(&c);
  assert_int_equal(vkp_sampler_for_class(VKP_SCHED_DPMSOLVER), VKP_SAMPLER_DPMPP_2M);
  assert_int_equal(vkp_sampler_for_class(VKP_SCHED_PNDM), -1);
  assert_int_equal(vkp_sampler_class(VKP_SAMPLER_EULER_A), VKP_SCHED_EULER_A);
}

static void test_heun_and_steps(void **state) {
  vkp_scheduler_config c;
  sd_config(state, VKP_PRED_EPSILON, NULL, &c);
  vkp_sampler *h = new_sampler(&c, VKP_SAMPLER_HEUN, 10, VKP_SAMPLER_FROM_CONFIG, 8);
  vkp_sampler *e = new_sampler(&c, VKP_SAMPLER_EULER, 10, VKP_SAMPLER_FROM_CONFIG, 8);
  const vkp_sampler_schedule *sh = vkp_sampler_get_schedule(h), *se = vkp_sampler_get_schedule(e);
  // diffusers' doubled lists: timesteps [t0, t1, t1, ..., t9, t9], sigmas [σ0, σ1, σ1, ..., σ9, σ9, 0]
  assert_int_equal(sh->n_evals, 19);
  assert_true(sh->timesteps[0] == se->timesteps[0] && sh->sigmas[0] == se->sigmas[0]);
  for (int k = 1; k < 10; k++) {
    assert_true(sh->timesteps[2 * k - 1] == se->timesteps[k] && sh->timesteps[2 * k] == se->timesteps[k]);
    assert_true(sh->sigmas[2 * k - 1] == se->sigmas[k] && sh->sigmas[2 * k] == se->sigmas[k]);
  }
  assert_true(sh->sigmas[19] == 0 && sh->init_noise_sigma == se->init_noise_sigma);
  // steps in order only; Euler a needs its generator
  float x[8] = {0}, o[8] = {0};
  vkp_error err = {0};
  assert_int_equal(vkp_sampler_step(h, 1, o, x, NULL, &err), VKP_ERR_INVALID);
  assert_non_null(strstr(err.msg, "out of order"));
  vkp_sampler *a = new_sampler(&c, VKP_SAMPLER_EULER_A, 10, VKP_SAMPLER_FROM_CONFIG, 8);
  assert_int_equal(vkp_sampler_step(a, 0, o, x, NULL, &err), VKP_ERR_INVALID);
  vkp_sampler_free(a);
  // the step API by hand equals vkp_sampler_run
  enum { N = 64 };
  double mu[N], s2[N];
  data_init(N, mu, s2);
  gauss_model m;
  model_init(&m, vkp_sampler_scheduler(h), N, mu, s2, VKP_PRED_EPSILON);
  vkp_sampler *h1 = new_sampler(&c, VKP_SAMPLER_HEUN, 10, VKP_SAMPLER_FROM_CONFIG, N);
  vkp_sampler *h2 = new_sampler(&c, VKP_SAMPLER_HEUN, 10, VKP_SAMPLER_FROM_CONFIG, N);
  float x1[N], x2[N], xin[N], out[N];
  vkp_rng r = vkp_rng_new(5);
  vkp_sampler_init_latents(h1, &r, x1);
  memcpy(x2, x1, sizeof x1);
  assert_int_equal(vkp_sampler_run(h1, x1, model_cb, &m, NULL, &err), VKP_OK);
  for (int i = 0; i < vkp_sampler_evals(h2); i++) {
    vkp_sampler_scale_input(h2, i, x2, xin);
    model_cb(&m, i, vkp_sampler_timestep(h2, i), xin, out, &err);
    assert_int_equal(vkp_sampler_step(h2, i, out, x2, NULL, &err), VKP_OK);
  }
  assert_memory_equal(x1, x2, sizeof x1);
  // reset runs the same again
  vkp_sampler_reset(h2);
  vkp_rng r2 = vkp_rng_new(5);
  vkp_sampler_init_latents(h2, &r2, x2);
  assert_int_equal(vkp_sampler_run(h2, x2, model_cb, &m, NULL, &err), VKP_OK);
  assert_memory_equal(x1, x2, sizeof x1);
  model_free(&m);
  vkp_sampler_free(h1);
  vkp_sampler_free(h2);
  vkp_sampler_free(h);
  vkp_sampler_free(e);
  vkp_scheduler_config_free(&c);
}

static void test_img2img(void **state) {
  vkp_scheduler_config c;
  sd_config(state, VKP_PRED_EPSILON, NULL, &c);
  vkp_sampler *e = new_sampler(&c, VKP_SAMPLER_EULER, 10, VKP_SAMPLER_FROM_CONFIG, 4);
  vkp_sampler *h = new_sampler(&c, VKP_SAMPLER_HEUN, 10, VKP_SAMPLER_FROM_CONFIG, 4);
  vkp_sampler *d = new_sampler(&c, VKP_SAMPLER_DDIM, 10, VKP_SAMPLER_FROM_CONFIG, 4);
  // diffusers: init = min(int(steps·strength), steps), t_start = steps − init, begin = t_start·order
  assert_int_equal(vkp_sampler_strength_begin(e, 0.75), 3);
  assert_int_equal(vkp_sampler_strength_begin(h, 0.75), 6);
  assert_int_equal(vkp_sampler_strength_begin(e, 1.0), 0);
  assert_int_equal(vkp_sampler_strength_begin(e, 0.0), 10);
  const float x0[4] = {0.5f, -0.25f, 1, 0}, noise[4] = {1, -1, 0.5f, 2};
  float xt[4];
  vkp_sampler_add_noise(e, 3, x0, noise, xt);   // Euler: x0 + σ·noise
  double sg = vkp_sampler_get_schedule(e)->sigmas[3];
  for (int i = 0; i < 4; i++) assert_true(xt[i] == (float)(x0[i] + noise[i] * sg));
  vkp_sampler_add_noise(d, 3, x0, noise, xt);   // DDIM: √ᾱ x0 + √(1 − ᾱ) noise at t = 601
  double ac = vkp_sampler_scheduler(d)->alphas_cumprod[601];
  assert_true(vkp_sampler_timestep(d, 3) == 601);
  for (int i = 0; i < 4; i++) assert_true(fabs(xt[i] - (sqrt(ac) * x0[i] + sqrt(1 - ac) * noise[i])) < 1e-6);
  vkp_sampler_set_begin(e, 3);
  vkp_error err = {0};
  float o[4] = {0};
  assert_int_equal(vkp_sampler_step(e, 0, o, xt, NULL, &err), VKP_ERR_INVALID);
  assert_int_equal(vkp_sampler_step(e, 3, o, xt, NULL, &err), VKP_OK);
  vkp_sampler_free(e);
  vkp_sampler_free(h);
  vkp_sampler_free(d);
  vkp_scheduler_config_free(&c);
}

static void test_training_helpers(void **state) {
  vkp_error err = {0};
  vkp_scheduler_config c;
  sd_config(state, VKP_PRED_V, NULL, &c);
  vkp_scheduler *s;
  assert_int_equal(vkp_scheduler_new(&c, VKP_SCHED_DDPM, &s, &err), VKP_OK);
  enum { B = 2, ITEM = 3 };
  const float x0[B * ITEM] = {0.5f, -1, 2, 0.25f, 0, -0.75f}, eps[B * ITEM] = {1, 0.5f, -2, -1, 0.3f, 0.9f};
  const int t[B] = {10, 900};
  float xt[B * ITEM], v[B * ITEM], target[B * ITEM];
  vkp_scheduler_add_noise(s, x0, eps, t, B, ITEM, xt);
  vkp_scheduler_velocity(s, x0, eps, t, B, ITEM, v);
  vkp_scheduler_target(s, x0, eps, t, B, ITEM, target);
  for (int b = 0; b < B; b++) {
    double ac = s->alphas_cumprod[t[b]];
    for (int i = 0; i < ITEM; i++) {
      int k = b * ITEM + i;
      double want_xt = sqrt(ac) * x0[k] + sqrt(1 - ac) * eps[k], want_v = sqrt(ac) * eps[k] - sqrt(1 - ac) * x0[k];
      assert_true(fabs(xt[k] - want_xt) <= 1e-6 * fmax(1, fabs(want_xt)));
      assert_true(fabs(v[k] - want_v) <= 1e-6 * fmax(1, fabs(want_v)));
      assert_true(target[k] == v[k]);   // v-prediction's target is v
      // and v recovers x0 and ε from x_t: x0 = √ᾱ x_t − √(1−ᾱ) v
      assert_true(fabs(sqrt(ac) * xt[k] - sqrt(1 - ac) * v[k] - x0[k]) < 1e-6);
    }
    double snr = ac / (1 - ac);
    assert_true(fabs(vkp_scheduler_snr(s, t[b]) - snr) <= 1e-12 * snr);
    // min-SNR-γ (γ = 5) for v-prediction: min(snr, γ)/(snr + 1)
    assert_true(fabs(vkp_scheduler_min_snr_weight(s, t[b], 5) - fmin(snr, 5) / (snr + 1)) < 1e-12);
  }
  s->cfg.prediction_type = VKP_PRED_EPSILON;
  assert_true(fabs(vkp_scheduler_min_snr_weight(s, 10, 5) - 5 / vkp_scheduler_snr(s, 10)) < 1e-12);   // snr > γ
  assert_true(vkp_scheduler_min_snr_weight(s, 900, 5) == 1);                                         // snr < γ
  vkp_scheduler_target(s, x0, eps, t, B, ITEM, target);
  assert_memory_equal(target, eps, sizeof target);
  s->cfg.prediction_type = VKP_PRED_SAMPLE;
  vkp_scheduler_target(s, x0, eps, t, B, ITEM, target);
  assert_memory_equal(target, x0, sizeof target);
  vkp_scheduler_free(s);
  vkp_scheduler_config_free(&c);
}

static void test_guidance_and_names(void **state) {
  (void)state;
  const float u[4] = {0.1f, -0.2f, 0.3f, 0}, cnd[4] = {0.2f, 0.2f, -0.1f, 1};
  float out[4];
  vkp_cfg_combine(u, cnd, 7.5f, 4, out);
  for (int i = 0; i < 4; i++) {
    float diff = cnd[i] - u[i], sc = 7.5f * diff;
    assert_true(out[i] == u[i] + sc);   // torch's float32 ops
  }
  // guidance_rescale: φ = 0 leaves the guided output, φ = 1 gives it the conditional std per item
  float g[8] = {1, 2, 3, 4, -1, 0, 1, 5}, c2[8] = {0.5f, 1, 1.5f, 2, 1, 1, 1, 2}, g0[8];
  memcpy(g0, g, sizeof g);
  vkp_cfg_rescale(c2, g, 2, 4, 0.0);
  assert_memory_equal(g, g0, sizeof g);
  vkp_cfg_rescale(c2, g, 2, 4, 1.0);
  for (int b = 0; b < 2; b++) {
    double mg = 0, mc = 0, vg = 0, vc = 0;
    for (int i = 0; i < 4; i++) mg += g[b * 4 + i] / 4.0, mc += c2[b * 4 + i] / 4.0;
    for (int i = 0; i < 4; i++) vg += pow(g[b * 4 + i] - mg, 2), vc += pow(c2[b * 4 + i] - mc, 2);
    assert_true(fabs(sqrt(vg) - sqrt(vc)) < 1e-6);
  }
  // names
  vkp_sampler_kind k;
  int karras;
  vkp_error err = {0};
  assert_int_equal(vkp_sampler_parse_name("DPM++ 2M Karras", &k, &karras, &err), VKP_OK);
  assert_int_equal(k, VKP_SAMPLER_DPMPP_2M);
  assert_int_equal(karras, 1);
  assert_int_equal(vkp_sampler_parse_name("Euler a", &k, &karras, &err), VKP_OK);
  assert_int_equal(k, VKP_SAMPLER_EULER_A);
  assert_int_equal(karras, VKP_SAMPLER_FROM_CONFIG);
  assert_int_equal(vkp_sampler_parse_name("euler-ancestral", &k, &karras, &err), VKP_OK);
  assert_int_equal(k, VKP_SAMPLER_EULER_A);
  assert_int_equal(vkp_sampler_parse_name("heun_karras", &k, &karras, &err), VKP_OK);
  assert_int_equal(k, VKP_SAMPLER_HEUN);
  assert_int_equal(karras, 1);
  assert_int_equal(vkp_sampler_parse_name("lms", &k, &karras, &err), VKP_ERR_INVALID);
  assert_non_null(strstr(err.msg, "'lms'"));
  assert_int_equal(vkp_sampler_parse_name("ddim karras", &k, &karras, &err), VKP_ERR_UNSUPPORTED);
  assert_string_equal(vkp_sampler_a1111_name(VKP_SAMPLER_DPMPP_2M, true), "DPM++ 2M Karras");
  assert_string_equal(vkp_sampler_a1111_name(VKP_SAMPLER_EULER_A, false), "Euler a");
  for (int i = 0; i < VKP_SAMPLER_COUNT; i++) {   // every name parses back
    assert_int_equal(vkp_sampler_parse_name(vkp_sampler_name(i), &k, &karras, &err), VKP_OK);
    assert_int_equal(k, i);
    assert_int_equal(vkp_sampler_parse_name(vkp_sampler_a1111_name(i, i != VKP_SAMPLER_DDIM), &k, &karras, &err), VKP_OK);
    assert_int_equal(k, i);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_fixture, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_reference, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_convergence, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_spacings, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_zero_snr, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_config_variants, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_bad_configs, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_class_defaults, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_heun_and_steps, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_img2img, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_training_helpers, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_guidance_and_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
