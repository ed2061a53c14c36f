// clip_train.c — the CLIP trainer: one recorded graph (forward, contrastive or probe loss,
// backward, optimizer) replayed per micro-batch, logit_scale clamped after every update, periodic
// evaluation, atomic checkpoints and exact resume (core/train/vkp_checkpoint.h). The step loop's
// cadence, log window and progress bar are core/train's vkp_trainer_loop; this file supplies its
// callbacks.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_checkpoint.h"
#include "vkp_clip_train.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_metrics.h"
#include "vkp_optim.h"
#include "vkp_peft.h"
#include "vkp_progress.h"
#include "vkp_trainer.h"

// A graph computing the objective on one micro-batch (training; mask calibration).
typedef struct step_graph {
  vkp_graph *g;
  vkp_clip_inputs in;
  vkp_tensor *labels;         // (B) i32, linear_probe
  vkp_tensor *loss, *logits;  // [1]; (B, B) logits_per_image or (B, K) probe logits
  vkp_tensor *image_embeds, *text_embeds;   // (B, P); text NULL for the probe
} step_graph;

struct vkp_clip_trainer {
  vkp_ctx *ctx;
  vkp_trainer_run run;        // config (owned when resuming), directory, checkpoint
  const cJSON *cfg;
  const char *dir;
  bool quiet, probe, resumed, random_base, full;
  vkp_clip_data data;
  vkp_clip *clip;
  vkp_clip_tokenizer *tok;
  int T;                      // tokens per caption
  vkp_trainer_optim o;        // parameter set, optimizer, schedule, total_steps
  step_graph tg;              // the training graph
  vkp_tensor *gnorm;          // its optimizer's gradient norm
  vkp_loader *loader;
  vkp_metrics_writer *mw;
  vkp_trainer_loop loop;      // the step loop (vkp_trainer.h): cadence, log window, progress bar, clock
  vkp_train_keys k;           // the common train.* keys
  double scale_max;
  int64_t step, micro;
  double best;                // best validation metric (higher is better), valid when best_step >= 0
  int64_t best_step;
  vkp_checkpoint *ck;         // resuming: the checkpoint (run.ck)
  // host buffers of a micro-batch
  int32_t *ids;               // (B, T)
  float *logits_host;         // (B, K)
  bool recording;
  vkp_clip_batch_record rec;
  float *rec_pixels, *rec_ie, *rec_te;
  int32_t *rec_ids, *rec_labels;
  vkp_clip_step_info last;
  vkp_clip_embedder *emb;     // evaluation embeddings (vkp_clip_eval.h), eval transform
  vkp_clip_val_result val;    // last evaluation (with its embeddings)
  size_t val_n;               // images it covered: data.val_idx[0 .. val_n)
};

static vkp_status ctx_fail(vkp_clip_trainer *t, vkp_status st, const char *what, vkp_error *err) {
  return vkp_error_set(err, st, "%s: %s", what, vkp_ctx_error(t->ctx));
}

// ---- setup ----------------------------------------------------------------------------------

static vkp_status read_train_config(vkp_clip_trainer *t, vkp_error *err) {
  const cJSON *c = t->cfg;
  VKP_TRY(vkp_train_keys_read(c, 2, &t->k, err));
  VKP_TRY(vkp_config_real(c, "train.logit_scale_max", 0, 20, &t->scale_max, err));
  long workers;
  VKP_TRY(vkp_config_int(c, "data.workers", 0, 64, &workers, err));
  const char *obj = vkp_config_string(c, "train.objective");
  if (!obj || (strcmp(obj, "contrastive") && strcmp(obj, "linear_probe")))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.objective' must be \"contrastive\" or \"linear_probe\"");
  t->probe = !strcmp(obj, "linear_probe");
  const cJSON *item;
  cJSON_ArrayForEach(item, vkp_config_get(c, "peft")) {
    const char *m = vkp_config_string(item, "method");
    t->full |= m && !strcmp(m, "full");
  }
  return VKP_OK;
}

// linear_probe: the head `classifier` (K, P) on the image embeddings, small normal init.
static vkp_status add_head(vkp_clip_trainer *t, vkp_error *err) {
  vkp_model *m = t->clip->model;
  int64_t shape[2] = {t->data.n_classes, t->clip->cfg.projection_dim};
  vkp_module *head = vkp_model_add_module(m, "classifier", NULL, VKP_MODULE_LINEAR, -1, 2, shape, shape[0]);
  if (!head) return ctx_fail(t, VKP_ERR_OOM, "adding the linear-probe head", err);
  if (vkp_param_init_normal(m, head->weight, 0.01f, t->k.seed + 0x9e3779b9u)) return ctx_fail(t, VKP_ERR_OOM, "initialising the head", err);
  return VKP_OK;
}

