// lr_schedule.c — learning-rate schedules with linear warmup, as transformers' LambdaLR helpers
// (formulas in vkp_optim.h). Computed in double, returned as float.
#include <math.h>
#include <string.h>

#include "vkp_optim.h"

vkp_lr_schedule vkp_lr_constant(float base_lr, int64_t warmup_steps) {
  return (vkp_lr_schedule){.kind = VKP_LR_CONSTANT, .base_lr = base_lr, .warmup_steps = warmup_steps};
}

vkp_lr_schedule vkp_lr_linear(float base_lr, int64_t warmup_steps, int64_t total_steps) {
  return (vkp_lr_schedule){
      .kind = VKP_LR_LINEAR, .base_lr = base_lr, .warmup_steps = warmup_steps, .total_steps = total_steps};
}

vkp_lr_schedule vkp_lr_cosine(float base_lr, int64_t warmup_steps, int64_t total_steps) {
  return (vkp_lr_schedule){.kind = VKP_LR_COSINE,
                           .base_lr = base_lr,
                           .warmup_steps = warmup_steps,
                           .total_steps = total_steps,
                           .num_cycles = 0.5f};
}

static double max1(double x) { return x > 1.0 ? x : 1.0; }

float vkp_lr_at(const vkp_lr_schedule *s, int64_t step) {
  double w = (double)s->warmup_steps, n = (double)s->total_steps, t = (double)step, f;
  if (t < w) {
    f = t / max1(w);
  } else {
    switch (s->kind) {
      case VKP_LR_LINEAR:
        f = fmax(0.0, (n - t) / max1(n - w));
        break;
      case VKP_LR_COSINE: {
        double p = (t - w) / max1(n - w);
        f = fmax(0.0, 0.5 * (1.0 + cos(M_PI * (double)s->num_cycles * 2.0 * p)));
        break;
      }
      default:
        f = 1.0;
    }
  }
  return (float)((double)s->base_lr * f);
}

const char *vkp_lr_kind_name(vkp_lr_kind k) {
  switch (k) {
    case VKP_LR_LINEAR: return "linear";
    case VKP_LR_COSINE: return "cosine";
    default: return "constant";
  }
}

vkp_status vkp_lr_kind_parse(const char *name, vkp_lr_kind *out) {
  if (!name) return VKP_ERR_INVALID;
  if (strcmp(name, "constant") == 0 || strcmp(name, "constant_with_warmup") == 0) *out = VKP_LR_CONSTANT;
  else if (strcmp(name, "linear") == 0) *out = VKP_LR_LINEAR;
  else if (strcmp(name, "cosine") == 0) *out = VKP_LR_COSINE;
  else return VKP_ERR_INVALID;
  return VKP_OK;
}
