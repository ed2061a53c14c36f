// train_text_encoder.c — optional text-encoder adapters in diffusion training (kohya's
// train_network.py without --network_train_unet_only; diffusers' --train_text_encoder):
//   `peft_text_encoder` (a `peft`-style list: any core method on the CLIP text tower's modules,
//   q_proj, k_proj, v_proj, out_proj, fc1, fc2) attached to the tower; empty: the tower is frozen
//   and its states are computed outside the graph (cached per caption), as before.
//   With adapters the training and validation graphs run the tower on the micro-batch's token ids
//   (clip skip as generation applies it), so its adapters get gradients through the UNet's cross
//   attention; nothing is cached.
//   Learning rates (kohya's --unet_lr / --text_encoder_lr): train.unet_lr and train.text_encoder_lr,
//   each -1 (the default) = train.lr, both following train.schedule (warm-up, decay) over the same steps.
//   Two parameter groups: the UNet's optimizer updates inside the training graph; the text
//   encoder's gradients are accumulated there into its own optimizer's buffers and applied once per
//   step by a small update graph with the group's learning rate in its step scalars (the fused
//   update kernel reads one lr per dispatch). train.max_grad_norm clips each group's norm.
//   Files: text-encoder adapter k is saved with UNet adapter k — kohya `lora_te_*` keys and
//   diffusers `text_encoder.*` keys in the same .safetensors, the HF PEFT folder as a
//   `text_encoder/` sub-folder of the UNet's adapter folder (diffusers/PEFT save each model's
//   adapter on its own); checkpoints add its optimizer state (optimizer_text_encoder.safetensors).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train_internal.h"
#include "vkp_adapter_format.h"
#include "vkp_config.h"
#include "vkp_ops.h"

#define TE_OPTIMIZER_FILE "optimizer_text_encoder.safetensors"
#define TE_SUBDIR "text_encoder"

struct vkp_dtrain_te {
  int n;                      // text-encoder adapters (peft_text_encoder entries)
  vkp_model *m;               // the text tower's model (owned by t->te)
  vkp_trainer_optim o;        // its trainable parameters, optimizer and schedule (base lr text_encoder_lr)
  int32_t *ids;               // (max(batch, eval_batch), tokens) token ids of a micro-batch
  vkp_graph *ug;              // the update graph of the group (built at the first step)
  vkp_tensor *gnorm;          // its gradient norm
};

static vkp_model *te_model(vkp_dtrainer *t) { return vkp_text_encoder_clip(t->te)->model; }

// A group's learning-rate key: -1 (the default) means train.lr.
static vkp_status lr_key(const vkp_dtrainer *t, const char *key, double *out, vkp_error *err) {
  const cJSON *v = vkp_config_get(t->cfg, key);
  *out = t->k.lr;
  if (!v || (cJSON_IsNumber(v) && v->valuedouble == -1)) return VKP_OK;
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 10))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must be a learning rate in [0, 10], or -1 for train.lr", key);
  *out = v->valuedouble;
  return VKP_OK;
}