static vkp_status make_optimizer(vkp_clip_trainer *t, vkp_error *err) {
  return vkp_trainer_optim_new(t->ctx, t->cfg, &t->k, t->clip->model, vkp_loader_steps_per_epoch(t->loader), t->data.n_train,
                               "training pairs", &t->o, err);
}

// Inputs, forward and the objective of one micro-batch into a new graph sg->g (not compiled).
static vkp_status forward_loss(vkp_clip_trainer *t, step_graph *sg, vkp_error *err) {
  vkp_clip *c = t->clip;
  VKP_TRY(vkp_graph_new(t->ctx, &sg->g));
  vkp_status st = vkp_clip_inputs_new(c, sg->g, t->k.batch, t->probe ? 0 : t->k.batch, t->T, false, &sg->in);
  if (st) return ctx_fail(t, st, "building the training graph", err);
  vkp_clip_outputs out;
  st = vkp_clip_forward(c, sg->g, &sg->in, &out);
  if (!st && t->probe) {
    sg->labels = vkp_tensor_input(sg->g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){t->k.batch});
    sg->logits = vkp_nn_linear(c->model, vkp_model_find_module(c->model, "classifier"), out.image_embeds);
    sg->loss = vkp_cross_entropy(sg->g, sg->logits, sg->labels);
  } else if (!st) {
    sg->logits = out.logits_per_image;
    sg->loss = out.loss;
  }
  sg->image_embeds = out.image_embeds;
  sg->text_embeds = out.text_embeds;
  if (!st) st = vkp_graph_status(sg->g);
  return st ? vkp_error_set(err, st, "building the training graph: %s", vkp_graph_error(sg->g)) : VKP_OK;
}

// Uploads micro-batch b (captions looked up in the tokenised training captions) into sg.
static vkp_status upload_batch(vkp_clip_trainer *t, step_graph *sg, const vkp_batch *b) {
  const int64_t T = t->T;
  for (int64_t i = 0; i < t->k.batch; i++)
    memcpy(t->ids + i * T, t->data.train_ids + b->captions[i] * (size_t)T, (size_t)T * sizeof *t->ids);
  vkp_status st = vkp_clip_inputs_set(t->clip, sg->g, &sg->in, b->pixels, t->probe ? NULL : t->ids, NULL);
  if (!st && t->probe) st = vkp_graph_set_input(sg->g, sg->labels, b->labels, vkp_tensor_nbytes(sg->labels));
  return st;
}

// The training graph: forward, loss, backward of the trainable parameters, the optimizer.
static vkp_status build_graph(vkp_clip_trainer *t, vkp_error *err) {
  vkp_clip *c = t->clip;
  c->model->training = true;
  VKP_TRY(forward_loss(t, &t->tg, err));
  vkp_status st = VKP_OK;   // every forward output before the optimizer's nodes:
  vkp_graph_output(t->tg.g, t->tg.loss);
  vkp_graph_output(t->tg.g, t->tg.logits);
  vkp_graph_output(t->tg.g, t->tg.image_embeds);
  if (t->tg.text_embeds) vkp_graph_output(t->tg.g, t->tg.text_embeds);
  vkp_tensor **p = calloc((size_t)t->o.nt, sizeof *p), **grads = calloc((size_t)t->o.nt, sizeof *grads);
  if (!st && (!p || !grads)) st = VKP_ERR_OOM;
  for (int i = 0; i < t->o.nt && !st; i++) p[i] = vkp_param_tensor(c->model, t->o.tp[i]);
  if (!st) st = vkp_graph_backward(t->tg.g, t->tg.loss, p, t->o.nt, grads);
  if (!st) t->gnorm = vkp_optimizer_append(t->o.opt, t->tg.g, grads);
  free(p), free(grads);
  if (!st) st = vkp_graph_compile(t->tg.g);
  if (st) return vkp_error_set(err, st, "building the training graph: %s", vkp_graph_status(t->tg.g) ? vkp_graph_error(t->tg.g) : vkp_ctx_error(t->ctx));
  return VKP_OK;
}

