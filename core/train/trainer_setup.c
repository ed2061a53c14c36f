// trainer_setup.c — what every trainer shares (vkp_trainer.h): the common train.* keys, the
// optimizer and LR schedule of a model's trainable parameters, attaching a peft list, adapter
// folders, checkpoint saving and finding the checkpoint to resume.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_json.h"
#include "vkp_trainer.h"

vkp_status vkp_train_keys_read(const cJSON *c, long min_batch, vkp_train_keys *k, vkp_error *err) {
  long seed;
  VKP_TRY(vkp_config_int(c, "train.batch_size", min_batch, 1 << 16, &k->batch, err));
  VKP_TRY(vkp_config_int(c, "train.grad_accum", 1, 1 << 16, &k->accum, err));
  VKP_TRY(vkp_config_int(c, "train.log_every", 1, 1l << 40, &k->log_every, err));
  VKP_TRY(vkp_config_int(c, "train.eval_every", 0, 1l << 40, &k->eval_every, err));
  VKP_TRY(vkp_config_int(c, "train.checkpoint_every", 0, 1l << 40, &k->ckpt_every, err));
  VKP_TRY(vkp_config_int(c, "train.keep_last", 1, 1000, &k->keep_last, err));
  VKP_TRY(vkp_config_int(c, "train.eval_batch", 1, 1 << 16, &k->eval_batch, err));
  VKP_TRY(vkp_config_int(c, "train.val_limit", 0, 1l << 40, &k->val_limit, err));
  VKP_TRY(vkp_config_int(c, "train.stop_after", 0, 1l << 40, &k->stop_after, err));
  VKP_TRY(vkp_config_int(c, "train.seed", 0, 1l << 52, &seed, err));
  VKP_TRY(vkp_config_real(c, "train.weight_decay", 0, 10, &k->weight_decay, err));
  VKP_TRY(vkp_config_real(c, "train.lr", 0, 10, &k->lr, err));
  VKP_TRY(vkp_config_real(c, "train.momentum", 0, 1, &k->momentum, err));
  VKP_TRY(vkp_config_real(c, "train.max_grad_norm", 0, 1e9, &k->max_grad_norm, err));
  VKP_TRY(vkp_config_real(c, "train.beta1", 0, 0.999999, &k->beta1, err));
  VKP_TRY(vkp_config_real(c, "train.beta2", 0, 0.999999999, &k->beta2, err));
  k->seed = (uint64_t)seed;
  return VKP_OK;
}

// The LR schedule over the run's updates (transformers' get_*_schedule_with_warmup).
static vkp_status make_schedule(const cJSON *c, const vkp_train_keys *k, int64_t updates_per_epoch, size_t n_items,
                                const char *unit, vkp_trainer_optim *o, vkp_error *err) {
  long epochs, max_steps, warmup;
  double warmup_ratio;
  VKP_TRY(vkp_config_int(c, "train.epochs", 0, 1 << 20, &epochs, err));
  VKP_TRY(vkp_config_int(c, "train.max_steps", 0, 1l << 40, &max_steps, err));
  VKP_TRY(vkp_config_int(c, "train.warmup_steps", 0, 1l << 40, &warmup, err));
  VKP_TRY(vkp_config_real(c, "train.warmup_ratio", 0, 1, &warmup_ratio, err));
  o->total_steps = max_steps > 0 ? max_steps : epochs * updates_per_epoch;
  if (o->total_steps <= 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: no training steps (set train.epochs or train.max_steps; %zu %s, batch %ld)",
                         n_items, unit, k->batch);
  if (warmup == 0) warmup = (long)llround(warmup_ratio * (double)o->total_steps);
  vkp_lr_kind lk;
  const char *sname = vkp_config_string(c, "train.schedule");
  if (!sname || vkp_lr_kind_parse(sname, &lk))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.schedule' must be constant, linear or cosine");
  float lr = (float)k->lr;
  o->sched = lk == VKP_LR_CONSTANT ? vkp_lr_constant(lr, warmup)
             : lk == VKP_LR_LINEAR ? vkp_lr_linear(lr, warmup, o->total_steps)
                                   : vkp_lr_cosine(lr, warmup, o->total_steps);
  return VKP_OK;
}

