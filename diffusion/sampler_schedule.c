// sampler_schedule.c — each diffusers scheduler's `set_timesteps`: the timesteps the model sees and
// the sigmas the updates use (vkp_sampler.h), for the leading / trailing / linspace spacings, the
// Karras schedule and steps_offset.
//
// diffusers computes these with numpy (float64) on its float32 schedule tensors, then casts to
// float32. The helpers below are those numpy functions, operation for operation (np.linspace,
// np.arange with a float step, np.interp, np.round = round half to even), so the timesteps are
// identical and the sigmas identical up to the last bit of libm's log/pow.
//
// The spacings differ per scheduler (scheduling_*.py, set_timesteps):
//   DDIM       linspace: round(linspace(0, T-1, n))[::-1]          (steps_offset ignored)
//              leading:  arange(n)·(T//n) [::-1] + steps_offset
//              trailing: round(arange(T, 0, -T/n)) − 1
//   Euler, Euler a, Heun: the same three, as float32, without rounding linspace's fractions;
//              σ_i = interp(t_i, 0..T-1, σ table) (linear in σ)
//   DPM-Solver linspace: round(linspace(0, T-1, n+1))[::-1][:-1]
//              leading:  arange(n+1)·(T//(n+1)) [::-1][:-1] + steps_offset
//              trailing: as DDIM
//   Karras (Euler, Heun, DPM-Solver; Euler a here too, with Euler's rule):
//              σ_i = (σmax^(1/7) + i/(n−1)·(σmin^(1/7) − σmax^(1/7)))^7, t_i = the timestep whose
//              interpolated log σ is σ_i. σmin, σmax: Euler and Heun the ends of the spaced sigmas
//              (Euler: config sigma_min/sigma_max when set), DPM-Solver the ends of the whole
//              table; DPM-Solver rounds t_i to integers (except for squaredcos_cap_v2, truncated).
// One known diffusers quirk is not reproduced: for 62 step counts (61, 103, 121, ...) numpy's
// arange(1000, 0, -1000/n) has n+1 elements, and diffusers' trailing spacing then runs an extra
// step at timestep −1; here the list stops after n.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_sampler.h"

// ---- numpy, float64 -----------------------------------------------------------------------------

// np.linspace(start, stop, num): i·step + start, the last element exactly stop.
static void np_linspace(double start, double stop, int num, double *out) {
  if (num == 1) {
    out[0] = start;
    return;
  }
  double div = num - 1, delta = stop - start, step = delta / div;
  for (int i = 0; i < num; i++) out[i] = (step == 0 ? (double)i / div * delta : (double)i * step) + start;
  out[num - 1] = stop;
}

// np.arange(start, 0, step) with step < 0: length ceil((0 − start)/step); element 1 is start + step,
// element i >= 2 is start + i·((start + step) − start). Writes at most cap elements, returns how many.
static int np_arange_down(double start, double step, double *out, int cap) {
  double len = ceil((0.0 - start) / step);
  int n = len > 0 ? (int)len : 0;
  if (n > cap) n = cap;
  double next = start + step, delta = next - start;
  for (int i = 0; i < n; i++) out[i] = i == 0 ? start : i == 1 ? next : start + (double)i * delta;
  return n;
}

// np.interp(x, arange(n), fp) for one x.
static double np_interp(double x, const float *fp, int n) {
  if (isnan(x)) return x;
  if (x < 0) return fp[0];
  if (x >= n - 1) return fp[n - 1];
  int j = (int)floor(x);
  if (x == j) return fp[j];
  double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
  return slope * (x - j) + fp[j];
}

// ---- diffusers ---------------------------------------------------------------------------------

// The σ table ((1 − ᾱ)/ᾱ) ** 0.5 in float32 torch ops, with the Euler-family fix for zero terminal
// SNR (ᾱ_{T-1} = 2^-24 so σ stays finite), and np.log of it (float32).
static void sigma_table(const vkp_scheduler *sc, float *sig, float *log_sig) {
  int T = sc->num_train_timesteps;
  for (int t = 0; t < T; t++) {
    float ac = (float)sc->alphas_cumprod[t];
    if (t == T - 1 && sc->cfg.rescale_betas_zero_snr) ac = 0x1p-24f;
    float q = (1.0f - ac) / ac;
    sig[t] = sqrtf(q);
    log_sig[t] = (float)log((double)sig[t]);
  }
}