// Host buffers of a micro-batch and the record of it.
static vkp_status alloc_host(vkp_clip_trainer *t, vkp_error *err) {
  const vkp_clip *c = t->clip;
  int64_t K = t->probe ? t->data.n_classes : t->k.batch, P = c->cfg.projection_dim, S = c->cfg.vision.image_size, C = c->cfg.vision.num_channels;
  t->ids = malloc((size_t)(t->k.batch * t->T) * sizeof *t->ids);
  t->logits_host = malloc((size_t)(t->k.batch * K) * sizeof *t->logits_host);
  t->rec_pixels = malloc((size_t)(t->k.batch * C * S * S) * sizeof *t->rec_pixels);
  t->rec_ie = malloc((size_t)(t->k.batch * P) * sizeof *t->rec_ie);
  t->rec_te = malloc((size_t)(t->k.batch * P) * sizeof *t->rec_te);
  t->rec_ids = malloc((size_t)(t->k.batch * t->T) * sizeof *t->rec_ids);
  t->rec_labels = malloc((size_t)t->k.batch * sizeof *t->rec_labels);
  if (!t->ids || !t->logits_host || !t->rec_pixels || !t->rec_ie || !t->rec_te || !t->rec_ids || !t->rec_labels)
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  t->rec = (vkp_clip_batch_record){.n = (int)t->k.batch, .seq_len = t->T, .channels = (int)C, .image_size = (int)S,
                                   .dim = (int)P, .pixels = t->rec_pixels, .input_ids = t->rec_ids,
                                   .labels = t->probe ? t->rec_labels : NULL, .image_embeds = t->rec_ie,
                                   .text_embeds = t->probe ? NULL : t->rec_te, .logits = t->logits_host};
  return VKP_OK;
}

// ---- gradient-score masks ----------------------------------------------------------------
// Masked adapters with mask "gradient" keep the entries with the largest |dL/dW| summed over a few
// calibration batches of the training data (the base model's gradients, before any update).
#define VKP_MASK_CALIBRATION_BATCHES 4

static vkp_status calibrate_adapter(vkp_clip_trainer *t, vkp_adapter *a, vkp_error *err) {
  vkp_model *m = t->clip->model;
  int ns = 0;
  while (vkp_adapter_slot_module(a, ns)) ns++;
  step_graph sg = {0};
  vkp_loader *ld = NULL;
  vkp_tensor **w = calloc((size_t)ns, sizeof *w), **grads = calloc((size_t)ns, sizeof *grads);
  float **scores = calloc((size_t)ns, sizeof *scores), *tmp = NULL;
  vkp_status st = w && grads && scores ? forward_loss(t, &sg, err) : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (int i = 0; i < ns && !st; i++) w[i] = vkp_param_tensor(m, vkp_adapter_slot_module(a, i)->weight);
  bool built = !st;
  if (!st) st = vkp_graph_backward(sg.g, sg.loss, w, ns, grads);
  for (int i = 0; i < ns && !st; i++) vkp_graph_output(sg.g, grads[i]);
  if (!st) st = vkp_graph_compile(sg.g);
  if (st && built) vkp_error_set(err, st, "mask calibration: %s", vkp_graph_error(sg.g));   // else forward_loss's message
  if (!st) {
    vkp_loader_opts lo = {.batch_size = (int)t->k.batch, .shuffle = true, .drop_last = true, .seed = t->k.seed + 0x5eedu,
                          .indices = t->data.train_idx, .n_indices = t->data.n_train};
    st = vkp_pairs_loader_new(t->data.train, &t->data.eval_tf, &lo, &ld, err);
  }
  for (int k = 0; k < VKP_MASK_CALIBRATION_BATCHES && !st; k++) {
    vkp_batch b;
    st = vkp_loader_next(ld, &b, err);
    if (st) break;   // the loader's message is set
    if ((st = upload_batch(t, &sg, &b)) == VKP_OK) st = vkp_graph_run(sg.g);
    for (int i = 0; i < ns && !st; i++) {
      size_t n = (size_t)vkp_tensor_numel(w[i]);
      if (!scores[i] && !(scores[i] = calloc(n, sizeof(float)))) st = VKP_ERR_OOM;
      free(tmp);
      if (!st && !(tmp = malloc(n * sizeof *tmp))) st = VKP_ERR_OOM;
      if (!st) st = vkp_graph_read(sg.g, grads[i], tmp, n * sizeof *tmp);
      for (size_t j = 0; j < n && !st; j++) scores[i][j] += fabsf(tmp[j]);
    }
    if (st) vkp_error_set(err, st, "mask calibration: %s", vkp_ctx_error(t->ctx));
  }
  for (int i = 0; i < ns && !st; i++)
    if ((st = vkp_masked_set_scores(m, a, i, scores[i]))) vkp_error_set(err, st, "mask calibration: %s", vkp_ctx_error(t->ctx));
  for (int i = 0; i < ns && scores; i++) free(scores[i]);
  free(scores), free(tmp), free(w), free(grads);
  vkp_loader_free(ld);
  vkp_graph_free(sg.g);
  return st;
}

static vkp_status calibrate_masks(vkp_clip_trainer *t, vkp_error *err) {
  vkp_model *m = t->clip->model;
  for (int i = 0; i < vkp_peft_count(m); i++) {
    vkp_adapter *a = vkp_peft_get(m, i);
    const vkp_peft_config *pc = vkp_adapter_config(a);
    if (pc->method == VKP_PEFT_MASKED && pc->mask == VKP_MASK_GRADIENT) VKP_TRY(calibrate_adapter(t, a, err));
  }
  return VKP_OK;
}

// ---- checkpoints ----------------------------------------------------------------------------

