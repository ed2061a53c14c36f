// clip_eval_wise.c — WiSE-FT between two full CLIP checkpoints: θ = (1-α)·θ_zero-shot + α·θ_tuned,
// parameter by parameter, on the host. (Adapters interpolate by scale + merge; see vkp_clip_eval.h.)
#include <stdlib.h>
#include <string.h>

#include "vkp_clip_eval.h"

vkp_status vkp_clip_interpolate(vkp_clip *c, vkp_clip *tuned, float alpha, vkp_error *err) {
  if (!c || !tuned) return vkp_error_set(err, VKP_ERR_INVALID, "interpolate: no model");
  vkp_model *a = c->model, *b = tuned->model;
  // Check every pairing first, so that a mismatch changes nothing.
  int64_t most = 0;
  for (int i = 0; i < a->nparams; i++) {
    const vkp_param *p = a->params[i];
    if (p->adapter) continue;
    const vkp_param *q = vkp_model_find_param(b, p->name);
    if (!q) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "interpolate: the tuned model has no parameter '%s'", p->name);
    bool same = p->ndim == q->ndim;
    for (int k = 0; same && k < p->ndim; k++) same = p->shape[k] == q->shape[k];
    if (!same) return vkp_error_set(err, VKP_ERR_SHAPE, "interpolate: '%s' has another shape in the tuned model", p->name);
    if (vkp_param_numel(p) > most) most = vkp_param_numel(p);
  }
  float *x = malloc((size_t)most * sizeof *x), *y = malloc((size_t)most * sizeof *y);
  vkp_status st = x && y ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (int i = 0; i < a->nparams && !st; i++) {
    vkp_param *p = a->params[i];
    if (p->adapter) continue;
    vkp_param *q = vkp_model_find_param(b, p->name);
    st = vkp_param_read_f32(a, p, x);
    if (!st) st = vkp_param_read_f32(b, q, y);
    if (st) {
      vkp_error_set(err, st, "interpolate: %s: %s", p->name, vkp_ctx_error(a->ctx));
      break;
    }
    int64_t n = vkp_param_numel(p);
    for (int64_t k = 0; k < n; k++) x[k] = (1.0f - alpha) * x[k] + alpha * y[k];
    st = vkp_param_write_f32(a, p, x);
    if (st) vkp_error_set(err, st, "interpolate: %s: %s", p->name, vkp_ctx_error(a->ctx));
  }
  free(x), free(y);
  return st;
}

vkp_status vkp_clip_interpolate_dir(vkp_clip *c, const char *tuned_dir, float alpha, vkp_error *err) {
  if (!c || !tuned_dir) return vkp_error_set(err, VKP_ERR_INVALID, "interpolate: no model");
  vkp_clip_load_opts o = {.towers = c->cfg.has_text && c->cfg.has_vision ? VKP_CLIP_TOWERS_ALL
                                    : c->cfg.has_text                    ? VKP_CLIP_TEXT_ONLY
                                                                         : VKP_CLIP_VISION_ONLY};
  vkp_clip *t = NULL;
  VKP_TRY(vkp_clip_load(c->model->ctx, tuned_dir, &o, &t, err));
  vkp_status st = vkp_clip_interpolate(c, t, alpha, err);
  vkp_clip_free(t);
  return st;
}