// _sigma_to_t: the fractional timestep whose log σ (interpolated linearly in the table) is log σ.
static double sigma_to_t(double sigma, const float *log_sig, int T) {
  double ls = log(sigma > 1e-10 ? sigma : 1e-10);
  int low = -1;
  for (int t = 0; t < T; t++)   // argmax of the cumulative count of log_sig <= ls: its last index
    if (ls - (double)log_sig[t] >= 0) low = t;
  if (low < 0) low = 0;
  if (low > T - 2) low = T - 2;
  float lo = log_sig[low], hi = log_sig[low + 1];
  float den = lo - hi;
  double w = ((double)lo - ls) / (double)den;
  w = w < 0 ? 0 : w > 1 ? 1 : w;
  return (1 - w) * low + w * (low + 1);
}

// _convert_to_karras: n sigmas from sigma_max down to sigma_min, ρ = 7.
static void karras(double sigma_min, double sigma_max, int n, double *out) {
  double rho = 7.0;
  double *ramp = out;   // computed in place
  np_linspace(0, 1, n, ramp);
  double min_inv = pow(sigma_min, 1 / rho), max_inv = pow(sigma_max, 1 / rho);
  for (int i = 0; i < n; i++) out[i] = pow(max_inv + ramp[i] * (min_inv - max_inv), rho);
}

void vkp_sampler_schedule_free(vkp_sampler_schedule *sch) {
  if (!sch) return;
  free(sch->timesteps);
  free(sch->sigmas);
  free(sch->alphas_prev);
  memset(sch, 0, sizeof *sch);
}

// Integer timesteps of DDIM (n_inf = n) and DPM-Solver (n_inf = n + 1 points, the last dropped)
// for `last` trainable timesteps. Returns how many.
static int integer_timesteps(const vkp_scheduler *sc, vkp_sampler_kind kind, vkp_spacing spacing, int n, int last,
                             double *ts, double *scratch) {
  int T = sc->num_train_timesteps, off = sc->cfg.steps_offset;
  bool dpm = kind == VKP_SAMPLER_DPMPP_2M;
  switch (spacing) {
    case VKP_SPACING_LINSPACE:
      np_linspace(0, last - 1, dpm ? n + 1 : n, scratch);
      for (int k = 0; k < n; k++) ts[k] = rint(scratch[(dpm ? n : n - 1) - k]);
      return n;
    case VKP_SPACING_LEADING: {
      int r = dpm ? last / (n + 1) : T / n;
      for (int k = 0; k < n; k++) ts[k] = (double)((dpm ? n - k : n - 1 - k) * r + off);
      return n;
    }
    case VKP_SPACING_TRAILING: {
      int m = np_arange_down(last, -((double)T / n), scratch, n);
      for (int k = 0; k < m; k++) ts[k] = rint(scratch[k]) - 1;
      return m;
    }
  }
  return 0;
}

// Float32 timesteps of the Euler family.
static int float_timesteps(const vkp_scheduler *sc, vkp_spacing spacing, int n, double *ts, double *scratch) {
  int T = sc->num_train_timesteps;
  switch (spacing) {
    case VKP_SPACING_LINSPACE:
      np_linspace(0, T - 1, n, scratch);
      for (int k = 0; k < n; k++) ts[k] = (float)scratch[n - 1 - k];
      return n;
    case VKP_SPACING_LEADING: {
      int r = T / n;
      for (int k = 0; k < n; k++) {
        float t = (float)((n - 1 - k) * r);
        ts[k] = t + (float)sc->cfg.steps_offset;
      }
      return n;
    }
    case VKP_SPACING_TRAILING: {
      int m = np_arange_down(T, -((double)T / n), scratch, n);
      for (int k = 0; k < m; k++) ts[k] = (float)rint(scratch[k]) - 1.0f;
      return m;
    }
  }
  return 0;
}