// Preprocessing and the model config beside a final adapter.
static vkp_status save_final_extras(void *user, const char *dir, vkp_error *err) {
  vkp_clip_trainer *t = user;
  char path[VKP_CHECKPOINT_PATH_MAX + 64];
  VKP_TRY(vkp_clip_preprocess_save(&t->data.eval_tf, t->clip->cfg.vision.num_channels, dir, err));
  snprintf(path, sizeof path, "%s/config.json", dir);
  return vkp_clip_config_save(&t->clip->cfg, path, err);
}

// Every adapter into base/adapter (or adapter_K); `final` adds the preprocessing and the config.
static vkp_status save_adapters(vkp_clip_trainer *t, const char *base, bool final, vkp_error *err) {
  return vkp_trainer_save_adapters(t->clip->model, base, final ? save_final_extras : NULL, t, err);
}

static vkp_status save_params(void *user, const char *dir, vkp_error *err) { return save_adapters(user, dir, false, err); }

static vkp_status save_checkpoint(void *user, vkp_error *err) {
  vkp_clip_trainer *t = user;
  vkp_train_state s = {.step = t->step, .micro_step = t->micro, .best_metric = t->best_step >= 0 ? t->best : -1,
                       .best_step = t->best_step};
  vkp_loader_tell(t->loader, &s.loader_epoch, &s.loader_step);
  vkp_trainer_ckpt_opts o = {.run_dir = t->dir, .keep_last = (int)t->k.keep_last, .ctx = t->ctx, .opt = t->o.opt,
                             .model = t->clip->model, .task = "clip", .save_params = save_params, .user = t};
  vkp_status st = vkp_trainer_checkpoint_save(&o, &s, err);
  if (!st) vkp_metrics_sync(t->mw, NULL);
  return st;
}

// ---- trainer --------------------------------------------------------------------------------

static vkp_status setup(vkp_clip_trainer *t, const cJSON *cfg_in, const char *resume_dir, vkp_error *err) {
  VKP_TRY(vkp_trainer_open_run(cfg_in, resume_dir, vkp_clip_train_config, t->quiet, &t->run, err));
  t->cfg = t->run.cfg, t->dir = t->run.dir, t->ck = t->run.ck;
  VKP_TRY(read_train_config(t, err));
  t->random_base = !vkp_config_string(t->cfg, "model.pretrained");
  VKP_TRY(vkp_clip_train_model(t->ctx, t->cfg, &t->clip, &t->tok, &t->T, err));
  const vkp_clip_vision_config *vc = &t->clip->cfg.vision;
  {
    // CoOp's learned contexts take text positions: captions get the rest.
    int reserve = 0, positions = t->clip->cfg.text.max_position_embeddings;
    VKP_TRY(vkp_clip_coop_reserve(vkp_config_get(t->cfg, "peft"), t->tok, &reserve, err));
    if (reserve && t->T + reserve > positions) {
      if (vkp_config_number(t->cfg, "data.max_length") > 0)
        return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.max_length' (%d) + %d CoOp context tokens exceed the "
                             "text tower's %d positions", t->T, reserve, positions);
      t->T = positions - reserve;
      if (t->T < 2)
        return vkp_error_set(err, VKP_ERR_INVALID, "config: peft: %d CoOp context tokens leave no room for text in %d positions",
                             reserve, positions);
    }
  }
  VKP_TRY(vkp_clip_data_load(t->cfg, t->tok, vc->image_size, vc->num_channels, t->T, t->probe, &t->data, err));
  if ((size_t)t->k.batch > t->data.n_train && !t->probe)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.batch_size' (%ld) is larger than the training set (%zu pairs)",
                         t->k.batch, t->data.n_train);
  VKP_TRY(vkp_clip_embedder_new(t->clip, (int)t->k.eval_batch, &t->emb, err));
  vkp_clip_embedder_set_transform(t->emb, &t->data.eval_tf);
  if (t->probe) VKP_TRY(add_head(t, err));
  VKP_TRY(alloc_host(t, err));
  if (resume_dir) VKP_TRY(vkp_trainer_load_adapters(t->clip->model, t->ck->dir, cJSON_GetArraySize(vkp_config_get(t->cfg, "peft")), err));
  else VKP_TRY(vkp_clip_train_attach(t->clip, vkp_config_get(t->cfg, "peft"), t->tok, t->k.seed, t->probe ? "classifier" : NULL, err));
  if (!resume_dir) VKP_TRY(calibrate_masks(t, err));
  VKP_TRY(vkp_trainer_memory_options(t->clip->model, t->cfg, err));   // after the masks' base gradients
  VKP_TRY(vkp_dir_create(t->dir, err));
  int64_t le = 0, ls = 0;
  if (resume_dir) {
    t->step = t->ck->state.step;
    t->micro = t->ck->state.micro_step;
    le = t->ck->state.loader_epoch, ls = t->ck->state.loader_step;
    t->best = t->ck->state.best_metric;
    t->best_step = t->ck->state.best_step;
    t->resumed = true;
  }
  vkp_loader_opts lo = {.batch_size = (int)t->k.batch, .shuffle = true, .drop_last = true, .seed = t->k.seed,
                        .n_workers = (int)vkp_config_number(t->cfg, "data.workers"), .indices = t->data.train_idx,
                        .n_indices = t->data.n_train, .start_epoch = le, .start_step = ls,
                        .first_caption = vkp_config_bool(t->cfg, "data.first_caption")};
  VKP_TRY(vkp_pairs_loader_new(t->data.train, &t->data.train_tf, &lo, &t->loader, err));
  VKP_TRY(make_optimizer(t, err));
  if (resume_dir) VKP_TRY(vkp_checkpoint_load_optimizer(t->ck, t->ctx, t->o.opt, err));
  char path[1500];
  VKP_TRY(vkp_trainer_write_config(&t->run, err));
  VKP_TRY(build_graph(t, err));
  snprintf(path, sizeof path, "%s/metrics.jsonl", t->dir);
  return vkp_metrics_open(path, resume_dir ? t->step : VKP_METRICS_NEW_RUN, &t->mw, err);
}