vkp_status vkp_trainer_optim_new(vkp_ctx *ctx, const cJSON *c, const vkp_train_keys *k, vkp_model *m,
                                 int64_t micro_per_epoch, size_t n_items, const char *unit, vkp_trainer_optim *o,
                                 vkp_error *err) {
  memset(o, 0, sizeof *o);
  vkp_status st = vkp_param_set_new(ctx, &o->ps);
  o->nt = st ? 0 : vkp_model_trainable(m, &o->tp);
  if (!st && o->nt == 0) return vkp_error_set(err, VKP_ERR_INVALID, "config: nothing to train (no adapter and no trainable module)");
  for (int i = 0; i < o->nt && !st; i++) {
    vkp_param *p = o->tp[i];
    st = vkp_param_set_add(o->ps, p->name, p->buf, 0, p->dtype, p->ndim, p->shape, true, NULL);
  }
  if (st) return vkp_error_set(err, st, "registering the trainable parameters: %s", vkp_ctx_error(ctx));
  vkp_optim_config named = {0};
  const char *oname = vkp_config_string(c, "train.optimizer");
  if (!oname || vkp_optim_name_parse(oname, &named))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.optimizer' must be \"adamw\", \"adamw8bit\" or \"sgd\"");
  vkp_optim_kind kind = named.kind;
  vkp_optim_config oc = kind == VKP_OPTIM_ADAMW ? vkp_adamw_config(k->weight_decay) : vkp_sgd_config(k->momentum, false, k->weight_decay);
  if (kind == VKP_OPTIM_ADAMW) oc.beta1 = k->beta1, oc.beta2 = k->beta2;
  oc.state_bits = named.state_bits;
  oc.max_grad_norm = k->max_grad_norm;
  if (vkp_optimizer_new(o->ps, &oc, &o->opt)) return vkp_error_set(err, VKP_ERR_INVALID, "config: train: %s", vkp_ctx_error(ctx));
  return make_schedule(c, k, micro_per_epoch / k->accum, n_items, unit, o, err);
}

void vkp_trainer_optim_free(vkp_trainer_optim *o) {
  vkp_optimizer_free(o->opt);
  vkp_param_set_free(o->ps);
  free(o->tp);
  memset(o, 0, sizeof *o);
}

vkp_status vkp_trainer_memory_options(vkp_model *m, const cJSON *cfg, vkp_error *err) {
  const cJSON *gc = vkp_config_get(cfg, "train.gradient_checkpointing");
  if (gc && !cJSON_IsBool(gc))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.gradient_checkpointing' must be true or false");
  m->gradient_checkpointing = gc && cJSON_IsTrue(gc);
  const char *bd = vkp_config_string(cfg, "model.base_dtype");
  vkp_dtype dt = VKP_DTYPE_F32;
  if (bd && vkp_base_dtype_parse(bd, &dt))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'model.base_dtype' must be \"f32\", \"f16\" or \"bf16\" (is \"%s\")", bd);
  if (vkp_config_get(cfg, "model.base_dtype") && !bd)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'model.base_dtype' must be a string");
  if (dt != VKP_DTYPE_F32 && vkp_model_set_base_dtype(m, dt, NULL))
    return vkp_error_set(err, VKP_ERR_INVALID, "model.base_dtype: %s", vkp_ctx_error(m->ctx));
  return VKP_OK;
}

vkp_status vkp_trainer_attach(vkp_model *m, const cJSON *peft_list, uint64_t seed, vkp_trainer_adjust_fn adjust,
                              void *user, vkp_error *err) {
  int i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, peft_list) {
    char where[64];
    snprintf(where, sizeof where, "config peft[%d]", i);
    // An HF-style adapter config with the method's name; aliases imply their keys (vkp_peft.h).
    vkp_peft_config pc;
    VKP_TRY(vkp_peft_config_from_entry(item, where, &pc, err));
    vkp_status st = adjust ? adjust(user, i, &pc, where, err) : VKP_OK;
    if (st) {
      vkp_peft_config_clear(&pc);
      return st;
    }
    if (!cJSON_GetObjectItemCaseSensitive(item, "adapter_name") && i > 0) snprintf(pc.name, sizeof pc.name, "adapter%d", i);
    vkp_adapter *a = NULL;
    st = vkp_peft_attach(m, &pc, seed + (uint64_t)i * 7919u, &a);
    vkp_peft_config_clear(&pc);
    if (st) return vkp_error_set(err, st, "%s: %s", where, vkp_ctx_error(m->ctx));
    i++;
  }
  return VKP_OK;
}

