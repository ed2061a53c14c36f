// test_classify_train.c — the workbench end to end on a small Fashion-MNIST subset: the loss
// falls, checkpoints/adapter/plots/report are written and valid, and a run stopped after N steps
// and resumed logs exactly the same metrics for the following steps as an uninterrupted run.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_checkpoint.h"
#include "vkp_classify.h"
#include "vkp_config.h"
#include "vkp_metrics.h"
#include "vkp_peft.h"
#include "vkp_png.h"
#include "vkp_test.h"

static char tmp_root[256];

static cJSON *small_config(const char *out, const char *const *extra, int n_extra) {
  const char *sets[32] = {
      "model.init.image_size=28", "model.init.patch_size=7", "model.init.hidden_size=32",
      "model.init.num_hidden_layers=2", "model.init.num_attention_heads=2", "model.init.intermediate_size=64",
      "data.train=fashion-mnist", "data.test=fashion-mnist:test", "data.limit_train=1200", "data.limit_test=300",
      "data.val_fraction=0.1", "data.workers=2", "train.batch_size=32", "train.max_steps=40", "train.lr=0.003",
      "train.log_every=1", "train.eval_every=20", "train.checkpoint_every=10", "train.keep_last=2",
      "train.warmup_steps=4",
  };
  int n = 20;
  char outset[512];
  snprintf(outset, sizeof outset, "output_dir=%s", out);
  sets[n++] = outset;
  for (int i = 0; i < n_extra; i++) sets[n++] = extra[i];
  cJSON *cfg = NULL;
  vkp_error err = {0};
  if (vkp_classify_config(NULL, sets, n, &cfg, &err)) fail_msg("config: %s", err.msg);
  return cfg;
}

static void assert_png(const char *dir, const char *rel) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  vkp_image *img = NULL;
  vkp_error err = {0};
  if (vkp_png_read(path, &img, NULL, NULL, &err)) fail_msg("%s: %s", rel, err.msg);
  assert_true(img->width >= 200 && img->height >= 100);
  vkp_image_free(img);
}

static void test_train_and_outputs(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400];
  snprintf(dir, sizeof dir, "%s/full", tmp_root);
  const char *full_ft[] = {"peft=[{\"method\":\"full\"}]", "train.max_steps=120"};
  cJSON *cfg = small_config(dir, full_ft, 2);
  vkp_train_summary s;
  vkp_error err = {0};
  if (vkp_classify_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  vkp_metrics_log *log = vkp_test_metrics_read(dir);
  const vkp_metric_series *loss = vkp_metrics_find(log, "loss");
  assert_non_null(loss);
  assert_int_equal(loss->n, 120);
  double first = (loss->value[0] + loss->value[1] + loss->value[2]) / 3;
  double last = (loss->value[117] + loss->value[118] + loss->value[119]) / 3;
  printf("  loss %.3f -> %.3f, test accuracy %.1f%%\n", first, last, 100 * s.test_acc);
  assert_true(last < 0.8 * first);          // learning happens
  assert_true(s.test_acc > 0.45);           // 10 classes: chance is 0.10
  vkp_metrics_log_free(log);
  const char *files[] = {"config.json", "model/config.json", "model/model.safetensors", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                         "adapter/preprocessor_config.json", "report.html", "eval.json",
                         "checkpoints/step-00000120/optimizer.safetensors",
                         "checkpoints/step-00000110/trainer_state.json"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    if (access(p, R_OK)) fail_msg("missing %s", files[i]);
  }
  // keep_last = 2: the two newest checkpoints stay, and the best one; the others are gone.
  char p[700];
  snprintf(p, sizeof p, "%s/checkpoints/step-00000120", dir);
  vkp_checkpoint ck;
  if (vkp_checkpoint_read(p, &ck, &err)) fail_msg("%s", err.msg);
  assert_int_equal(ck.state.step, 120);
  assert_true(ck.state.best_step >= 20 && ck.state.best_step <= 120 && ck.state.best_step % 20 == 0);
  for (int step = 10; step <= 120; step += 10) {
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d", dir, step);
    bool kept = step >= 110 || step == ck.state.best_step;
    if ((access(p, F_OK) == 0) != kept) fail_msg("checkpoint step %d: %s", step, kept ? "missing" : "not removed");
  }
  vkp_checkpoint_clear(&ck);
  assert_png(dir, "plots/loss.png");
  assert_png(dir, "plots/accuracy.png");
  assert_png(dir, "plots/lr.png");
  assert_png(dir, "confusion_matrix.png");
  assert_png(dir, "misclassified.png");
  snprintf(p, sizeof p, "%s/report.html", dir);
  FILE *f = fopen(p, "r");
  char *html = calloc(1, 1 << 22);
  size_t n = fread(html, 1, (1 << 22) - 1, f);
  fclose(f);
  assert_true(n > 1000);
  assert_non_null(strstr(html, "<html"));
  assert_non_null(strstr(html, "data:image/png;base64,"));
  assert_non_null(strstr(html, "</html>"));
  free(html);
}