vkp_status vkp_clip_trainer_new(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                                vkp_clip_trainer **out, vkp_error *err) {
  *out = NULL;
  vkp_clip_trainer *t = calloc(1, sizeof *t);
  if (!t) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  t->ctx = ctx;
  t->quiet = quiet;
  t->best = -1, t->best_step = -1;
  t->val = (vkp_clip_val_result){.loss = NAN, .i2t_r1 = NAN, .i2t_r5 = NAN, .t2i_r1 = NAN, .t2i_r5 = NAN, .accuracy = NAN};
  vkp_status st = setup(t, cfg, resume_dir, err);
  if (st) {
    vkp_clip_trainer_free(t);
    return st;
  }
  *out = t;
  return VKP_OK;
}

void vkp_clip_trainer_free(vkp_clip_trainer *t) {
  if (!t) return;
  if (t->mw) vkp_metrics_close(t->mw, NULL);
  vkp_clip_val_result_clear(&t->val);
  vkp_clip_embedder_free(t->emb);
  vkp_loader_free(t->loader);
  vkp_graph_free(t->tg.g);
  vkp_trainer_optim_free(&t->o);
  vkp_clip_free(t->clip);
  vkp_clip_tokenizer_free(t->tok);
  vkp_clip_data_free(&t->data);
  vkp_trainer_run_clear(&t->run);
  free(t->ids), free(t->logits_host);
  free(t->rec_pixels), free(t->rec_ie), free(t->rec_te), free(t->rec_ids), free(t->rec_labels);
  free(t);
}

vkp_clip *vkp_clip_trainer_model(const vkp_clip_trainer *t) { return t->clip; }
const vkp_clip_data *vkp_clip_trainer_data(const vkp_clip_trainer *t) { return &t->data; }
void vkp_clip_trainer_record(vkp_clip_trainer *t, bool on) { t->recording = on; }
const vkp_clip_batch_record *vkp_clip_trainer_last_batch(const vkp_clip_trainer *t) { return &t->rec; }

// ---- a step ---------------------------------------------------------------------------------

// In-batch recall@1 of logits_per_image (B, B), both directions; a hit when the retrieved
// caption's tokens equal the query's (duplicates in a batch are not misses).
static double batch_r1(const float *L, const int32_t *ids, int64_t B, int T) {
  int64_t hits = 0;
  for (int64_t i = 0; i < B; i++) {
    int64_t bi = 0, bt = 0;
    for (int64_t j = 1; j < B; j++) {
      if (L[i * B + j] > L[i * B + bi]) bi = j;   // image i -> best text
      if (L[j * B + i] > L[bt * B + i]) bt = j;   // text i -> best image
    }
    hits += !memcmp(ids + bi * T, ids + i * T, (size_t)T * sizeof *ids);
    hits += !memcmp(ids + bt * T, ids + i * T, (size_t)T * sizeof *ids);
  }
  return (double)hits / (double)(2 * B);
}

static double batch_accuracy(const float *L, const int32_t *labels, int64_t B, int64_t K) {
  int64_t hits = 0;
  for (int64_t i = 0; i < B; i++) {
    int64_t arg = 0;
    for (int64_t k = 1; k < K; k++)
      if (L[i * K + k] > L[i * K + arg]) arg = k;
    hits += arg == labels[i];
  }
  return (double)hits / (double)B;
}

