// classify_train.c — the training loop of the image-classification workbench: one recorded graph
// (forward, cross-entropy, backward, optimizer) replayed per micro-batch, periodic evaluation,
// atomic checkpoints and exact resume.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vkp_checkpoint.h"
#include "vkp_classify.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_json.h"
#include "vkp_metrics.h"
#include "vkp_optim.h"
#include "vkp_peft.h"
#include "vkp_preprocess.h"
#include "vkp_progress.h"

vkp_status vkp_classify_write_report(const char *run_dir, const cJSON *cfg, const vkp_train_summary *s,
                                     const vkp_eval_result *test, const vkp_classify_data *d, vkp_vit *v,
                                     vkp_error *err);   // classify_report.c

typedef struct run {
  vkp_ctx *ctx;
  const cJSON *cfg;
  const char *dir;
  bool quiet;
  vkp_classify_data data;
  vkp_vit *v;
  vkp_param_set *ps;
  vkp_param **tp;
  int nt;
  vkp_optimizer *opt;
  vkp_lr_schedule sched;
  vkp_graph *g;
  vkp_tensor *px, *lab, *loss, *logits, *gnorm;
  vkp_loader *loader;
  vkp_metrics_writer *mw;
  vkp_progress *bar;   // NULL when quiet
  long batch, accum, log_every, eval_every, ckpt_every, keep_last, eval_batch, val_limit, stop_after;
  double lr, weight_decay, momentum, max_grad_norm, beta1, beta2;   // optimizer keys, checked before any data loads
  int64_t total_steps, step, micro;
  double best_val;
  int64_t best_step;
} run;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- setup ----------------------------------------------------------------------------------

static vkp_status read_train_config(run *r, vkp_error *err) {
  const cJSON *c = r->cfg;
  VKP_TRY(vkp_config_int(c, "train.batch_size", 1, 1 << 16, &r->batch, err));
  VKP_TRY(vkp_config_int(c, "train.grad_accum", 1, 1 << 16, &r->accum, err));
  VKP_TRY(vkp_config_int(c, "train.log_every", 1, 1l << 40, &r->log_every, err));
  VKP_TRY(vkp_config_int(c, "train.eval_every", 0, 1l << 40, &r->eval_every, err));
  VKP_TRY(vkp_config_int(c, "train.checkpoint_every", 0, 1l << 40, &r->ckpt_every, err));
  VKP_TRY(vkp_config_int(c, "train.keep_last", 1, 1000, &r->keep_last, err));
  VKP_TRY(vkp_config_int(c, "train.eval_batch", 1, 1 << 16, &r->eval_batch, err));
  VKP_TRY(vkp_config_int(c, "train.val_limit", 0, 1l << 40, &r->val_limit, err));
  VKP_TRY(vkp_config_int(c, "train.stop_after", 0, 1l << 40, &r->stop_after, err));
  VKP_TRY(vkp_config_real(c, "train.weight_decay", 0, 10, &r->weight_decay, err));
  VKP_TRY(vkp_config_real(c, "train.lr", 0, 10, &r->lr, err));
  VKP_TRY(vkp_config_real(c, "train.momentum", 0, 1, &r->momentum, err));
  VKP_TRY(vkp_config_real(c, "train.max_grad_norm", 0, 1e9, &r->max_grad_norm, err));
  VKP_TRY(vkp_config_real(c, "train.beta1", 0, 0.999999, &r->beta1, err));
  VKP_TRY(vkp_config_real(c, "train.beta2", 0, 0.999999999, &r->beta2, err));
  return VKP_OK;
}

