// scheduler_config.c — reading diffusers scheduler_config.json files (vkp_scheduler.h): one field
// table for every key vkpeft uses, the per-class defaults diffusers' constructors have, and the
// presence bits that let a config written for one class be used by another (`from_config`).
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_json.h"
#include "vkp_scheduler.h"

#define SCHED_CONFIG_MAX_BYTES (4u << 20)   // trained_betas lists make these a few KB at most
#define MAX_TRAIN_TIMESTEPS 100000

// Internal choice values: the class names diffusers writes. The OTHER ones have the same DDPM
// training schedule; flow-matching and EDM classes do not, and fall to VKP_JSON_UNSUPPORTED.
enum { OTHER_FIRST = 100 };
static const vkp_json_choice class_choices[] = {
    {"DDIMScheduler", VKP_SCHED_DDIM},
    {"EulerDiscreteScheduler", VKP_SCHED_EULER},
    {"EulerAncestralDiscreteScheduler", VKP_SCHED_EULER_A},
    {"HeunDiscreteScheduler", VKP_SCHED_HEUN},
    {"DPMSolverMultistepScheduler", VKP_SCHED_DPMSOLVER},
    {"PNDMScheduler", VKP_SCHED_PNDM},
    {"DDPMScheduler", VKP_SCHED_DDPM},
    {"LMSDiscreteScheduler", VKP_SCHED_OTHER},
    {"UniPCMultistepScheduler", VKP_SCHED_OTHER},
    {"DEISMultistepScheduler", VKP_SCHED_OTHER},
    {"DPMSolverSinglestepScheduler", VKP_SCHED_OTHER},
    {"DPMSolverSDEScheduler", VKP_SCHED_OTHER},
    {"KDPM2DiscreteScheduler", VKP_SCHED_OTHER},
    {"KDPM2AncestralDiscreteScheduler", VKP_SCHED_OTHER},
    {"LCMScheduler", VKP_SCHED_OTHER},
    {"TCDScheduler", VKP_SCHED_OTHER},
    {"DDIMParallelScheduler", VKP_SCHED_OTHER},
    {"DDPMParallelScheduler", VKP_SCHED_OTHER},
    {NULL, 0},
};

static const vkp_json_choice beta_choices[] = {
    {"linear", VKP_BETA_LINEAR},
    {"scaled_linear", VKP_BETA_SCALED_LINEAR},
    {"squaredcos_cap_v2", VKP_BETA_SQUAREDCOS_CAP_V2},
    {NULL, 0},
};
static const vkp_json_choice prediction_choices[] = {
    {"epsilon", VKP_PRED_EPSILON},
    {"v_prediction", VKP_PRED_V},
    {"sample", VKP_PRED_SAMPLE},
    {"original_sample", VKP_PRED_SAMPLE},   // EulerDiscreteScheduler's older spelling
    {NULL, 0},
};
static const vkp_json_choice spacing_choices[] = {
    {"leading", VKP_SPACING_LEADING},
    {"trailing", VKP_SPACING_TRAILING},
    {"linspace", VKP_SPACING_LINSPACE},
    {NULL, 0},
};
static const vkp_json_choice timestep_type_choices[] = {
    {"discrete", VKP_TIMESTEP_DISCRETE},
    {"continuous", VKP_TIMESTEP_CONTINUOUS},
    {NULL, 0},
};
static const vkp_json_choice interpolation_choices[] = {
    {"linear", VKP_INTERP_LINEAR},
    {"log_linear", VKP_INTERP_LOG_LINEAR},
    {NULL, 0},
};
static const vkp_json_choice final_sigmas_choices[] = {
    {"zero", VKP_FINAL_SIGMA_ZERO},
    {"sigma_min", VKP_FINAL_SIGMA_MIN},
    {NULL, 0},
};
// diffusers maps "deis" to dpmsolver++ and "logrho"/"bh1"/"bh2" to midpoint (configs written for
// DEIS/UniPC loaded into DPMSolverMultistepScheduler).
static const vkp_json_choice algorithm_choices[] = {
    {"dpmsolver++", VKP_DPM_PLUSPLUS},
    {"deis", VKP_DPM_PLUSPLUS},
    {"dpmsolver", VKP_DPM_DPMSOLVER},
    {"sde-dpmsolver++", VKP_DPM_SDE_PLUSPLUS},
    {"sde-dpmsolver", VKP_DPM_SDE},
    {NULL, 0},
};
static const vkp_json_choice solver_type_choices[] = {
    {"midpoint", VKP_DPM_MIDPOINT},
    {"heun", VKP_DPM_HEUN},
    {"logrho", VKP_DPM_MIDPOINT},
    {"bh1", VKP_DPM_MIDPOINT},
    {"bh2", VKP_DPM_MIDPOINT},
    {NULL, 0},
};
static const vkp_json_choice variance_choices[] = {
    {"fixed_small", 0},
    {"fixed_small_log", 0},
    {"fixed_large", 0},
    {"fixed_large_log", 0},
    {"learned", 1},
    {"learned_range", 1},
    {NULL, 0},
};