static vkp_status micro_step(vkp_clip_trainer *t, bool apply, float lr_out[1], double *loss, double *r1, vkp_error *err) {
  vkp_batch b;
  VKP_TRY(vkp_loader_next(t->loader, &b, err));
  const int64_t B = t->k.batch, T = t->T, K = t->tg.logits->shape[1];
  vkp_clip *c = t->clip;
  if (t->recording && c->logit_scale && vkp_param_read_f32(c->model, c->logit_scale->weight, &t->rec.logit_scale))
    return ctx_fail(t, VKP_ERR_IO, "reading logit_scale", err);
  vkp_step_scalars s = {.loss_scale = 1.0f / (float)t->k.accum, .seed = (uint32_t)(t->k.seed * 1000003u + (uint64_t)t->micro)};
  vkp_optimizer_prepare_step(t->o.opt, vkp_lr_at(&t->o.sched, vkp_optimizer_steps(t->o.opt)), apply, &s);
  lr_out[0] = s.lr;
  vkp_status st = vkp_graph_set_scalars(t->tg.g, &s);
  if (!st) st = upload_batch(t, &t->tg, &b);
  if (!st) st = vkp_graph_run(t->tg.g);
  float l = 0;
  if (!st) st = vkp_graph_read(t->tg.g, t->tg.loss, &l, sizeof l);
  if (!st) st = vkp_graph_read(t->tg.g, t->tg.logits, t->logits_host, (uint64_t)(B * K) * sizeof *t->logits_host);
  if (!st && t->recording) {
    st = vkp_graph_read(t->tg.g, t->tg.image_embeds, t->rec_ie, vkp_tensor_nbytes(t->tg.image_embeds));
    if (!st && t->tg.text_embeds) st = vkp_graph_read(t->tg.g, t->tg.text_embeds, t->rec_te, vkp_tensor_nbytes(t->tg.text_embeds));
    memcpy(t->rec_pixels, b.pixels, vkp_tensor_nbytes(t->tg.in.pixel_values));
    memcpy(t->rec_ids, t->ids, (size_t)(B * T) * sizeof *t->ids);
    memcpy(t->rec_labels, b.labels, (size_t)B * sizeof *t->rec_labels);
    t->rec.loss = l;
  }
  if (st) return vkp_error_set(err, st, "training step %lld: %s", (long long)t->step, vkp_ctx_error(t->ctx));
  if (!isfinite(l))
    return vkp_error_set(err, VKP_ERR_INVALID, "training diverged at step %lld (loss %g): lower train.lr", (long long)t->step, l);
  t->micro++;
  *loss = l;
  *r1 = t->probe ? batch_accuracy(t->logits_host, b.labels, B, K) : batch_r1(t->logits_host, t->ids, B, (int)T);
  return VKP_OK;
}

vkp_status vkp_clip_trainer_step(vkp_clip_trainer *t, vkp_clip_step_info *info, vkp_error *err) {
  double loss = 0, r1 = 0;
  float lr = 0;
  for (long k = 0; k < t->k.accum; k++) {
    double l = 0, r = 0;
    VKP_TRY(micro_step(t, k + 1 == t->k.accum, &lr, &l, &r, err));
    loss += l / (double)t->k.accum, r1 += r / (double)t->k.accum;
  }
  t->step++;
  vkp_clip *c = t->clip;
  float gn = 0, scale = NAN;
  if (vkp_graph_read(t->tg.g, t->gnorm, &gn, sizeof gn)) return ctx_fail(t, VKP_ERR_IO, "reading the gradient norm", err);
  if (c->logit_scale) {   // CLIP's clamp after every update: logit_scale in [0, ln 100]
    if ((c->logit_scale->weight->trainable && vkp_clip_clamp_logit_scale(c, (float)t->scale_max)) ||
        vkp_param_read_f32(c->model, c->logit_scale->weight, &scale))
      return ctx_fail(t, VKP_ERR_IO, "clamping logit_scale", err);
  }
  *info = (vkp_clip_step_info){.step = t->step, .loss = loss, .lr = lr, .grad_norm = gn, .logit_scale = scale, .train_r1 = r1};
  t->last = *info;
  return VKP_OK;
}

// ---- evaluation -----------------------------------------------------------------------------

