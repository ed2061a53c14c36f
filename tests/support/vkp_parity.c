// vkp_parity.c — implementation of the parity-test helpers.
#include "vkp_parity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_fileio.h"
#include "vkp_peft.h"
#include "vkp_test.h"

float *vkp_parity_read(vkp_graph *g, const vkp_tensor *t) {
  if (!t) fail_msg("output tensor missing");
  size_t n = (size_t)vkp_tensor_numel(t);
  float *v = malloc(n * sizeof *v);
  if (!v) fail_msg("out of host memory");
  VKP_ASSERT_OK(vkp_graph_ctx(g), vkp_graph_read(g, t, v, n * 4));
  return v;
}

void vkp_check_output(vkp_graph *g, const vkp_tensor *t, vkp_safetensors *io, const char *label, const char *name, double tol) {
  size_t n;
  float *want = vkp_fixture_tensor(io, name, &n), *got = vkp_parity_read(g, t);
  if ((size_t)vkp_tensor_numel(t) != n) fail_msg("%s: %lld elements, the fixture has %zu", name, (long long)vkp_tensor_numel(t), n);
  char what[160];
  snprintf(what, sizeof what, "%s%s", label, name);
  vkp_check_rel(what, got, want, n, tol);
  free(want), free(got);
}

void vkp_fixture_config_edit(const char *from, const char *key, const char *value, const char *dir, char *path, size_t cap) {
  vkp_error err = {0};
  char *text;
  size_t len;
  if (vkp_file_read_all(from, 1 << 20, &text, &len, &err)) fail_msg("%s", err.msg);
  cJSON *j = cJSON_Parse(text);
  free(text);
  if (!j) fail_msg("%s: not JSON", from);
  cJSON_DeleteItemFromObjectCaseSensitive(j, key);
  if (value) cJSON_AddItemToObject(j, key, cJSON_Parse(value));
  text = cJSON_Print(j);
  cJSON_Delete(j);
  snprintf(path, cap, "%s/config.json", dir);
  const void *chunks[1] = {text};
  len = strlen(text);
  if (vkp_file_write_atomic(path, chunks, &len, 1, &err)) fail_msg("%s", err.msg);
  free(text);
}

void vkp_expect_config_status(vkp_status st, vkp_status want, const vkp_error *err, const char *path, const char *key,
                              const char *value) {
  if (st != want) fail_msg("%s = %s: status %s (%s), expected %s", key, value, vkp_status_name(st), err->msg, vkp_status_name(want));
  if (st) {
    printf("  %s\n", err->msg);
    if (!strstr(err->msg, path) || !strstr(err->msg, key)) fail_msg("message '%s' does not name %s and '%s'", err->msg, path, key);
  }
}

int vkp_expect_half_weights(const vkp_model *m, vkp_dtype half) {
  int n = 0;
  for (int i = 0; i < m->nparams; i++) {
    const vkp_param *p = m->params[i];
    vkp_dtype want = p->ndim >= 2 ? half : VKP_DTYPE_F32;
    if (p->dtype != want) fail_msg("%s is stored as %s, not %s", p->name, vkp_dtype_name(p->dtype), vkp_dtype_name(want));
    n += p->dtype == half;
  }
  return n;
}

vkp_optimizer *vkp_parity_adamw_step(vkp_graph *g, vkp_param **tp, int nt, vkp_tensor **grads, vkp_param_set **ps) {
  vkp_ctx *ctx = vkp_graph_ctx(g);
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, ps));
  for (int i = 0; i < nt; i++)
    VKP_ASSERT_OK(ctx, vkp_param_set_add(*ps, tp[i]->name, tp[i]->buf, 0, VKP_DTYPE_F32, tp[i]->ndim, tp[i]->shape, true, NULL));
  vkp_optim_config oc = vkp_adamw_config(0.01);
  vkp_optimizer *opt;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(*ps, &oc, &opt));
  if (!vkp_optimizer_append(opt, g, grads)) fail_msg("optimizer: %s", vkp_graph_error(g));
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  vkp_step_scalars sc = {.loss_scale = 1};
  vkp_optimizer_prepare_step(opt, 1e-2f, true, &sc);
  VKP_ASSERT_OK(ctx, vkp_graph_set_scalars(g, &sc));
  return opt;
}

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