#define OFF(m) offsetof(vkp_scheduler_config, m)
#define NUL VKP_JSON_NULL_DEFAULT
#define OPEN (VKP_JSON_OPEN_LO | VKP_JSON_OPEN_HI)
static const vkp_json_field fields[] = {
    {"_class_name", VKP_JSON_ENUM, OFF(cls), .def = VKP_SCHED_NONE, .choices = class_choices,
     .flags = VKP_JSON_UNSUPPORTED},
    {"num_train_timesteps", VKP_JSON_INT, OFF(num_train_timesteps), .lo = 2, .hi = MAX_TRAIN_TIMESTEPS, .def = 1000},
    {"beta_start", VKP_JSON_DOUBLE, OFF(beta_start), .lo = 0, .hi = 1, .def = 0.0001, .flags = OPEN},
    {"beta_end", VKP_JSON_DOUBLE, OFF(beta_end), .lo = 0, .hi = 1, .def = 0.02, .flags = OPEN},
    {"beta_schedule", VKP_JSON_ENUM, OFF(beta_schedule), .def = VKP_BETA_LINEAR, .choices = beta_choices,
     .flags = VKP_JSON_UNSUPPORTED},
    {"rescale_betas_zero_snr", VKP_JSON_BOOL, OFF(rescale_betas_zero_snr), .flags = NUL},
    {"prediction_type", VKP_JSON_ENUM, OFF(prediction_type), .def = VKP_PRED_EPSILON, .choices = prediction_choices,
     .flags = VKP_JSON_UNSUPPORTED},
    {"steps_offset", VKP_JSON_INT, OFF(steps_offset), .lo = 0, .hi = MAX_TRAIN_TIMESTEPS, .flags = NUL},
    {"timestep_spacing", VKP_JSON_ENUM, OFF(timestep_spacing), .def = VKP_SPACING_LEADING, .choices = spacing_choices,
     .flags = NUL},
    {"set_alpha_to_one", VKP_JSON_BOOL, OFF(set_alpha_to_one), .def = 1, .flags = NUL},
    {"clip_sample", VKP_JSON_BOOL, OFF(clip_sample), .def = 1, .flags = NUL},
    {"clip_sample_range", VKP_JSON_DOUBLE, OFF(clip_sample_range), .lo = 0, .hi = INFINITY, .def = 1.0,
     .flags = NUL | VKP_JSON_OPEN_LO},
    {"use_karras_sigmas", VKP_JSON_BOOL, OFF(use_karras_sigmas), .flags = NUL},
    {"timestep_type", VKP_JSON_ENUM, OFF(timestep_type), .def = VKP_TIMESTEP_DISCRETE, .choices = timestep_type_choices,
     .flags = NUL},
    {"interpolation_type", VKP_JSON_ENUM, OFF(interpolation_type), .def = VKP_INTERP_LINEAR,
     .choices = interpolation_choices, .flags = NUL},
    {"final_sigmas_type", VKP_JSON_ENUM, OFF(final_sigmas_type), .def = VKP_FINAL_SIGMA_ZERO,
     .choices = final_sigmas_choices, .flags = NUL},
    {"sigma_min", VKP_JSON_DOUBLE, OFF(sigma_min), .lo = 0, .hi = INFINITY, .def = NAN, .flags = NUL | VKP_JSON_OPEN_LO},
    {"sigma_max", VKP_JSON_DOUBLE, OFF(sigma_max), .lo = 0, .hi = INFINITY, .def = NAN, .flags = NUL | VKP_JSON_OPEN_LO},
    {"solver_order", VKP_JSON_INT, OFF(solver_order), .lo = 1, .hi = 3, .def = 2, .flags = NUL},
    {"algorithm_type", VKP_JSON_ENUM, OFF(algorithm_type), .def = VKP_DPM_PLUSPLUS, .choices = algorithm_choices,
     .flags = NUL},
    {"solver_type", VKP_JSON_ENUM, OFF(solver_type), .def = VKP_DPM_MIDPOINT, .choices = solver_type_choices,
     .flags = NUL},
    {"lower_order_final", VKP_JSON_BOOL, OFF(lower_order_final), .def = 1, .flags = NUL},
    {"euler_at_final", VKP_JSON_BOOL, OFF(euler_at_final), .flags = NUL},
    {"lambda_min_clipped", VKP_JSON_DOUBLE, OFF(lambda_min_clipped), .def = -INFINITY, .flags = NUL},
    {"thresholding", VKP_JSON_BOOL, OFF(thresholding), .flags = NUL},
    {"use_exponential_sigmas", VKP_JSON_BOOL, OFF(use_exponential_sigmas), .flags = NUL},
    {"use_beta_sigmas", VKP_JSON_BOOL, OFF(use_beta_sigmas), .flags = NUL},
    {"use_lu_lambdas", VKP_JSON_BOOL, OFF(use_lu_lambdas), .flags = NUL},
    {"use_flow_sigmas", VKP_JSON_BOOL, OFF(use_flow_sigmas), .flags = NUL},
    {"variance_type", VKP_JSON_ENUM, OFF(variance_learned), .size = 1, .choices = variance_choices, .flags = NUL},
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

// Keys with class-dependent defaults, and their presence bits.
static const struct {
  const char *key;
  unsigned bit;
} presence_keys[] = {
    {"beta_start", VKP_SCHED_HAS_BETA_START},
    {"beta_end", VKP_SCHED_HAS_BETA_END},
    {"timestep_spacing", VKP_SCHED_HAS_TIMESTEP_SPACING},
    {"set_alpha_to_one", VKP_SCHED_HAS_SET_ALPHA_TO_ONE},
    {"clip_sample", VKP_SCHED_HAS_CLIP_SAMPLE},
    {"lower_order_final", VKP_SCHED_HAS_LOWER_ORDER_FINAL},
};

const char *vkp_scheduler_class_name(vkp_scheduler_class cls) {
  for (int i = 0; class_choices[i].name; i++)
    if (class_choices[i].value == (int)cls && cls != VKP_SCHED_OTHER) return class_choices[i].name;
  return NULL;
}

// Fills the keys `present` does not cover with the defaults of class `cls` (diffusers' __init__
// signatures: scheduling_<name>.py).
static void apply_class_defaults(vkp_scheduler_config *c, vkp_scheduler_class cls) {
  bool heun = cls == VKP_SCHED_HEUN;
  if (!(c->present & VKP_SCHED_HAS_BETA_START)) c->beta_start = heun ? 0.00085 : 0.0001;
  if (!(c->present & VKP_SCHED_HAS_BETA_END)) c->beta_end = heun ? 0.012 : 0.02;
  if (!(c->present & VKP_SCHED_HAS_TIMESTEP_SPACING))
    c->timestep_spacing = (cls == VKP_SCHED_DDIM || cls == VKP_SCHED_PNDM || cls == VKP_SCHED_DDPM ||
                           cls == VKP_SCHED_NONE)
                              ? VKP_SPACING_LEADING
                              : VKP_SPACING_LINSPACE;
  if (!(c->present & VKP_SCHED_HAS_SET_ALPHA_TO_ONE)) c->set_alpha_to_one = cls != VKP_SCHED_PNDM;
  if (!(c->present & VKP_SCHED_HAS_CLIP_SAMPLE)) c->clip_sample = cls == VKP_SCHED_DDIM || cls == VKP_SCHED_DDPM;
  if (!(c->present & VKP_SCHED_HAS_LOWER_ORDER_FINAL)) c->lower_order_final = true;
}

void vkp_scheduler_config_default(vkp_scheduler_config *out, vkp_scheduler_class cls) {
  memset(out, 0, sizeof *out);
  vkp_json_field_defaults(fields, N_FIELDS, out);
  out->cls = cls;
  const char *name = vkp_scheduler_class_name(cls);
  snprintf(out->class_name, sizeof out->class_name, "%s", name ? name : "");
  snprintf(out->file, sizeof out->file, "%s", "scheduler_config.json");
  apply_class_defaults(out, cls);
}

void vkp_scheduler_config_free(vkp_scheduler_config *cfg) {
  if (!cfg) return;
  free(cfg->trained_betas);
  cfg->trained_betas = NULL;
}

// trained_betas: null, or a list of T numbers in (0, 1) (the schedule must stay a DDPM schedule:
// β = 0 would make σ_0 = 0, β = 1 ᾱ = 0 before the end).
static vkp_status read_trained_betas(const cJSON *obj, const char *where, vkp_scheduler_config *c, vkp_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "trained_betas");
  if (!v || cJSON_IsNull(v)) return VKP_OK;
  if (!cJSON_IsArray(v))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'trained_betas' must be a list of numbers or null, not %s", where,
                         vkp_json_kind(v));
  int n = cJSON_GetArraySize(v);
  if (n != c->num_train_timesteps)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'trained_betas' has %d values, 'num_train_timesteps' is %d", where,
                         n, c->num_train_timesteps);
  c->trained_betas = malloc((size_t)n * sizeof *c->trained_betas);
  if (!c->trained_betas) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of host memory for trained_betas", where);
  int i = 0;
  const cJSON *b;
  cJSON_ArrayForEach(b, v) {
    if (!cJSON_IsNumber(b) || !(b->valuedouble > 0 && b->valuedouble < 1)) {
      char shown[48];
      if (cJSON_IsNumber(b)) snprintf(shown, sizeof shown, "%.15g", b->valuedouble);
      else snprintf(shown, sizeof shown, "%s", vkp_json_kind(b));
      free(c->trained_betas);
      c->trained_betas = NULL;
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'trained_betas'[%d] must be a number in (0, 1), not %s", where,
                           i, shown);
    }
    c->trained_betas[i++] = b->valuedouble;
  }
  return VKP_OK;
}