static vkp_status evaluate_val(void *user, vkp_error *err) {
  vkp_clip_trainer *t = user;
  const vkp_clip_data *d = &t->data;
  if (d->n_val == 0) return VKP_OK;
  size_t n = t->k.val_limit > 0 && (size_t)t->k.val_limit < d->n_val ? (size_t)t->k.val_limit : d->n_val;
  vkp_clip_val_result r;
  VKP_TRY(vkp_clip_evaluate(t->emb, t->tok, t->probe, d->val ? d->val : d->train, (const char *const *)d->val_texts,
                            d->val_idx, n, (int)t->k.batch, &r, err));
  vkp_clip_val_result_clear(&t->val);
  t->val = r;
  t->val_n = n;
  vkp_metric m[6];
  int k = 0;
  m[k++] = (vkp_metric){"val_loss", r.loss};
  if (t->probe) m[k++] = (vkp_metric){"val_accuracy", r.accuracy};
  else {
    m[k++] = (vkp_metric){"val_i2t_r1", r.i2t_r1}, m[k++] = (vkp_metric){"val_i2t_r5", r.i2t_r5};
    m[k++] = (vkp_metric){"val_t2i_r1", r.t2i_r1}, m[k++] = (vkp_metric){"val_t2i_r5", r.t2i_r5};
  }
  VKP_TRY(vkp_metrics_write(t->mw, t->step, m, k, err));
  double metric = t->probe ? r.accuracy : -r.loss;   // higher is better
  if (t->step > 0 && (t->best_step < 0 || metric > t->best)) t->best = metric, t->best_step = t->step;   // step 0: no checkpoint
  if (t->probe)
    vkp_progress_print(t->loop.bar, "step %lld: validation accuracy %.2f%%, loss %.4f (%zu images)", (long long)t->step,
                       100 * r.accuracy, r.loss, n);
  else
    vkp_progress_print(t->loop.bar, "step %lld: validation loss %.4f, R@1 image->text %.1f%% text->image %.1f%% (%zu pairs)",
                       (long long)t->step, r.loss, 100 * r.i2t_r1, 100 * r.t2i_r1, n);
  return VKP_OK;
}

// ---- the step loop's callbacks (vkp_trainer_loop) --------------------------------------------

static vkp_status loop_step(void *user, vkp_trainer_step_out *o, vkp_error *err) {
  vkp_clip_trainer *t = user;
  vkp_clip_step_info info;
  VKP_TRY(vkp_clip_trainer_step(t, &info, err));
  o->loss = info.loss, o->window[0] = info.loss, o->window[1] = info.train_r1;
  snprintf(o->extra, sizeof o->extra, t->probe ? "acc %.1f%%" : "r@1 %.1f%%", 100 * info.train_r1);
  return VKP_OK;
}

static int log_fields(void *user, const vkp_trainer_window *w, vkp_metric *m) {
  vkp_clip_trainer *t = user;
  size_t epoch_samples = vkp_loader_epoch_samples(t->loader);
  const vkp_metric f[] = {{"epoch", (double)t->micro * (double)t->k.batch / (double)(epoch_samples ? epoch_samples : 1)},
                          {"loss", w->mean[0]},
                          {"lr", t->last.lr},
                          {"logit_scale", t->last.logit_scale},
                          {"grad_norm", t->last.grad_norm},
                          {t->probe ? "train_accuracy" : "train_r1", w->mean[1]},
                          {"images_per_s", w->images_per_s},
                          {"device_mb", (double)vkp_ctx_memory_in_use(t->ctx) / 1048576.0},
                          {"seconds", w->seconds}};
  memcpy(m, f, sizeof f);
  return (int)(sizeof f / sizeof *f);
}

// The final outputs of a run that reached its end.
static vkp_status finish(vkp_clip_trainer *t, vkp_clip_train_summary *s, vkp_error *err) {
  VKP_TRY(save_adapters(t, t->dir, true, err));
  char path[1500];
  if (t->random_base || t->full) {   // the base the adapter applies to (or the trained model)
    snprintf(path, sizeof path, "%s/model", t->dir);
    VKP_TRY(vkp_clip_save(t->clip, path, err));
    VKP_TRY(vkp_clip_preprocess_save(&t->data.eval_tf, t->clip->cfg.vision.num_channels, path, err));
  }
  const vkp_clip_data *d = &t->data;
  if (d->test) {
    vkp_clip_val_result r;
    VKP_TRY(vkp_clip_evaluate(t->emb, t->tok, t->probe, d->test, (const char *const *)d->test_texts, NULL, 0, (int)t->k.batch,
                              &r, err));
    vkp_clip_val_result_clear(&r);
    s->test_loss = r.loss, s->test_accuracy = r.accuracy, s->test_i2t_r1 = r.i2t_r1, s->test_t2i_r1 = r.t2i_r1;
    vkp_metric m[4] = {{"test_loss", r.loss}, {t->probe ? "test_accuracy" : "test_i2t_r1", t->probe ? r.accuracy : r.i2t_r1},
                       {"test_t2i_r1", r.t2i_r1}};
    VKP_TRY(vkp_metrics_write(t->mw, t->step, m, t->probe ? 2 : 3, err));
  }
  return VKP_OK;
}