vkp_status vkp_dtrain_te_attach(vkp_dtrainer *t, vkp_error *err) {
  const cJSON *list = vkp_config_get(t->cfg, "peft_text_encoder");
  int n = cJSON_GetArraySize(list), nu = cJSON_GetArraySize(vkp_config_get(t->cfg, "peft"));
  double lr;   // checked here, before any data is read; used by vkp_dtrain_te_optim
  VKP_TRY(lr_key(t, "train.unet_lr", &lr, err));
  VKP_TRY(lr_key(t, "train.text_encoder_lr", &lr, err));
  if (n == 0) return VKP_OK;
  if (n > nu)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'peft_text_encoder' has %d entries, 'peft' %d: text-encoder adapter k is saved with UNet adapter k",
                         n, nu);
  if (!(t->tet = calloc(1, sizeof *t->tet))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_dtrain_te *e = t->tet;
  e->n = n, e->m = te_model(t);
  size_t B = (size_t)(t->k.batch > t->k.eval_batch ? t->k.batch : t->k.eval_batch);
  if (!(e->ids = calloc(B * (size_t)t->tokens, sizeof *e->ids))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (t->ck) {   // resuming: the trained values of the checkpoint's adapter folders
    char dir[VKP_CHECKPOINT_PATH_MAX + 200], name[160];
    for (int k = 0; k < n; k++) {
      vkp_dtrain_adapter_name(t, VKP_DTRAIN_PEFT, k, false, name, sizeof name);
      snprintf(dir, sizeof dir, "%s/%s/" TE_SUBDIR, t->ck->dir, name);
      vkp_adapter *a;
      if (vkp_peft_load(e->m, dir, &a)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s", vkp_ctx_error(t->ctx));
    }
    return VKP_OK;
  }
  vkp_error e2 = {0};
  // Seeds apart from the UNet's (seed + 7919 i) so the two lists draw different initial values.
  if (vkp_trainer_attach(e->m, list, t->k.seed ^ 0x7e7e7e7eull, NULL, NULL, &e2)) {   // "config peft[i]: ..." names the entry
    const char *rest = !strncmp(e2.msg, "config peft", 11) ? e2.msg + 11 : e2.msg;
    return vkp_error_set(err, e2.status, "config peft_text_encoder%s (the text tower's modules: q_proj, k_proj, v_proj, out_proj, fc1, fc2)", rest);
  }
  return VKP_OK;
}

vkp_status vkp_dtrain_te_optim(vkp_dtrainer *t, vkp_error *err) {
  double unet_lr, te_lr;
  VKP_TRY(lr_key(t, "train.unet_lr", &unet_lr, err));
  VKP_TRY(lr_key(t, "train.text_encoder_lr", &te_lr, err));
  t->o.sched.base_lr = (float)unet_lr;
  vkp_dtrain_te *e = t->tet;
  if (!e) return VKP_OK;
  VKP_TRY(vkp_trainer_optim_new(t->ctx, t->cfg, &t->k, e->m, vkp_dtrain_steps_per_epoch(t), t->n_train, "images", &e->o, err));
  e->o.sched.base_lr = (float)te_lr;
  if (!t->ck) return VKP_OK;
  char path[VKP_CHECKPOINT_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/" TE_OPTIMIZER_FILE, t->ck->dir);
  if (vkp_optimizer_load(e->o.opt, path)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s", vkp_ctx_error(t->ctx));
  return VKP_OK;
}

void vkp_dtrain_te_free(vkp_dtrain_te *e) {
  if (!e) return;
  vkp_graph_free(e->ug);
  vkp_trainer_optim_free(&e->o);
  free(e->ids);
  free(e);
}

// ---- the graphs ------------------------------------------------------------------------------------

vkp_tensor *vkp_dtrain_states_tensor(vkp_dtrainer *t, vkp_loss_graph *lg, bool training) {
  vkp_graph *g = lg->g;
  if (!t->tet) return vkp_tensor_input(g, "encoder_hidden_states", VKP_DTYPE_F32, 3, (int64_t[]){lg->batch, t->tokens, t->text_dim});
  vkp_model *m = t->tet->m;
  m->training = training;   // adapter dropout
  vkp_tensor *states = NULL;
  vkp_status st = vkp_text_encoder_forward(t->te, g, lg->batch, &lg->te_in, &states);
  m->training = false;      // prompts encoded for sample grids run without dropout
  if (st && !vkp_graph_status(g)) vkp_graph_fail(g, st, "the text encoder in the training graph");
  return states;
}

int vkp_dtrain_te_param_count(const vkp_dtrainer *t) { return t->tet ? t->tet->o.nt : 0; }

void vkp_dtrain_te_param_tensors(vkp_dtrainer *t, vkp_tensor **p) {
  for (int i = 0; i < vkp_dtrain_te_param_count(t); i++) p[i] = vkp_param_tensor(t->tet->m, t->tet->o.tp[i]);
}

// Must run before the UNet's optimizer nodes: the text encoder's gradients pass through the UNet's
// cross-attention weights, which that update changes in place.
void vkp_dtrain_te_accumulate(vkp_dtrainer *t, vkp_graph *g, vkp_tensor *const *grads) {
  vkp_dtrain_te *e = t->tet;
  for (int i = 0; e && i < e->o.nt; i++) {
    const vkp_param *p = e->o.tp[i];
    if (!grads[i]) continue;   // not reached by the loss (a module the states do not depend on)
    vkp_tensor *gbuf = vkp_tensor_external(g, p->name, vkp_optimizer_grad(e->o.opt, i), 0, VKP_DTYPE_F32, p->ndim, p->shape);
    vkp_tensor_set_name(gbuf, "%s.grad", p->name);
    vkp_graph_expand(g, vkp_accumulate(g, gbuf, grads[i]));
  }
}

vkp_status vkp_dtrain_text_slot(vkp_dtrainer *t, const char *text, int s, vkp_error *err) {
  if (!t->tet) return vkp_dtrain_text_states(t, text, t->states + (size_t)s * t->tokens * t->text_dim, err);
  return vkp_text_encoder_tokenize(t->te, text, t->tet->ids + (size_t)s * t->tokens, err);
}

vkp_status vkp_dtrain_upload_text(vkp_dtrainer *t, vkp_loss_graph *lg) {
  if (!t->tet) return vkp_graph_set_input(lg->g, lg->states, t->states, (size_t)lg->batch * t->tokens * t->text_dim * sizeof(float));
  return vkp_clip_inputs_set(vkp_text_encoder_clip(t->te), lg->g, &lg->te_in, NULL, t->tet->ids, NULL);
}

// The group's update graph: zero gradients accumulated into its buffers (a no-op) so that
// vkp_optimizer_append applies what the training graph accumulated.
static vkp_status build_update(vkp_dtrainer *t, vkp_error *err) {
  vkp_dtrain_te *e = t->tet;
  VKP_TRY(vkp_graph_new(t->ctx, &e->ug));
  vkp_tensor **z = calloc((size_t)e->o.nt, sizeof *z);
  if (!z) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (int i = 0; i < e->o.nt; i++) z[i] = vkp_fill(e->ug, VKP_DTYPE_F32, e->o.tp[i]->ndim, e->o.tp[i]->shape, 0.0f);
  e->gnorm = vkp_optimizer_append(e->o.opt, e->ug, z);
  free(z);
  vkp_status st = vkp_graph_status(e->ug);
  if (!st) st = vkp_graph_compile(e->ug);
  if (st) return vkp_error_set(err, st, "building the text encoder's update graph: %s", vkp_graph_status(e->ug) ? vkp_graph_error(e->ug) : vkp_ctx_error(t->ctx));
  return VKP_OK;
}

vkp_status vkp_dtrain_te_step(vkp_dtrainer *t, vkp_error *err) {
  vkp_dtrain_te *e = t->tet;
  if (!e) return VKP_OK;
  if (!e->ug) VKP_TRY(build_update(t, err));
  vkp_step_scalars sc = {.loss_scale = 1};
  vkp_optimizer_prepare_step(e->o.opt, vkp_lr_at(&e->o.sched, vkp_optimizer_steps(e->o.opt)), true, &sc);
  if (vkp_graph_set_scalars(e->ug, &sc) || vkp_graph_run(e->ug))
    return vkp_error_set(err, VKP_ERR_IO, "text encoder update: %s", vkp_ctx_error(t->ctx));
  return VKP_OK;
}

bool vkp_dtrain_te_lr(const vkp_dtrainer *t, double *lr, double *gnorm) {
  vkp_dtrain_te *e = t->tet;
  if (!e || !e->ug) return false;
  float g = 0;
  vkp_graph_read(e->ug, e->gnorm, &g, sizeof g);
  *lr = vkp_lr_at(&e->o.sched, vkp_optimizer_steps(e->o.opt) - 1), *gnorm = g;
  return true;
}

double vkp_dtrain_te_base_lr(const vkp_dtrainer *t) { return t->tet ? (double)t->tet->o.sched.base_lr : -1; }

// ---- parameters (EMA), adapters on and off ----------------------------------------------------------

int vkp_dtrain_param_count(const vkp_dtrainer *t) { return t->o.nt + vkp_dtrain_te_param_count(t); }

vkp_param *vkp_dtrain_param_at(vkp_dtrainer *t, int i, vkp_model **m) {
  if (i < t->o.nt) return *m = t->unet->model, t->o.tp[i];
  return *m = t->tet->m, t->tet->o.tp[i - t->o.nt];
}

vkp_status vkp_dtrain_te_read_grad(vkp_dtrainer *t, int i, float *out) {
  const vkp_param *p = t->tet->o.tp[i];
  return vkp_buffer_read(vkp_optimizer_grad(t->tet->o.opt, i), 0, out, (uint64_t)vkp_param_numel(p) * sizeof(float));
}

vkp_status vkp_dtrain_te_zero_grad(vkp_dtrainer *t) { return t->tet ? vkp_optimizer_zero_grad(t->tet->o.opt) : VKP_OK; }

void vkp_dtrain_te_enable(vkp_dtrainer *t, bool on) {
  for (int i = 0; t->tet && i < vkp_peft_count(t->tet->m); i++) vkp_adapter_set_enabled(vkp_peft_get(t->tet->m, i), on);
}

// ---- files ---------------------------------------------------------------------------------------------

vkp_status vkp_dtrain_te_save_state(vkp_dtrainer *t, const char *dir, vkp_error *err) {
  if (!t->tet) return VKP_OK;
  char path[VKP_CHECKPOINT_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/" TE_OPTIMIZER_FILE, dir);
  if (vkp_optimizer_save(t->tet->o.opt, path)) return vkp_error_set(err, VKP_ERR_IO, "%s", vkp_ctx_error(t->ctx));
  return VKP_OK;
}

// The tensors of files a then b into one file at path (atomically); metadata: a's, then b's keys a
// lacks, diffusers' per-component `lora_adapter_metadata` objects joined.
static vkp_status merge_files(const char *a, const char *b, const char *path, vkp_error *err) {
  vkp_safetensors *fa = NULL, *fb = NULL;
  vkp_safetensors_writer *w = NULL;
  cJSON *ja = NULL, *jb = NULL;
  char *js = NULL;
  vkp_status st = vkp_safetensors_open(a, &fa, err);
  if (!st) st = vkp_safetensors_open(b, &fb, err);
  if (!st) st = vkp_safetensors_writer_new(&w, err);
  vkp_safetensors *files[2] = {fa, fb};
  for (int f = 0; f < 2 && !st; f++)
    for (size_t i = 0; i < vkp_safetensors_count(files[f]) && !st; i++) {
      const vkp_st_tensor *x = vkp_safetensors_at(files[f], i);
      st = vkp_safetensors_writer_add(w, x->name, x->dtype, x->ndim, x->shape, x->data, err);
    }
  for (int f = 0; f < 2 && !st; f++)
    for (size_t i = 0; i < vkp_safetensors_metadata_count(files[f]) && !st; i++) {
      const char *v, *k = vkp_safetensors_metadata_at(files[f], i, &v);
      if (f == 0 || !vkp_safetensors_metadata(fa, k)) st = vkp_safetensors_writer_set_metadata(w, k, v, err);
    }
  const char *ma = st ? NULL : vkp_safetensors_metadata(fa, "lora_adapter_metadata"), *mb = ma ? vkp_safetensors_metadata(fb, "lora_adapter_metadata") : NULL;
  if (mb && cJSON_IsObject(ja = cJSON_Parse(ma)) && cJSON_IsObject(jb = cJSON_Parse(mb))) {
    for (cJSON *it = jb->child; it; it = it->next)
      if (!cJSON_GetObjectItemCaseSensitive(ja, it->string)) cJSON_AddItemToObject(ja, it->string, cJSON_Duplicate(it, true));
    js = cJSON_PrintUnformatted(ja);
    st = js ? vkp_safetensors_writer_set_metadata(w, "lora_adapter_metadata", js, err) : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  free(js);
  cJSON_Delete(ja), cJSON_Delete(jb);
  vkp_safetensors_writer_free(w);
  vkp_safetensors_free(fa), vkp_safetensors_free(fb);
  return st;
}

vkp_status vkp_dtrain_te_add_part(vkp_dtrainer *t, int k, const char *format, const char *path, bool say, vkp_error *err) {
  vkp_dtrain_te *e = t->tet;
  if (!e || k >= vkp_peft_count(e->m)) return VKP_OK;
  vkp_adapter *a = vkp_peft_get(e->m, k);
  char part[VKP_CHECKPOINT_PATH_MAX + 240];
  if (!strcmp(format, "peft")) {
    snprintf(part, sizeof part, "%s/" TE_SUBDIR, path);
    if (vkp_peft_save(e->m, a, part)) return vkp_error_set(err, VKP_ERR_IO, "%s", vkp_ctx_error(t->ctx));
    return VKP_OK;
  }
  if (access(path, F_OK)) return VKP_OK;   // the UNet's part has no place in this format: no file
  snprintf(part, sizeof part, "%s.text_encoder.tmp", path);
  vkp_status st = vkp_adapter_write(e->m, a, part, format, NULL);
  if (st == VKP_ERR_UNSUPPORTED) {   // a file without the text encoder's part would generate other images
    if (say && !t->quiet) printf("vkpeft train: not saved as %s: the text encoder's part: %s\n", format, vkp_ctx_error(t->ctx));
    unlink(path);
    return VKP_OK;
  }
  if (st) return vkp_error_set(err, st, "%s", vkp_ctx_error(t->ctx));
  st = merge_files(path, part, path, err);
  unlink(part);
  return st;
}
