// vkp_parity.c — implementation of the parity-test helpers.
#include "vkp_parity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "vkp_peft.h"
#include "vkp_test.h"

double vkp_rel_err(const float *got, const float *want, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    if (!(d <= diff)) diff = d;   // NaN propagates
    if (fabs(want[i]) > scale) scale = fabs(want[i]);
  }
  return diff / (scale > 0 ? scale : 1);
}

float *vkp_fixture_tensor(vkp_safetensors *st, const char *name, size_t *n) {
  const vkp_st_tensor *t = vkp_safetensors_find(st, name);
  if (!t) fail_msg("fixture tensor '%s' missing", name);
  *n = vkp_st_tensor_numel(t);
  float *v = malloc(*n * sizeof *v);
  if (!v) fail_msg("out of host memory");
  vkp_convert_to_f32(t->dtype, t->data, v, *n);
  return v;
}

void vkp_check_rel(const char *what, const float *got, const float *want, size_t n, double tol) {
  double e = vkp_rel_err(got, want, n);
  printf("  %-92s rel err %.2e\n", what, e);
  if (!(e < tol)) fail_msg("%s: relative error %.3e exceeds %.0e", what, e, tol);
}

void vkp_undo_adamw_step(vkp_model *m, vkp_safetensors *io, double lr, double wd, double eps) {
  vkp_param **tp;
  int nt = vkp_model_trainable(m, &tp);
  for (int i = 0; i < nt; i++) {
    char peft_name[512], key[600];
    vkp_peft_param_peft_name(m, tp[i], peft_name, sizeof peft_name);
    snprintf(key, sizeof key, "grad/%s", peft_name);
    size_t n;
    float *g = vkp_fixture_tensor(io, key, &n), *p = malloc(n * sizeof *p);
    VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, tp[i], p));
    for (size_t k = 0; k < n; k++) p[k] = (float)((p[k] + lr * g[k] / (fabs(g[k]) + eps)) / (1 - lr * wd));
    VKP_ASSERT_OK(m->ctx, vkp_param_write_f32(m, tp[i], p));
    free(g), free(p);
  }
  free(tp);
}