void vkp_trainer_adapter_dir(char *out, size_t cap, const char *base, int k, int n) {
  if (n == 1) snprintf(out, cap, "%s/adapter", base);
  else snprintf(out, cap, "%s/adapter_%d", base, k);
}

vkp_status vkp_trainer_save_adapters(vkp_model *m, const char *base, vkp_trainer_dir_fn after, void *user,
                                     vkp_error *err) {
  int n = vkp_peft_count(m);
  for (int k = 0; k < n; k++) {
    char dir[VKP_CHECKPOINT_PATH_MAX + 32];
    vkp_trainer_adapter_dir(dir, sizeof dir, base, k, n);
    if (vkp_peft_save(m, vkp_peft_get(m, k), dir)) return vkp_error_set(err, VKP_ERR_IO, "%s", vkp_ctx_error(m->ctx));
    if (after) VKP_TRY(after(user, dir, err));
  }
  return VKP_OK;
}

vkp_status vkp_trainer_load_adapters(vkp_model *m, const char *ck_dir, int n, vkp_error *err) {
  for (int k = 0; k < n; k++) {
    char dir[VKP_CHECKPOINT_PATH_MAX + 32];
    vkp_trainer_adapter_dir(dir, sizeof dir, ck_dir, k, n);
    vkp_adapter *a;
    if (vkp_peft_load(m, dir, &a)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s", vkp_ctx_error(m->ctx));
  }
  return VKP_OK;
}

vkp_status vkp_trainer_checkpoint_save(const vkp_trainer_ckpt_opts *o, const vkp_train_state *s, vkp_error *err) {
  cJSON *extra = cJSON_CreateObject();
  if (!extra || !cJSON_AddNumberToObject(extra, "adapters", vkp_peft_count(o->model)) ||
      (o->task && !cJSON_AddStringToObject(extra, "task", o->task))) {
    cJSON_Delete(extra);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  vkp_checkpoint_save_opts so = {.run_dir = o->run_dir, .keep_last = o->keep_last, .ctx = o->ctx, .opt = o->opt,
                                 .save_params = o->save_params, .user = o->user, .extra = extra};
  vkp_status st = vkp_checkpoint_save(&so, s, err);
  cJSON_Delete(extra);
  return st;
}

vkp_status vkp_trainer_find_checkpoint(const char *resume_dir, bool quiet, vkp_checkpoint **out, vkp_error *err) {
  vkp_checkpoint *ck = calloc(1, sizeof *ck);
  *out = ck;
  if (!ck) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  VKP_TRY(vkp_checkpoint_recover(resume_dir, err));   // what a killed run left behind
  VKP_TRY(vkp_checkpoint_find_latest(resume_dir, ck, err));
  VKP_TRY(vkp_checkpoint_trim_log(ck, resume_dir, err));
  if (ck->skipped && !quiet)
    printf("vkpeft train: %d newer checkpoint%s damaged; resuming from %s\n", ck->skipped, ck->skipped > 1 ? "s" : "", ck->dir);
  return VKP_OK;
}

vkp_status vkp_trainer_open_run(const cJSON *cfg_in, const char *resume_dir, vkp_trainer_config_fn load, bool quiet,
                                vkp_trainer_run *r, vkp_error *err) {
  memset(r, 0, sizeof *r);
  if (resume_dir) {
    char path[VKP_CHECKPOINT_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/config.json", resume_dir);
    VKP_TRY(load(path, NULL, 0, &r->cfg_owned, err));
    r->cfg = r->cfg_owned, r->dir = resume_dir;
    return vkp_trainer_find_checkpoint(resume_dir, quiet, &r->ck, err);
  }
  if (!cfg_in) return vkp_error_set(err, VKP_ERR_INVALID, "train: neither a config nor a run directory to resume");
  r->cfg = cfg_in;
  r->dir = vkp_config_string(cfg_in, "output_dir");
  if (!r->dir) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'output_dir' is required");
  return VKP_OK;
}

vkp_status vkp_trainer_write_config(const vkp_trainer_run *r, vkp_error *err) {
  VKP_TRY(vkp_dir_create(r->dir, err));
  if (r->ck) return VKP_OK;
  char path[VKP_CHECKPOINT_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/config.json", r->dir);
  return vkp_json_write_atomic(path, r->cfg, err);
}

void vkp_trainer_run_clear(vkp_trainer_run *r) {
  cJSON_Delete(r->cfg_owned);
  vkp_checkpoint_clear(r->ck);
  free(r->ck);
  memset(r, 0, sizeof *r);
}

double vkp_trainer_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