static vkp_status make_optimizer(run *r, vkp_error *err) {
  const cJSON *c = r->cfg;
  vkp_status st = vkp_param_set_new(r->ctx, &r->ps);
  r->nt = st ? 0 : vkp_model_trainable(r->v->model, &r->tp);
  if (!st && r->nt == 0) st = vkp_error_set(err, VKP_ERR_INVALID, "config: nothing to train (no adapter and no trainable module)");
  for (int i = 0; i < r->nt && !st; i++) {
    vkp_param *p = r->tp[i];
    st = vkp_param_set_add(r->ps, p->name, p->buf, 0, p->dtype, p->ndim, p->shape, true, NULL);
  }
  if (st) return st == VKP_ERR_INVALID && !err->msg[0] ? vkp_error_set(err, st, "%s", vkp_ctx_error(r->ctx)) : st;
  vkp_optim_kind kind;
  const char *oname = vkp_config_string(c, "train.optimizer");
  if (!oname || vkp_optim_kind_parse(oname, &kind)) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.optimizer' must be \"adamw\" or \"sgd\"");
  double lr = r->lr;
  vkp_optim_config oc = kind == VKP_OPTIM_ADAMW ? vkp_adamw_config(r->weight_decay) : vkp_sgd_config(r->momentum, false, r->weight_decay);
  if (kind == VKP_OPTIM_ADAMW) oc.beta1 = r->beta1, oc.beta2 = r->beta2;
  oc.max_grad_norm = r->max_grad_norm;
  if (vkp_optimizer_new(r->ps, &oc, &r->opt)) return vkp_error_set(err, VKP_ERR_INVALID, "%s", vkp_ctx_error(r->ctx));
  // Schedule over the optimizer updates of the whole run.
  long epochs, max_steps, warmup;
  double warmup_ratio;
  VKP_TRY(vkp_config_int(c, "train.epochs", 0, 1 << 20, &epochs, err));
  VKP_TRY(vkp_config_int(c, "train.max_steps", 0, 1l << 40, &max_steps, err));
  VKP_TRY(vkp_config_int(c, "train.warmup_steps", 0, 1l << 40, &warmup, err));
  VKP_TRY(vkp_config_real(c, "train.warmup_ratio", 0, 1, &warmup_ratio, err));
  int64_t per_epoch = (int64_t)(r->data.n_train / (size_t)r->batch) / r->accum;
  r->total_steps = max_steps > 0 ? max_steps : epochs * per_epoch;
  if (r->total_steps <= 0) return vkp_error_set(err, VKP_ERR_INVALID, "config: no training steps (set train.epochs or train.max_steps; %zu images, batch %ld)", r->data.n_train, r->batch);
  if (warmup == 0) warmup = (long)llround(warmup_ratio * (double)r->total_steps);
  vkp_lr_kind lk;
  const char *sname = vkp_config_string(c, "train.schedule");
  if (!sname || vkp_lr_kind_parse(sname, &lk)) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.schedule' must be constant, linear or cosine");
  r->sched = lk == VKP_LR_CONSTANT ? vkp_lr_constant((float)lr, warmup)
             : lk == VKP_LR_LINEAR ? vkp_lr_linear((float)lr, warmup, r->total_steps)
                                   : vkp_lr_cosine((float)lr, warmup, r->total_steps);
  return VKP_OK;
}

static vkp_status build_graph(run *r, vkp_error *err) {
  const vkp_vit_config *c = &r->v->cfg;
  VKP_TRY(vkp_graph_new(r->ctx, &r->g));
  r->px = vkp_tensor_input(r->g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){r->batch, c->num_channels, c->image_size, c->image_size});
  r->lab = vkp_tensor_input(r->g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){r->batch});
  r->v->model->training = true;
  vkp_vit_outputs out;
  vkp_vit_forward(r->v, r->g, r->px, &out);
  r->logits = out.logits;
  r->loss = vkp_cross_entropy(r->g, out.logits, r->lab);
  vkp_graph_output(r->g, r->loss);
  vkp_graph_output(r->g, r->logits);
  vkp_tensor **t = calloc((size_t)r->nt, sizeof *t), **grads = calloc((size_t)r->nt, sizeof *grads);
  if (!t || !grads) return VKP_ERR_OOM;
  for (int i = 0; i < r->nt; i++) t[i] = vkp_param_tensor(r->v->model, r->tp[i]);
  vkp_status st = vkp_graph_backward(r->g, r->loss, t, r->nt, grads);
  if (!st) r->gnorm = vkp_optimizer_append(r->opt, r->g, grads);
  free(t), free(grads);
  if (!st) st = vkp_graph_compile(r->g);
  if (st) return vkp_error_set(err, st, "building the training graph: %s", vkp_graph_status(r->g) ? vkp_graph_error(r->g) : vkp_ctx_error(r->ctx));
  return VKP_OK;
}

