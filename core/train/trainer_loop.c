// trainer_loop.c — the step loop every trainer shares (vkp_trainer.h): which step logs, evaluates,
// samples, checkpoints and stops; the metrics log window; the progress bar; the run's clock. The
// task's work happens in its callbacks.
#include "vkp_trainer.h"

static bool every(int64_t step, int64_t n) { return n > 0 && step % n == 0; }

static void start_window(vkp_trainer_loop *l) {
  l->t_window = vkp_trainer_now();
  l->window_steps = 0, l->images_window = 0;
  for (int i = 0; i < VKP_TRAINER_WINDOW_MAX; i++) l->window_sum[i] = 0;
}

// The record of the window that ends at the current step, then a new window.
static vkp_status log_window(vkp_trainer_loop *l, vkp_error *err) {
  double dt = vkp_trainer_now() - l->t_window;
  vkp_trainer_window w = {.steps = l->window_steps, .images_per_s = dt > 0 ? (double)l->images_window / dt : 0};
  for (int i = 0; i < VKP_TRAINER_WINDOW_MAX; i++) w.mean[i] = l->window_sum[i] / (double)l->window_steps;
  w.seconds = vkp_trainer_now() - l->t0;
  vkp_metric m[VKP_TRAINER_LOG_MAX];
  int n = l->ops.log_fields(l->ops.user, &w, m);
  VKP_TRY(vkp_metrics_write(l->mw, *l->step, m, n, err));
  start_window(l);
  return VKP_OK;
}

static vkp_status one_step(vkp_trainer_loop *l, vkp_error *err) {
  const vkp_train_keys *k = l->k;
  vkp_trainer_step_out o = {.images = k->batch * k->accum};
  VKP_TRY(l->ops.step(l->ops.user, &o, err));
  const int64_t s = *l->step;
  for (int i = 0; i < VKP_TRAINER_WINDOW_MAX; i++) l->window_sum[i] += o.window[i];
  l->window_steps++, l->images_window += o.images;
  vkp_progress_update(l->bar, s, (s - l->step0) * k->batch * k->accum, o.loss, o.extra[0] ? o.extra : NULL);
  if (s % k->log_every == 0 || s == l->end) VKP_TRY(log_window(l, err));
  if (l->ops.evaluate && (every(s, k->eval_every) || s == l->total_steps)) VKP_TRY(l->ops.evaluate(l->ops.user, err));
  if (l->ops.sample && (every(s, l->sample_every) || s == l->total_steps)) VKP_TRY(l->ops.sample(l->ops.user, err));
  if (every(s, k->ckpt_every) || s == l->end) VKP_TRY(l->ops.checkpoint(l->ops.user, err));
  return VKP_OK;
}

vkp_status vkp_trainer_loop_run(vkp_trainer_loop *l, vkp_error *err) {
  const vkp_train_keys *k = l->k;
  l->end = k->stop_after > 0 && k->stop_after < l->total_steps ? k->stop_after : l->total_steps;
  if (!l->quiet) l->bar = vkp_progress_new_train(l->total_steps, *l->step);
  l->t0 = vkp_trainer_now();
  l->step0 = *l->step;
  start_window(l);
  l->t_window = l->t0;
  vkp_status st = VKP_OK;
  if (l->eval_at_start && *l->step == 0 && l->ops.evaluate) st = l->ops.evaluate(l->ops.user, err);   // the baseline
  while (!st && *l->step < l->end) st = one_step(l, err);
  vkp_progress_free(l->bar);
  l->bar = NULL;
  return st;
}

void vkp_trainer_loop_rate(const vkp_trainer_loop *l, double *seconds, double *images_per_s) {
  double secs = vkp_trainer_now() - l->t0;
  int64_t steps = l->step ? *l->step - l->step0 : 0;
  *seconds = secs;
  *images_per_s = secs > 0 && l->k ? (double)steps * (double)(l->k->batch * l->k->accum) / secs : 0;
}