static void test_resume_is_exact(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char full[400], dir[400];
  snprintf(full, sizeof full, "%s/lora", tmp_root);
  snprintf(dir, sizeof dir, "%s/resumed", tmp_root);
  // Validation every 15 steps of 40: at 15, 30 and at the final step (the shared step loop's cadence).
  const char *every15[] = {"train.eval_every=15"};
  cJSON *cfg = small_config(full, every15, 1);   // LoRA (the default adapter), uninterrupted
  vkp_train_summary s;
  vkp_error err = {0};
  if (vkp_classify_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  const char *stop[] = {"train.eval_every=15", "train.stop_after=20"};
  cfg = small_config(dir, stop, 2);
  if (vkp_classify_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  assert_int_equal(s.steps, 20);
  // The "killed" run left junk after its checkpoint: a half-written log line.
  char p[600];
  snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
  FILE *f = fopen(p, "a");
  fputs("{\"step\":21,\"loss\":0.5", f);
  fclose(f);
  // Resume must not see stop_after again: it is in config.json, so clear it there.
  snprintf(p, sizeof p, "%s/config.json", dir);
  cJSON *saved = NULL;
  if (vkp_config_resolve(vkp_classify_defaults, p, (const char *const[]){"train.stop_after=0"}, 1, &saved, &err)) fail_msg("%s", err.msg);
  char *text = cJSON_Print(saved);
  f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
  free(text);
  cJSON_Delete(saved);
  if (vkp_classify_train(ctx, NULL, dir, true, &s, &err)) fail_msg("resume: %s", err.msg);
  assert_int_equal(s.steps, 40);
  vkp_metrics_log *a = vkp_test_metrics_read(full), *b = vkp_test_metrics_read(dir);
  const vkp_metric_series *la = vkp_metrics_find(a, "loss"), *lb = vkp_metrics_find(b, "loss");
  assert_int_equal(lb->n, 40);   // steps 1..40 once each: nothing duplicated or torn
  for (int i = 0; i < 40; i++) {
    assert_int_equal((int)lb->step[i], i + 1);
    if (fabs(la->value[i] - lb->value[i]) > 1e-6 * fabs(la->value[i]))
      fail_msg("step %d: loss %.9g uninterrupted, %.9g resumed", i + 1, la->value[i], lb->value[i]);
  }
  // The same validations, none at the stop: steps 15, 30, 40 in both runs, equal accuracies.
  const vkp_metric_series *va = vkp_metrics_find(a, "val_accuracy"), *vb = vkp_metrics_find(b, "val_accuracy");
  assert_non_null(va);
  assert_non_null(vb);
  assert_int_equal(va->n, 3);
  assert_int_equal(vb->n, 3);
  static const int val_steps[3] = {15, 30, 40};
  for (int i = 0; i < 3; i++) {
    assert_int_equal((int)va->step[i], val_steps[i]);
    assert_int_equal((int)vb->step[i], (int)va->step[i]);
    assert_true(fabs(va->value[i] - vb->value[i]) <= 1e-9);
  }
  vkp_metrics_log_free(a);
  vkp_metrics_log_free(b);
}

static int cmp_int(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

// Gradient-score masks: the chosen entries are exactly the top-k scores; the trainer's calibration
// runs and the masked model learns.
static void test_gradient_mask(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit_config c;
  vkp_vit_config_default(&c);
  c.image_size = 16, c.patch_size = 8, c.hidden_size = 16, c.num_hidden_layers = 1, c.num_attention_heads = 2;
  c.intermediate_size = 32, c.num_labels = 3, c.num_channels = 1;
  vkp_vit *v;
  VKP_ASSERT_OK(ctx, vkp_vit_new(ctx, &c, 1, &v));
  vkp_peft_config pc;
  vkp_peft_config_init(&pc, VKP_PEFT_MASKED);
  pc.density = 0.1f;
  pc.mask = VKP_MASK_GRADIENT;
  pc.target_modules[0] = strdup("query");
  pc.n_target_modules = 1;
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(v->model, &pc, 3, &a));
  vkp_peft_config_clear(&pc);
  assert_non_null(vkp_adapter_slot_module(a, 0));
  assert_null(vkp_adapter_slot_module(a, 1));
  float scores[256];
  vkp_rng rng = vkp_rng_new(9);
  for (int i = 0; i < 256; i++) scores[i] = (float)vkp_rng_uniform(&rng);
  VKP_ASSERT_OK(ctx, vkp_masked_set_scores(v->model, a, 0, scores));
  // Expected: the 26 (ceil(0.1 * 256)) largest scores, found by selection here.
  int32_t want[26], got[26];
  bool used[256] = {0};
  for (int k = 0; k < 26; k++) {
    int best = -1;
    for (int i = 0; i < 256; i++)
      if (!used[i] && (best < 0 || scores[i] > scores[best])) best = i;
    used[best] = true;
    want[k] = best;
  }
  qsort(want, 26, sizeof *want, cmp_int);
  vkp_param *idx = vkp_model_find_param(v->model, "vit.layers.0.attention.q_proj.sparse_index");
  assert_non_null(idx);
  assert_int_equal(vkp_param_numel(idx), 26);
  VKP_ASSERT_OK(ctx, vkp_buffer_read(idx->buf, 0, got, sizeof got));
  assert_memory_equal(got, want, sizeof want);
  vkp_vit_free(v);
  // End to end: calibration + training on Fashion-MNIST.
  char dir[400];
  snprintf(dir, sizeof dir, "%s/masked", tmp_root);
  const char *extra[] = {"peft=[{\"method\":\"full\"}]", "train.max_steps=60"};
  cJSON *cfg = small_config(dir, extra, 2);
  vkp_train_summary s;
  vkp_error err = {0};
  if (vkp_classify_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  char base[500], set[600];
  snprintf(base, sizeof base, "%s/model", dir);
  snprintf(set, sizeof set, "model.pretrained=%s", base);
  snprintf(dir, sizeof dir, "%s/masked-grad", tmp_root);
  const char *extra2[] = {set, "peft=[{\"method\":\"masked\",\"density\":0.05,\"mask\":\"gradient\",\"target_modules\":[\"query\",\"value\",\"output.dense\"],\"modules_to_save\":[\"classifier\"]}]"};
  const char *extra3[] = {extra2[0], extra2[1], "train.lr=0.02"};
  cfg = small_config(dir, extra3, 3);
  if (vkp_classify_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  vkp_metrics_log *log = vkp_test_metrics_read(dir);
  const vkp_metric_series *loss = vkp_metrics_find(log, "loss");
  double first = (loss->value[0] + loss->value[1]) / 2, last = (loss->value[38] + loss->value[39]) / 2;
  printf("  gradient-mask fine-tuning: loss %.3f -> %.3f\n", first, last);
  assert_true(last < 0.9 * first);
  vkp_metrics_log_free(log);
}

static int setup(void **state) {
  (void)state;
  snprintf(tmp_root, sizeof tmp_root, "/tmp/vkpeft-test-train-XXXXXX");
  return mkdtemp(tmp_root) ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_train_and_outputs), cmocka_unit_test(test_resume_is_exact),
                                     cmocka_unit_test(test_gradient_mask)};
  return cmocka_run_group_tests(tests, setup, vkp_test_teardown);
}