// ---- gradient-score masks ----------------------------------------------------------------
// Masked adapters with mask "gradient" keep the entries with the largest |dL/dW| summed over a few
// calibration batches of the training data (the base model's gradients, before any update).
#define VKP_MASK_CALIBRATION_BATCHES 4

static vkp_status calibrate_masks(run *r, vkp_error *err) {
  vkp_model *m = r->v->model;
  const vkp_vit_config *c = &r->v->cfg;
  for (int ai = 0; ai < vkp_peft_count(m); ai++) {
    vkp_adapter *a = vkp_peft_get(m, ai);
    const vkp_peft_config *pc = vkp_adapter_config(a);
    if (pc->method != VKP_PEFT_MASKED || pc->mask != VKP_MASK_GRADIENT) continue;
    int ns = 0;
    while (vkp_adapter_slot_module(a, ns)) ns++;
    vkp_graph *g = NULL;
    vkp_loader *ld = NULL;
    vkp_tensor **w = calloc((size_t)ns, sizeof *w), **grads = calloc((size_t)ns, sizeof *grads);
    float **scores = calloc((size_t)ns, sizeof *scores), *tmp = NULL;
    vkp_status st = w && grads && scores ? vkp_graph_new(r->ctx, &g) : VKP_ERR_OOM;
    vkp_tensor *px = NULL, *lab = NULL;
    if (!st) {
      px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){r->batch, c->num_channels, c->image_size, c->image_size});
      lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){r->batch});
      vkp_vit_outputs out;
      vkp_vit_forward(r->v, g, px, &out);
      vkp_tensor *loss = vkp_cross_entropy(g, out.logits, lab);
      for (int i = 0; i < ns; i++) w[i] = vkp_param_tensor(m, vkp_adapter_slot_module(a, i)->weight);
      st = vkp_graph_backward(g, loss, w, ns, grads);
      for (int i = 0; i < ns && !st; i++) vkp_graph_output(g, grads[i]);
      if (!st) st = vkp_graph_compile(g);
      if (st) vkp_error_set(err, st, "mask calibration: %s", vkp_graph_status(g) ? vkp_graph_error(g) : vkp_ctx_error(r->ctx));
    }
    if (!st) {
      vkp_loader_opts lo = {.batch_size = (int)r->batch, .shuffle = true, .drop_last = true,
                            .seed = (uint64_t)vkp_config_number(r->cfg, "train.seed") + 0x5eedu,
                            .indices = r->data.train_idx, .n_indices = r->data.n_train};
      st = vkp_loader_new(r->data.train, &r->data.eval_tf, &lo, &ld, err);
    }
    for (int b = 0; b < VKP_MASK_CALIBRATION_BATCHES && !st; b++) {
      vkp_batch batch;
      st = vkp_loader_next(ld, &batch, err);
      if (!st) st = vkp_graph_set_input(g, px, batch.pixels, vkp_tensor_nbytes(px));
      if (!st) st = vkp_graph_set_input(g, lab, batch.labels, vkp_tensor_nbytes(lab));
      if (!st) st = vkp_graph_run(g);
      for (int i = 0; i < ns && !st; i++) {
        size_t n = (size_t)vkp_tensor_numel(w[i]);
        if (!scores[i] && !(scores[i] = calloc(n, sizeof(float)))) st = VKP_ERR_OOM;
        free(tmp);
        if (!st && !(tmp = malloc(n * sizeof *tmp))) st = VKP_ERR_OOM;
        if (!st) st = vkp_graph_read(g, grads[i], tmp, n * sizeof *tmp);
        for (size_t k = 0; k < n && !st; k++) scores[i][k] += fabsf(tmp[k]);
      }
    }
    for (int i = 0; i < ns && !st; i++) st = vkp_masked_set_scores(m, a, i, scores[i]);
    if (st && !err->msg[0]) vkp_error_set(err, st, "mask calibration: %s", vkp_ctx_error(r->ctx));
    for (int i = 0; i < ns && scores; i++) free(scores[i]);
    free(scores), free(tmp), free(w), free(grads);
    vkp_loader_free(ld);
    vkp_graph_free(g);
    if (st) return st;
  }
  return VKP_OK;
}