vkp_status vkp_sampler_schedule_build(const vkp_scheduler *sc, vkp_sampler_kind kind, int steps, bool use_karras,
                                      vkp_spacing spacing, vkp_sampler_schedule *out, vkp_error *err) {
  const vkp_scheduler_config *cfg = &sc->cfg;
  int T = sc->num_train_timesteps, n = steps;
  memset(out, 0, sizeof *out);
  if (kind < 0 || kind >= VKP_SAMPLER_COUNT) return vkp_error_set(err, VKP_ERR_INVALID, "unknown sampler kind %d", kind);
  if (n < 1 || n > T)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: %d sampling steps: must be in [1, num_train_timesteps = %d]",
                         cfg->file, n, T);
  if (use_karras && kind == VKP_SAMPLER_DDIM)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "the ddim sampler has no Karras sigma schedule (diffusers' "
                         "DDIMScheduler has no use_karras_sigmas)");
  if ((int)spacing < 0 || spacing > VKP_SPACING_LINSPACE)
    return vkp_error_set(err, VKP_ERR_INVALID, "unknown timestep spacing %d", (int)spacing);
  out->steps = n;
  out->karras = use_karras;
  out->spacing = spacing;
  vkp_status st = VKP_OK;
  size_t cap = (size_t)2 * n + 2;
  float *sig = malloc((size_t)T * sizeof *sig), *log_sig = malloc((size_t)T * sizeof *log_sig);
  double *ts = calloc(cap, sizeof *ts), *sg = calloc(cap, sizeof *sg);
  double *scratch = calloc((size_t)n + 2, sizeof *scratch);
  out->timesteps = calloc(cap, sizeof *out->timesteps);
  out->sigmas = calloc(cap, sizeof *out->sigmas);
  if (!sig || !log_sig || !ts || !sg || !scratch || !out->timesteps || !out->sigmas) {
    st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory for a %d-step schedule", n);
    goto free_scratch;
  }
  sigma_table(sc, sig, log_sig);

  int m;   // steps the spacing yields
  if (kind == VKP_SAMPLER_DDIM || kind == VKP_SAMPLER_DPMPP_2M) {
    int last = T;
    if (kind == VKP_SAMPLER_DPMPP_2M && cfg->lambda_min_clipped > -INFINITY) {
      // searchsorted(flip(λ_t), lambda_min_clipped): λ_t = log √ᾱ − log √(1−ᾱ), ascending when flipped
      int clipped = 0;
      for (int t = T - 1; t >= 0; t--) {
        float ac = (float)sc->alphas_cumprod[t];
        if (t == T - 1 && cfg->rescale_betas_zero_snr) ac = 0x1p-24f;
        float lam = (float)log((double)sqrtf(ac)) - (float)log((double)sqrtf(1.0f - ac));
        if (lam < cfg->lambda_min_clipped) clipped++;
      }
      last = T - clipped;
      if (last < 1) {
        st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'lambda_min_clipped' (%g) clips every timestep", cfg->file,
                           cfg->lambda_min_clipped);
        goto free_scratch;
      }
    }
    m = integer_timesteps(sc, kind, spacing, n, last, ts, scratch);
    for (int k = 0; k < m; k++)
      if (ts[k] < 0 || ts[k] > T - 1) {
        st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'steps_offset' (%d) puts timestep %.0f outside [0, %d] with %d "
                           "%s steps", cfg->file, cfg->steps_offset, ts[k], T - 1, n, vkp_sampler_name(kind));
        goto free_scratch;
      }
  } else {
    m = float_timesteps(sc, spacing, n, ts, scratch);
    for (int k = 0; k < m; k++)
      if (ts[k] > T - 1) {
        st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'steps_offset' (%d) puts timestep %g past %d with %d %s steps",
                           cfg->file, cfg->steps_offset, ts[k], T - 1, n, vkp_sampler_name(kind));
        goto free_scratch;
      }
  }
  if (m < 1) {
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: %d %s steps give no timesteps", cfg->file, n, vkp_sampler_name(kind));
    goto free_scratch;
  }

  if (kind == VKP_SAMPLER_DDIM) {
    // VP updates on ᾱ; sigmas are only informative here.
    out->alphas_prev = calloc((size_t)m, sizeof *out->alphas_prev);
    if (!out->alphas_prev) {
      st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory for a %d-step schedule", n);
      goto free_scratch;
    }
    double final_ac = cfg->set_alpha_to_one ? 1.0 : sc->alphas_cumprod[0];
    for (int k = 0; k < m; k++) {
      int t = (int)ts[k], prev = t - T / n;
      double ac = sc->alphas_cumprod[t];
      out->timesteps[k] = t;
      out->alphas_prev[k] = prev >= 0 ? sc->alphas_cumprod[prev] : final_ac;
      out->sigmas[k] = sqrt((1 - ac) / ac);
    }
    out->sigmas[m] = sqrt((1 - out->alphas_prev[m - 1]) / out->alphas_prev[m - 1]);
    out->n_evals = m;
    out->steps = m;
    out->init_noise_sigma = 1.0;
    out->scale_input = false;
    goto free_scratch;
  }

  bool dpm = kind == VKP_SAMPLER_DPMPP_2M, euler = kind == VKP_SAMPLER_EULER;
  if (use_karras) {
    double smin, smax;
    if (dpm) {
      smin = sig[0];
      smax = sig[T - 1];
    } else {
      for (int k = 0; k < m; k++) sg[k] = np_interp(ts[k], sig, T);
      bool own_range = kind != VKP_SAMPLER_HEUN;   // Euler's config sigma_min / sigma_max
      smin = own_range && !isnan(cfg->sigma_min) ? cfg->sigma_min : sg[m - 1];
      smax = own_range && !isnan(cfg->sigma_max) ? cfg->sigma_max : sg[0];
    }
    m = n;
    karras(smin, smax, n, sg);
    for (int k = 0; k < n; k++) {
      double t = sigma_to_t(sg[k], log_sig, T);
      if (dpm) ts[k] = cfg->beta_schedule == VKP_BETA_SQUAREDCOS_CAP_V2 ? trunc(t) : rint(t);
      else ts[k] = (float)t;
    }
  } else if (euler && cfg->interpolation_type == VKP_INTERP_LOG_LINEAR) {
    // torch.linspace(log σ_max, log σ_min, n + 1).exp(): n + 1 sigmas, the last σ_min (not 0)
    float *ll = malloc(((size_t)n + 1) * sizeof *ll);
    if (!ll) {
      st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory for a %d-step schedule", n);
      goto free_scratch;
    }
    vkp_scheduler_linspace_f32((float)log((double)sig[T - 1]), (float)log((double)sig[0]), n + 1, ll);
    for (int k = 0; k <= n; k++) sg[k] = (float)exp((double)ll[k]);
    free(ll);
  } else {
    for (int k = 0; k < m; k++) sg[k] = np_interp(ts[k], sig, T);
  }
  bool log_linear_tail = euler && !use_karras && cfg->interpolation_type == VKP_INTERP_LOG_LINEAR;
  if (!log_linear_tail) {
    bool min_last = (euler || dpm) && cfg->final_sigmas_type == VKP_FINAL_SIGMA_MIN;
    sg[m] = min_last ? sig[0] : 0.0;
  }
  for (int k = 0; k <= m; k++) sg[k] = (float)sg[k];   // .astype(np.float32)
  if (euler && cfg->timestep_type == VKP_TIMESTEP_CONTINUOUS && cfg->prediction_type == VKP_PRED_V)
    for (int k = 0; k < m; k++) {
      float l = (float)log(sg[k]);
      ts[k] = 0.25f * l;
    }

  if (kind == VKP_SAMPLER_HEUN) {
    // [σ0, σ1, σ1, ..., σ_{m-1}, σ_{m-1}, σ_m] and [t0, t1, t1, ..., t_{m-1}, t_{m-1}]
    out->n_evals = 2 * m - 1;
    out->timesteps[0] = ts[0];
    out->sigmas[0] = sg[0];
    for (int k = 1; k < m; k++) {
      out->timesteps[2 * k - 1] = out->timesteps[2 * k] = ts[k];
      out->sigmas[2 * k - 1] = out->sigmas[2 * k] = sg[k];
    }
    out->sigmas[2 * m - 1] = sg[m];
  } else {
    out->n_evals = m;
    memcpy(out->timesteps, ts, (size_t)m * sizeof *ts);
    memcpy(out->sigmas, sg, ((size_t)m + 1) * sizeof *sg);
  }
  out->steps = m;
  if (dpm) {
    out->init_noise_sigma = 1.0;
    out->scale_input = false;
  } else {
    float mx = 0;
    for (int k = 0; k <= out->n_evals; k++)
      if ((float)out->sigmas[k] > mx) mx = (float)out->sigmas[k];
    if (spacing == VKP_SPACING_LEADING) {
      float sq = mx * mx;
      float s1 = sq + 1.0f;
      mx = sqrtf(s1);
    }
    out->init_noise_sigma = mx;
    out->scale_input = true;
  }

free_scratch:
  free(sig);
  free(log_sig);
  free(ts);
  free(sg);
  free(scratch);
  if (st) vkp_sampler_schedule_free(out);
  return st;
}
