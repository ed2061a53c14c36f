// classify_train.c — the training loop of the image-classification workbench: one recorded graph
// (forward, cross-entropy, backward, optimizer) replayed per micro-batch, periodic evaluation,
// atomic checkpoints and exact resume.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_checkpoint.h"
#include "vkp_classify.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_metrics.h"
#include "vkp_optim.h"
#include "vkp_peft.h"
#include "vkp_preprocess.h"
#include "vkp_progress.h"
#include "vkp_trainer.h"

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
  vkp_trainer_optim o;   // parameter set, optimizer, schedule, total_steps
  vkp_graph *g;
  vkp_tensor *px, *lab, *loss, *logits, *gnorm;
  vkp_loader *loader;
  vkp_metrics_writer *mw;
  vkp_trainer_loop loop;   // the shared step loop (core/train/trainer_loop.c); its bar is NULL when quiet
  vkp_train_keys k;      // the common train.* keys, checked before any data loads
  int64_t step, micro;
  float lr;              // the learning rate of the last optimizer step
  double best_val;
  int64_t best_step;
} run;

// ---- setup ----------------------------------------------------------------------------------

static vkp_status make_optimizer(run *r, vkp_error *err) {
  int64_t micro_per_epoch = (int64_t)(r->data.n_train / (size_t)r->k.batch);
  return vkp_trainer_optim_new(r->ctx, r->cfg, &r->k, r->v->model, micro_per_epoch, r->data.n_train, "images", &r->o, err);
}