// The retrieval gallery of the last validation (vkp_clip_eval.h): a few held-out captions with
// their top-5 images, the right one framed. Returns how many PNGs it wrote into paths[].
static vkp_status write_gallery(vkp_clip_trainer *t, char paths[][1100], const char **caps, int *n, vkp_error *err) {
  const vkp_clip_data *d = &t->data;
  *n = 0;
  if (t->probe || !t->val.text_embeds || t->val_n < 2) return VKP_OK;
  size_t m = t->val_n;
  const char **texts = malloc(m * sizeof *texts);
  int64_t *text_image = malloc(m * sizeof *text_image);
  if (!texts || !text_image) {
    free(texts), free(text_image);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  for (size_t i = 0; i < m; i++) texts[i] = d->val_texts[d->val_idx[i]], text_image[i] = (int64_t)i;
  vkp_clip_gallery g = {.images = (d->val ? d->val : d->train)->images, .image_index = d->val_idx,
                        .image_embeds = t->val.image_embeds, .n_images = (int64_t)m, .text_embeds = t->val.text_embeds,
                        .texts = texts, .text_image = text_image, .n_texts = (int64_t)m,
                        .dim = vkp_clip_embed_dim(t->clip)};
  snprintf(paths[0], 1100, "%s/retrieval_gallery.png", t->dir);
  vkp_status st = vkp_clip_gallery_png(&g, paths[0], err);
  free(texts), free(text_image);
  if (!st) caps[0] = "Held-out captions and their top-5 images (the right image framed)", *n = 1;
  return st;
}

vkp_status vkp_clip_trainer_run(vkp_clip_trainer *t, vkp_clip_train_summary *summary, vkp_error *err) {
  vkp_clip_train_summary *s = summary;
  *s = (vkp_clip_train_summary){.final_loss = NAN, .val_loss = NAN, .val_i2t_r1 = NAN, .val_t2i_r1 = NAN,
                                .val_accuracy = NAN, .test_loss = NAN, .test_i2t_r1 = NAN, .test_t2i_r1 = NAN,
                                .test_accuracy = NAN, .best_metric = -1, .logit_scale = NAN};
  vkp_peft_report rep = vkp_peft_get_report(t->clip->model);
  if (!t->quiet) {
    printf("vkpeft train: %s, CLIP %s, %zu training pairs%s; %lld trainable of %lld parameters (%.2f%%); %lld steps%s\n",
           vkp_ctx_info(t->ctx)->name, t->probe ? "linear probe" : "contrastive", t->data.n_train,
           t->data.n_val ? "" : " (no validation)", (long long)rep.trainable_params, (long long)rep.total_params,
           100.0 * (double)rep.trainable_params / (double)rep.total_params, (long long)t->o.total_steps,
           t->resumed ? " (resumed)" : "");
  }
  t->loop = (vkp_trainer_loop){.ops = {.user = t, .step = loop_step, .log_fields = log_fields, .evaluate = evaluate_val,
                                       .checkpoint = save_checkpoint},
                               .k = &t->k, .step = &t->step, .total_steps = t->o.total_steps,
                               .eval_at_start = vkp_config_bool(t->cfg, "train.eval_at_start"), .quiet = t->quiet, .mw = t->mw};
  vkp_status st = vkp_trainer_loop_run(&t->loop, err);
  double secs, ips;
  vkp_trainer_loop_rate(&t->loop, &secs, &ips);
  bool finished = !st && t->step >= t->o.total_steps;
  if (finished) st = finish(t, s, err);
  s->steps = t->step;
  s->seconds = secs;
  s->images_per_s = ips;
  s->final_loss = t->last.loss;
  s->logit_scale = t->last.logit_scale;
  s->val_loss = t->val.loss, s->val_accuracy = t->val.accuracy, s->val_i2t_r1 = t->val.i2t_r1, s->val_t2i_r1 = t->val.t2i_r1;
  s->best_metric = t->best_step >= 0 ? t->best : -1;
  s->trainable_params = rep.trainable_params;
  s->total_params = rep.total_params;
  s->peak_device_bytes = vkp_ctx_memory_peak(t->ctx);
  s->arena_bytes = t->tg.g ? vkp_graph_get_stats(t->tg.g).arena_bytes : 0;
  snprintf(s->run_dir, sizeof s->run_dir, "%s", t->dir);
  vkp_status cst = vkp_metrics_close(t->mw, st ? NULL : err);
  t->mw = NULL;
  if (!st) st = cst;
  if (finished && !st) {
    char gallery[1][1100];
    const char *caps[1], *paths[1] = {gallery[0]};
    int ng = 0;
    st = write_gallery(t, gallery, caps, &ng, err);
    if (!st) st = vkp_clip_train_report(t->dir, t->cfg, s, paths, caps, ng, err);
  }
  return st;
}

vkp_status vkp_clip_train(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                          vkp_clip_train_summary *summary, vkp_error *err) {
  vkp_clip_trainer *t = NULL;
  memset(summary, 0, sizeof *summary);
  VKP_TRY(vkp_clip_trainer_new(ctx, cfg, resume_dir, quiet, &t, err));
  vkp_status st = vkp_clip_trainer_run(t, summary, err);
  vkp_clip_trainer_free(t);
  return st;
}
