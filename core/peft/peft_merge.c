// peft_merge.c — folding weight-level adapters into the base weights and back out, computed on
// the host in float64 (merging is rare; this also gives an implementation independent of the
// device forward path, which the merge/unmerge tests compare against). The driver reads the
// module's weight and bias, hands float64 copies to the method's merge hook slot by slot, and
// writes them back; unmerge walks the slots in reverse.
#include <stdlib.h>

#include "peft_internal.h"

void vkp_peft_merge_add(vkp_peft_merge_call *c, const double *d, bool merge) {
  int64_t n = c->out * c->cols;
  for (int64_t i = 0; i < n; i++) c->w[i] += merge ? d[i] : -d[i];
}

static vkp_status apply(vkp_model *m, vkp_adapter_slot *s, bool merge) {
  vkp_module *mod = s->module;
  int64_t out = mod->out, n = vkp_param_numel(mod->weight);
  vkp_peft_merge_call c = {.mod = mod, .out = out, .cols = n / out,
                           .k = mod->kind == VKP_MODULE_CONV2D ? (int64_t)mod->kh * mod->kw : 1};
  float *w = vkp_peft_read_param(m, mod->weight), *b = mod->bias ? vkp_peft_read_param(m, mod->bias) : NULL;
  c.w = malloc((size_t)n * sizeof *c.w);
  c.b = b ? malloc((size_t)out * sizeof *c.b) : NULL;
  vkp_status st = w && c.w && (!mod->bias || (b && c.b)) ? VKP_OK : VKP_ERR_OOM;
  for (int64_t i = 0; !st && i < n; i++) c.w[i] = w[i];
  for (int64_t i = 0; !st && c.b && i < out; i++) c.b[i] = b[i];
  if (!st) st = s->adapter->def->merge(m, s, &c, merge);
  for (int64_t i = 0; !st && i < n; i++) w[i] = (float)c.w[i];
  for (int64_t i = 0; !st && c.b && i < out; i++) b[i] = (float)c.b[i];
  if (!st) st = vkp_param_write_f32(m, mod->weight, w);
  if (!st && b) st = vkp_param_write_f32(m, mod->bias, b);
  free(w), free(b), free(c.w), free(c.b);
  return st;
}

static vkp_status merge_all(vkp_model *m, vkp_adapter *a, bool merge) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  const vkp_peft_method_def *d = a->def;
  if (a->merged == merge) return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s' is %s", a->cfg.name, merge ? "merged already" : "not merged");
  if (d->level == VKP_PEFT_LEVEL_SELECTIVE) {
    a->merged = merge;   // their parameters are the base parameters: nothing to fold
    return VKP_OK;
  }
  if (!d->merge)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "adapter '%s': %s adds modules and cannot be merged into weights",
                         a->cfg.name, d->name);
  if (d->can_merge) VKP_TRY(d->can_merge(m, a));
  // Unmerge takes out what merge folded in: the delta at the scale of merge time, even if
  // vkp_adapter_set_scale was called in between.
  float now = a->scale;
  if (!merge) a->scale = a->merged_scale;
  vkp_status st = VKP_OK;
  for (int i = 0; i < a->nslots && !st; i++) st = apply(m, a->slots[merge ? i : a->nslots - 1 - i], merge);
  a->scale = now;
  if (st) return st;
  a->merged = merge;
  if (merge) a->merged_scale = now;
  return VKP_OK;
}

vkp_status vkp_adapter_merge(vkp_model *m, vkp_adapter *a) { return merge_all(m, a, true); }
vkp_status vkp_adapter_unmerge(vkp_model *m, vkp_adapter *a) { return merge_all(m, a, false); }