static vkp_status build_graph(run *r, vkp_error *err) {
  const vkp_vit_config *c = &r->v->cfg;
  VKP_TRY(vkp_graph_new(r->ctx, &r->g));
  r->px = vkp_tensor_input(r->g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){r->k.batch, c->num_channels, c->image_size, c->image_size});
  r->lab = vkp_tensor_input(r->g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){r->k.batch});
  r->v->model->training = true;
  vkp_vit_outputs out;
  vkp_vit_forward(r->v, r->g, r->px, &out);
  r->logits = out.logits;
  r->loss = vkp_cross_entropy(r->g, out.logits, r->lab);
  vkp_graph_output(r->g, r->loss);
  vkp_graph_output(r->g, r->logits);
  vkp_tensor **t = calloc((size_t)r->o.nt, sizeof *t), **grads = calloc((size_t)r->o.nt, sizeof *grads);
  if (!t || !grads) return VKP_ERR_OOM;
  for (int i = 0; i < r->o.nt; i++) t[i] = vkp_param_tensor(r->v->model, r->o.tp[i]);
  vkp_status st = vkp_graph_backward(r->g, r->loss, t, r->o.nt, grads);
  if (!st) r->gnorm = vkp_optimizer_append(r->o.opt, r->g, grads);
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
      px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){r->k.batch, c->num_channels, c->image_size, c->image_size});
      lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){r->k.batch});
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
      vkp_loader_opts lo = {.batch_size = (int)r->k.batch, .shuffle = true, .drop_last = true,
                            .seed = r->k.seed + 0x5eedu,
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

static vkp_status save_preprocess(void *user, const char *dir, vkp_error *err) {
  run *r = user;
  return vkp_preprocess_save(&r->data.eval_tf, r->v->cfg.num_channels, dir, err);
}

static vkp_status save_adapters(run *r, const char *base, vkp_error *err) {
  return vkp_trainer_save_adapters(r->v->model, base, save_preprocess, r, err);
}

static vkp_status save_params(void *user, const char *dir, vkp_error *err) { return save_adapters(user, dir, err); }

// A checkpoint (core/train's vkp_checkpoint): the adapters, the optimizer, the trainer state.
static vkp_status save_checkpoint(void *user, vkp_error *err) {
  run *r = user;
  vkp_train_state s = {.step = r->step, .micro_step = r->micro, .best_metric = r->best_val, .best_step = r->best_step};
  vkp_loader_tell(r->loader, &s.loader_epoch, &s.loader_step);
  vkp_trainer_ckpt_opts o = {.run_dir = r->dir, .keep_last = (int)r->k.keep_last, .ctx = r->ctx, .opt = r->o.opt,
                             .model = r->v->model, .save_params = save_params, .user = r};
  vkp_status st = vkp_trainer_checkpoint_save(&o, &s, err);
  if (!st) vkp_metrics_sync(r->mw, NULL);
  return st;
}

// ---- evaluation during training -------------------------------------------------------------

static vkp_status evaluate_val(void *user, vkp_error *err) {
  run *r = user;
  if (r->data.n_val == 0) return VKP_OK;
  const vkp_dataset *ds = r->data.val_in_train ? r->data.train : r->data.val;
  size_t n = r->data.n_val;
  if (r->k.val_limit > 0 && (size_t)r->k.val_limit < n) n = (size_t)r->k.val_limit;
  vkp_eval_result res;
  VKP_TRY(vkp_classify_evaluate(r->v, ds, r->data.val_idx, n, &r->data.eval_tf, (int)r->k.eval_batch, &res, err));
  vkp_metric m[3] = {{"val_accuracy", res.accuracy}, {"val_top5", res.top5}, {"val_loss", res.loss}};
  vkp_status st = vkp_metrics_write(r->mw, r->step, m, 3, err);
  if (res.accuracy > r->best_val) r->best_val = res.accuracy, r->best_step = r->step;
  vkp_progress_print(r->loop.bar, "step %lld: validation accuracy %.2f%% (%zu images), loss %.4f", (long long)r->step,
                     100 * res.accuracy, n, res.loss);
  vkp_eval_result_free(&res);
  return st;
}

// ---- the step loop's callbacks (vkp_trainer_loop: the cadence of logs, evaluations, checkpoints) ----

// One optimizer step: grad_accum micro-batches through the recorded graph (the optimizer applies on
// the last one).
static vkp_status loop_step(void *user, vkp_trainer_step_out *o, vkp_error *err) {
  run *r = user;
  double loss_sum = 0;
  int64_t images = 0;
  for (int64_t m = 0; m < r->k.accum; m++) {
    vkp_batch b;
    VKP_TRY(vkp_loader_next(r->loader, &b, err));
    bool apply = m == r->k.accum - 1;
    vkp_step_scalars s = {.loss_scale = 1.0f / (float)r->k.accum, .seed = (uint32_t)(r->k.seed * 1000003u + (uint64_t)r->micro)};
    vkp_optimizer_prepare_step(r->o.opt, vkp_lr_at(&r->o.sched, vkp_optimizer_steps(r->o.opt)), apply, &s);
    vkp_status st = vkp_graph_set_scalars(r->g, &s);
    if (!st) st = vkp_graph_set_input(r->g, r->px, b.pixels, vkp_tensor_nbytes(r->px));
    if (!st) st = vkp_graph_set_input(r->g, r->lab, b.labels, vkp_tensor_nbytes(r->lab));
    if (!st) st = vkp_graph_run(r->g);
    float loss = 0;
    if (!st) st = vkp_graph_read(r->g, r->loss, &loss, 4);
    if (st) return vkp_error_set(err, st, "training step %lld: %s", (long long)r->step, vkp_ctx_error(r->ctx));
    if (!isfinite(loss)) return vkp_error_set(err, VKP_ERR_INVALID, "training diverged at step %lld (loss %g): lower train.lr", (long long)r->step, loss);
    r->micro++, r->lr = s.lr;
    loss_sum += loss, images += b.n;
  }
  r->step++;
  o->loss = loss_sum / (double)r->k.accum;
  o->window[0] = o->loss;
  o->images = images;
  return VKP_OK;
}

static int log_fields(void *user, const vkp_trainer_window *w, vkp_metric *m) {
  run *r = user;
  float gn = 0;
  vkp_graph_read(r->g, r->gnorm, &gn, 4);
  const vkp_metric f[] = {{"epoch", (double)r->micro * (double)r->k.batch / (double)r->data.n_train},
                          {"loss", w->mean[0]},
                          {"lr", r->lr},
                          {"grad_norm", gn},
                          {"images_per_s", w->images_per_s},
                          {"device_mb", (double)vkp_ctx_memory_in_use(r->ctx) / 1048576.0},
                          {"seconds", w->seconds}};
  memcpy(m, f, sizeof f);
  return (int)(sizeof f / sizeof *f);
}

vkp_status vkp_classify_train(vkp_ctx *ctx, const cJSON *cfg_in, const char *resume_dir, bool quiet,
                              vkp_train_summary *summary, vkp_error *err) {
  run R = {.ctx = ctx, .quiet = quiet, .best_val = -1, .best_step = -1}, *r = &R;
  memset(summary, 0, sizeof *summary);
  vkp_trainer_run run = {0};   // config (owned when resuming), directory, checkpoint
  char path[1500];
  vkp_status st = vkp_trainer_open_run(cfg_in, resume_dir, vkp_classify_config, quiet, &run, err);
  vkp_checkpoint *ck = run.ck;   // resuming: the newest intact checkpoint
  r->cfg = run.cfg, r->dir = run.dir;
  if (!st) st = vkp_train_keys_read(r->cfg, 1, &r->k, err);
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
  if (!st && !resume_dir) st = vkp_classify_attach(r->v, vkp_config_get(r->cfg, "peft"), r->k.seed, err);
  if (!st && !resume_dir) st = calibrate_masks(r, err);
  if (!st && resume_dir)   // the adapters as checkpointed (same modules, trained values)
    st = vkp_trainer_load_adapters(r->v->model, ck->dir, cJSON_GetArraySize(vkp_config_get(r->cfg, "peft")), err);
  if (!st) st = vkp_trainer_memory_options(r->v->model, r->cfg, err);   // after the masks' base gradients
  if (!st) st = make_optimizer(r, err);
  int64_t le = 0, ls = 0;
  if (!st && resume_dir) {
    r->step = ck->state.step;
    r->micro = ck->state.micro_step;
    le = ck->state.loader_epoch;
    ls = ck->state.loader_step;
    r->best_val = ck->state.best_metric;
    r->best_step = ck->state.best_step;
    st = vkp_checkpoint_load_optimizer(ck, ctx, r->o.opt, err);
  }
  if (!st) st = vkp_trainer_write_config(&run, err);   // the resolved config, for reproduction and resume
  if (!st) st = build_graph(r, err);
  if (!st) {
    vkp_loader_opts lo = {.batch_size = (int)r->k.batch, .shuffle = true, .drop_last = true,
                          .seed = r->k.seed,
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
           (long long)r->o.total_steps, resume_dir ? " (resumed)" : "");
  r->loop = (vkp_trainer_loop){.ops = {.user = r, .step = loop_step, .log_fields = log_fields, .evaluate = evaluate_val,
                                       .checkpoint = save_checkpoint},
                               .k = &r->k, .step = &r->step, .total_steps = r->o.total_steps, .quiet = quiet, .mw = r->mw};
  if (!st) st = vkp_trainer_loop_run(&r->loop, err);
  double secs, ips;
  vkp_trainer_loop_rate(&r->loop, &secs, &ips);
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
  bool finished = !st && r->step >= r->o.total_steps;
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
      st = vkp_classify_evaluate(r->v, r->data.test, NULL, 0, &r->data.eval_tf, (int)r->k.eval_batch, &test, err);
      if (!st) {
        vkp_metric m[3] = {{"test_accuracy", test.accuracy}, {"test_top5", test.top5}, {"test_loss", test.loss}};
        st = vkp_metrics_write(r->mw, r->step, m, 3, err);
      }
    }
  }
  if (r->mw) vkp_metrics_close(r->mw, st ? NULL : err);
  summary->steps = r->step;
  summary->seconds = secs;
  summary->images_per_s = ips;
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
  vkp_trainer_optim_free(&r->o);
  vkp_vit_free(r->v);
  vkp_classify_data_free(&r->data);
  vkp_trainer_run_clear(&run);
  return st;
}