vkp_status vkp_scheduler_config_parse(const cJSON *obj, const char *where, vkp_scheduler_config *out, vkp_error *err) {
  if (!where) where = "scheduler_config.json";
  memset(out, 0, sizeof *out);
  vkp_json_field_defaults(fields, N_FIELDS, out);
  snprintf(out->file, sizeof out->file, "%s", where);
  vkp_status st = vkp_json_read_fields(obj, where, fields, N_FIELDS, out, err);
  if (st) return st;
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "_class_name");
  snprintf(out->class_name, sizeof out->class_name, "%s", cJSON_IsString(name) ? name->valuestring : "");
  for (size_t i = 0; i < sizeof presence_keys / sizeof presence_keys[0]; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, presence_keys[i].key);
    if (v && !cJSON_IsNull(v)) out->present |= presence_keys[i].bit;
  }
  apply_class_defaults(out, out->cls);
  if (out->steps_offset >= out->num_train_timesteps)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'steps_offset' is %d, must be below 'num_train_timesteps' (%d)",
                         where, out->steps_offset, out->num_train_timesteps);
  return read_trained_betas(obj, where, out, err);
}

vkp_status vkp_scheduler_config_load(const char *path, vkp_scheduler_config *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  cJSON *j = NULL;
  vkp_status st = vkp_json_load_object(path, SCHED_CONFIG_MAX_BYTES, &j, err);
  if (st) return st;
  st = vkp_scheduler_config_parse(j, path, out, err);
  cJSON_Delete(j);
  return st;
}

void vkp_scheduler_config_for_class(const vkp_scheduler_config *in, vkp_scheduler_class cls, vkp_scheduler_config *out) {
  *out = *in;   // trained_betas is borrowed
  if (cls == VKP_SCHED_FILE) cls = in->cls;
  out->cls = cls;
  const char *name = vkp_scheduler_class_name(cls);
  if (name) snprintf(out->class_name, sizeof out->class_name, "%s", name);
  apply_class_defaults(out, cls);
}