// ---- checkpoints ----------------------------------------------------------------------------

static void adapter_dir(char *out, size_t cap, const char *base, int k, int n) {
  if (n == 1) snprintf(out, cap, "%s/adapter", base);
  else snprintf(out, cap, "%s/adapter_%d", base, k);
}

static vkp_status save_adapters(run *r, const char *base, vkp_error *err) {
  int n = vkp_peft_count(r->v->model);
  for (int k = 0; k < n; k++) {
    char dir[VKP_CHECKPOINT_PATH_MAX + 32];
    adapter_dir(dir, sizeof dir, base, k, n);
    if (vkp_peft_save(r->v->model, vkp_peft_get(r->v->model, k), dir))
      return vkp_error_set(err, VKP_ERR_IO, "%s", vkp_ctx_error(r->ctx));
    VKP_TRY(vkp_preprocess_save(&r->data.eval_tf, r->v->cfg.num_channels, dir, err));
  }
  return VKP_OK;
}

static vkp_status save_params(void *user, const char *dir, vkp_error *err) { return save_adapters(user, dir, err); }

// A checkpoint (core/train's vkp_checkpoint): the adapters, the optimizer, the trainer state.
static vkp_status save_checkpoint(run *r, vkp_error *err) {
  vkp_train_state s = {.step = r->step, .micro_step = r->micro, .best_metric = r->best_val, .best_step = r->best_step};
  vkp_loader_tell(r->loader, &s.loader_epoch, &s.loader_step);
  cJSON *extra = cJSON_CreateObject();
  if (!extra || !cJSON_AddNumberToObject(extra, "adapters", vkp_peft_count(r->v->model))) {
    cJSON_Delete(extra);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  vkp_checkpoint_save_opts o = {.run_dir = r->dir, .keep_last = (int)r->keep_last, .ctx = r->ctx, .opt = r->opt,
                                .save_params = save_params, .user = r, .extra = extra};
  vkp_status st = vkp_checkpoint_save(&o, &s, err);
  cJSON_Delete(extra);
  if (!st) vkp_metrics_sync(r->mw, NULL);
  return st;
}

// ---- evaluation during training -------------------------------------------------------------

static vkp_status evaluate_val(run *r, vkp_error *err) {
  if (r->data.n_val == 0) return VKP_OK;
  const vkp_dataset *ds = r->data.val_in_train ? r->data.train : r->data.val;
  size_t n = r->data.n_val;
  if (r->val_limit > 0 && (size_t)r->val_limit < n) n = (size_t)r->val_limit;
  vkp_eval_result res;
  VKP_TRY(vkp_classify_evaluate(r->v, ds, r->data.val_idx, n, &r->data.eval_tf, (int)r->eval_batch, &res, err));
  vkp_metric m[3] = {{"val_accuracy", res.accuracy}, {"val_top5", res.top5}, {"val_loss", res.loss}};
  vkp_status st = vkp_metrics_write(r->mw, r->step, m, 3, err);
  if (res.accuracy > r->best_val) r->best_val = res.accuracy, r->best_step = r->step;
  vkp_progress_print(r->bar, "step %lld: validation accuracy %.2f%% (%zu images), loss %.4f", (long long)r->step,
                     100 * res.accuracy, n, res.loss);
  vkp_eval_result_free(&res);
  return st;
}

// ---- the loop -------------------------------------------------------------------------------

static vkp_status train_loop(run *r, vkp_error *err) {
  double t0 = now_s(), t_window = t0, loss_sum = 0;
  int64_t step0 = r->step;
  int64_t images_window = 0, loss_count = 0;
  int64_t end = r->stop_after > 0 && r->stop_after < r->total_steps ? r->stop_after : r->total_steps;
  uint64_t seed = (uint64_t)vkp_config_number(r->cfg, "train.seed");
  while (r->step < end) {
    vkp_batch b;
    VKP_TRY(vkp_loader_next(r->loader, &b, err));
    bool apply = (r->micro + 1) % r->accum == 0;
    vkp_step_scalars s = {.loss_scale = 1.0f / (float)r->accum, .seed = (uint32_t)(seed * 1000003u + (uint64_t)r->micro)};
    vkp_optimizer_prepare_step(r->opt, vkp_lr_at(&r->sched, vkp_optimizer_steps(r->opt)), apply, &s);
    vkp_status st = vkp_graph_set_scalars(r->g, &s);
    if (!st) st = vkp_graph_set_input(r->g, r->px, b.pixels, vkp_tensor_nbytes(r->px));
    if (!st) st = vkp_graph_set_input(r->g, r->lab, b.labels, vkp_tensor_nbytes(r->lab));
    if (!st) st = vkp_graph_run(r->g);
    float loss = 0, gn = 0;
    if (!st) st = vkp_graph_read(r->g, r->loss, &loss, 4);
    if (st) return vkp_error_set(err, st, "training step %lld: %s", (long long)r->step, vkp_ctx_error(r->ctx));
    if (!isfinite(loss)) return vkp_error_set(err, VKP_ERR_INVALID, "training diverged at step %lld (loss %g): lower train.lr", (long long)r->step, loss);
    r->micro++;
    images_window += b.n;
    loss_sum += loss, loss_count++;
    if (!apply) continue;
    r->step++;
    vkp_progress_update(r->bar, r->step, (r->step - step0) * r->batch * r->accum, loss, NULL);
    if (r->step % r->log_every == 0 || r->step == end) {
      vkp_graph_read(r->g, r->gnorm, &gn, 4);
      double dt = now_s() - t_window, ips = dt > 0 ? (double)images_window / dt : 0;
      vkp_metric m[7] = {{"epoch", (double)r->micro * (double)r->batch / (double)r->data.n_train},
                         {"loss", loss_sum / (double)loss_count},
                         {"lr", s.lr},
                         {"grad_norm", gn},
                         {"images_per_s", ips},
                         {"device_mb", (double)vkp_ctx_memory_in_use(r->ctx) / 1048576.0},
                         {"seconds", now_s() - t0}};
      VKP_TRY(vkp_metrics_write(r->mw, r->step, m, 7, err));
      t_window = now_s(), images_window = 0, loss_sum = 0, loss_count = 0;
    }
    bool eval_now = r->eval_every > 0 && r->step % r->eval_every == 0;
    bool ckpt_now = (r->ckpt_every > 0 && r->step % r->ckpt_every == 0) || r->step == end;
    if (eval_now || (r->step == end && r->eval_every == 0)) VKP_TRY(evaluate_val(r, err));
    if (ckpt_now) VKP_TRY(save_checkpoint(r, err));
  }
  return VKP_OK;
}

vkp_status vkp_classify_train(vkp_ctx *ctx, const cJSON *cfg_in, const char *resume_dir, bool quiet,
                              vkp_train_summary *summary, vkp_error *err) {
  run R = {.ctx = ctx, .quiet = quiet, .best_val = -1, .best_step = -1}, *r = &R;
  memset(summary, 0, sizeof *summary);
  cJSON *cfg_owned = NULL;
  vkp_checkpoint *ck = NULL;   // resuming: the newest intact checkpoint
  char path[1500];
  vkp_status st = VKP_OK;
  if (resume_dir) {
    snprintf(path, sizeof path, "%s/config.json", resume_dir);
    st = vkp_classify_config(path, NULL, 0, &cfg_owned, err);
    if (!st && !(ck = calloc(1, sizeof *ck))) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    if (!st) st = vkp_checkpoint_find_latest(resume_dir, ck, err);
    if (!st && ck->skipped && !quiet)
      printf("vkpeft train: %d newer checkpoint%s damaged; resuming from %s\n", ck->skipped, ck->skipped > 1 ? "s" : "", ck->dir);
    r->cfg = cfg_owned;
    r->dir = resume_dir;
  } else {
    r->cfg = cfg_in;
    r->dir = vkp_config_string(cfg_in, "output_dir");
    if (!r->dir) st = vkp_error_set(err, VKP_ERR_INVALID, "config: key 'output_dir' is required");
  }
  if (!st) st = read_train_config(r, err);
  if (!st) st = vkp_dir_create(r->dir, err);
  // Data first: the class count sizes the classifier.
  long size = (long)vkp_config_number(r->cfg, "model.image_size");
  const char *pre = vkp_config_string(r->cfg, "model.pretrained");
  vkp_vit_config pc;
  if (!st && pre) {
    char cp[1100];
    snprintf(cp, sizeof cp, "%s/config.json", pre);
    st = vkp_vit_config_load(cp, &pc, err);
  }
  int image = size > 0 ? (int)size : pre ? pc.image_size : (int)vkp_config_number(r->cfg, "model.init.image_size");
  int channels = pre ? pc.num_channels : (int)vkp_config_number(r->cfg, "model.init.num_channels");
  if (!st) st = vkp_classify_data_load(r->cfg, image, channels, &r->data, err);
  if (!st) st = vkp_classify_model(ctx, r->cfg, r->data.train->n_classes, (const char *const *)r->data.train->class_names, &r->v, err);
  if (!st && !resume_dir) st = vkp_classify_attach(r->v, vkp_config_get(r->cfg, "peft"), (uint64_t)vkp_config_number(r->cfg, "train.seed"), err);
  if (!st && !resume_dir) st = read_train_config(r, err);   // batch size for the calibration
  if (!st && !resume_dir) st = calibrate_masks(r, err);
  if (!st && resume_dir) {   // the adapters as checkpointed (same modules, trained values)
    int n = cJSON_GetArraySize(vkp_config_get(r->cfg, "peft"));
    for (int k = 0; k < n && !st; k++) {
      char dir[VKP_CHECKPOINT_PATH_MAX + 32];
      adapter_dir(dir, sizeof dir, ck->dir, k, n);
      vkp_adapter *a;
      if (vkp_peft_load(r->v->model, dir, &a)) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s", vkp_ctx_error(ctx));
    }
  }
  if (!st) st = make_optimizer(r, err);
  int64_t le = 0, ls = 0;
  if (!st && resume_dir) {
    r->step = ck->state.step;
    r->micro = ck->state.micro_step;
    le = ck->state.loader_epoch;
    ls = ck->state.loader_step;
    r->best_val = ck->state.best_metric;
    r->best_step = ck->state.best_step;
    st = vkp_checkpoint_load_optimizer(ck, ctx, r->opt, err);
  }
  if (!st) {   // the resolved config, for reproduction and resume
    snprintf(path, sizeof path, "%s/config.json", r->dir);
    if (!resume_dir) st = vkp_json_write_atomic(path, r->cfg, err);
  }
  if (!st) st = build_graph(r, err);
  if (!st) {
    vkp_loader_opts lo = {.batch_size = (int)r->batch, .shuffle = true, .drop_last = true,
                          .seed = (uint64_t)vkp_config_number(r->cfg, "train.seed"),
                          .n_workers = (int)vkp_config_number(r->cfg, "data.workers"), .indices = r->data.train_idx,
                          .n_indices = r->data.n_train, .start_epoch = le, .start_step = ls};
    st = vkp_loader_new(r->data.train, &r->data.train_tf, &lo, &r->loader, err);
  }
  if (!st) {
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    st = vkp_metrics_open(path, resume_dir ? r->step : VKP_METRICS_NEW_RUN, &r->mw, err);
  }
  vkp_peft_report rep = r->v ? vkp_peft_get_report(r->v->model) : (vkp_peft_report){0};
  if (!st && !quiet)
    printf("vkpeft train: %s, %zu training images, %d classes; %lld trainable of %lld parameters (%.2f%%); %lld steps%s\n",
           vkp_ctx_info(ctx)->name, r->data.n_train, r->data.train->n_classes, (long long)rep.trainable_params,
           (long long)rep.total_params, 100.0 * (double)rep.trainable_params / (double)rep.total_params,
           (long long)r->total_steps, resume_dir ? " (resumed)" : "");
  double t0 = now_s();
  int64_t step0 = r->step;
  if (!st && !quiet) {
    vkp_progress_opts po = {.label = "train", .total = r->total_steps, .unit = "img", .out = stdout, .tty = -1};
    r->bar = vkp_progress_new(&po);
    vkp_progress_update(r->bar, r->step, 0, NAN, NULL);
  }
  if (!st) st = train_loop(r, err);
  vkp_progress_free(r->bar);
  r->bar = NULL;
  double secs = now_s() - t0;
  if (!st && getenv("VKPEFT_PROFILE")) {   // device time per op of the last training step
    vkp_op_time ops[64];
    uint32_t n = vkp_graph_profile(r->g, ops, 64);
    double total = 0;
    for (uint32_t i = 0; i < n; i++) total += ops[i].ms;
    fprintf(stderr, "profile of one training step (%u dispatches): %.1f ms\n", vkp_graph_get_stats(r->g).dispatches, total);
    for (uint32_t i = 0; i < n && i < 25; i++) fprintf(stderr, "  %-22s %5u x %9.3f ms  %5.1f%%\n", ops[i].op, ops[i].count, ops[i].ms, 100 * ops[i].ms / total);
  }
  // Final outputs (a run stopped early by stop_after keeps only its checkpoint).
  vkp_eval_result test = {0};
  bool finished = !st && r->step >= r->total_steps;
  if (finished) {
    st = save_adapters(r, r->dir, err);
    bool full = false;
    const cJSON *item;
    cJSON_ArrayForEach(item, vkp_config_get(r->cfg, "peft")) {
      const char *m = vkp_config_string(item, "method");
      full |= m && !strcmp(m, "full");
    }
    if (!st && full) {
      snprintf(path, sizeof path, "%s/model", r->dir);
      st = vkp_vit_save(r->v, path, err);
      if (!st) st = vkp_preprocess_save(&r->data.eval_tf, r->v->cfg.num_channels, path, err);
    }
    if (!st && r->data.test) {
      st = vkp_classify_evaluate(r->v, r->data.test, NULL, 0, &r->data.eval_tf, (int)r->eval_batch, &test, err);
      if (!st) {
        vkp_metric m[3] = {{"test_accuracy", test.accuracy}, {"test_top5", test.top5}, {"test_loss", test.loss}};
        st = vkp_metrics_write(r->mw, r->step, m, 3, err);
      }
    }
  }
  if (r->mw) vkp_metrics_close(r->mw, st ? NULL : err);
  summary->steps = r->step;
  summary->seconds = secs;
  summary->images_per_s = secs > 0 ? (double)(r->step - step0) * (double)(r->batch * r->accum) / secs : 0;
  summary->best_val_acc = r->best_val;
  summary->test_acc = test.accuracy;
  summary->test_top5 = test.top5;
  summary->trainable_params = rep.trainable_params;
  summary->total_params = rep.total_params;
  summary->peak_device_bytes = vkp_ctx_memory_peak(ctx);
  summary->arena_bytes = r->g ? vkp_graph_get_stats(r->g).arena_bytes : 0;
  snprintf(summary->run_dir, sizeof summary->run_dir, "%s", r->dir ? r->dir : "");
  if (finished && !st) {
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    st = vkp_classify_write_report(r->dir, r->cfg, summary, r->data.test ? &test : NULL, &r->data, r->v, err);
  }
  vkp_eval_result_free(&test);
  vkp_loader_free(r->loader);
  vkp_graph_free(r->g);
  vkp_optimizer_free(r->opt);
  vkp_param_set_free(r->ps);
  free(r->tp);
  vkp_vit_free(r->v);
  vkp_classify_data_free(&r->data);
  cJSON_Delete(cfg_owned);
  vkp_checkpoint_clear(ck);
  free(ck);
  return st;
}
