// test_clip_train.c — `vkpeft train` with a CLIP config, on a tiny random CLIP and a synthetic
// pair set written here (coloured squares, captions naming the colour, kohya `1_<colour>` folders
// so every image also has a name):
//   - LoRA on both towers learns: the loss falls and in-batch retrieval rises; run outputs exist;
//   - the first step's loss equals a float64 InfoNCE computed here from the embeddings read back,
//     and the loss of vkp_clip_forward on the same batch in a fresh graph;
//   - a run stopped after N steps and resumed ends with bit-identical adapter tensors;
//   - logit_scale stays in [0, ln 100] after every step (full fine-tuning, values forced outside);
//   - the linear probe (frozen towers, a head on image_embeds) learns the names;
//   - bad configs give one-line errors naming the key or file, exit status 2 through the CLI.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_cli_run.h"
#include "vkp_clip_train.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_metrics.h"
#include "vkp_png.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

static char tmp_root[256], pairs_dir[300];

#define N_COLORS 8
#define N_SHADES 4
static const struct {
  const char *name;
  uint8_t rgb[3];
} colors[N_COLORS] = {{"red", {220, 30, 30}},    {"green", {30, 190, 40}},  {"blue", {30, 50, 220}},
                      {"yellow", {235, 220, 30}}, {"purple", {130, 40, 170}}, {"orange", {245, 140, 20}},
                      {"black", {15, 15, 15}},    {"white", {245, 245, 245}}};

// root/1_<colour>/<colour>_<k>.png (16x16, the colour shaded by k with a little texture) and a
// caption file "a <colour> square" beside each.
static void write_pairs(const char *root) {
  vkp_error err = {0};
  for (int c = 0; c < N_COLORS; c++) {
    char dir[400], path[500];
    snprintf(dir, sizeof dir, "%s/1_%s", root, colors[c].name);
    if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
    for (int k = 0; k < N_SHADES; k++) {
      vkp_image *img = NULL;
      if (vkp_image_new(16, 16, 3, &img, &err)) fail_msg("%s", err.msg);
      for (int p = 0; p < 256; p++)
        for (int ch = 0; ch < 3; ch++) {
          int v = colors[c].rgb[ch] + (k - 1) * 8 + ((p * 7 + ch * 3 + k) % 5) * 2;
          img->data[p * 3 + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
      snprintf(path, sizeof path, "%s/%s_%d.png", dir, colors[c].name, k);
      if (vkp_png_write(path, img, NULL, 0, &err)) fail_msg("%s", err.msg);
      vkp_image_free(img);
      char text[64];
      snprintf(text, sizeof text, "a %s square\n", colors[c].name);
      snprintf(path, sizeof path, "%s/%s_%d.txt", dir, colors[c].name, k);
      const void *chunk = text;
      size_t len = strlen(text);
      if (vkp_file_write_atomic(path, &chunk, &len, 1, &err)) fail_msg("%s", err.msg);
    }
  }
}

// A tiny CLIP on the colour pairs: both towers 2 layers of width 32, 16 px images, 8 tokens.
static cJSON *tiny_config(const char *out, const char *const *extra, int n_extra) {
  const char *sets[48] = {
      "model.init.projection_dim=32", "model.init.text_config.hidden_size=32",
      "model.init.text_config.num_hidden_layers=2", "model.init.text_config.num_attention_heads=2",
      "model.init.text_config.intermediate_size=64", "model.init.text_config.max_position_embeddings=8",
      "model.init.vision_config.image_size=16", "model.init.vision_config.patch_size=4",
      "model.init.vision_config.hidden_size=32", "model.init.vision_config.num_hidden_layers=2",
      "model.init.vision_config.num_attention_heads=2", "model.init.vision_config.intermediate_size=64",
      "data.val_fraction=0", "data.workers=1", "train.batch_size=8", "train.max_steps=30", "train.lr=0.01",
      "train.weight_decay=0", "train.warmup_steps=0", "train.warmup_ratio=0", "train.log_every=1",
      "peft=[{\"method\":\"lora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q_proj\",\"v_proj\",\"fc1\",\"fc2\","
      "\"text_projection\",\"visual_projection\"]}]",
  };
  int n = 22;
  char outset[512], dataset[512];
  snprintf(outset, sizeof outset, "output_dir=%s", out);
  snprintf(dataset, sizeof dataset, "data.train=%s", pairs_dir);
  sets[n++] = outset;
  sets[n++] = dataset;
  for (int i = 0; i < n_extra; i++) sets[n++] = extra[i];
  cJSON *cfg = NULL;
  vkp_error err = {0};
  if (vkp_clip_train_config(NULL, sets, n, &cfg, &err)) fail_msg("config: %s", err.msg);
  return cfg;
}

static double mean_range(const vkp_metric_series *s, int a, int b) {
  double m = 0;
  for (int i = a; i < b; i++) m += s->value[i];
  return m / (b - a);
}

static void assert_files(const char *dir, const char *const *files, int n) {
  for (int i = 0; i < n; i++) {
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    if (access(p, R_OK)) fail_msg("missing %s", p);
  }
}

// (1) LoRA on both towers of a random CLIP learns the colours.
static void test_lora_learns(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400];
  snprintf(dir, sizeof dir, "%s/lora", tmp_root);
  const char *extra[] = {"data.val_fraction=0.25", "train.max_steps=40", "train.checkpoint_every=20"};
  cJSON *cfg = tiny_config(dir, extra, 3);
  vkp_clip_train_summary s;
  vkp_error err = {0};
  if (vkp_clip_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  vkp_metrics_log *log = vkp_test_metrics_read(dir);
  const vkp_metric_series *loss = vkp_metrics_find(log, "loss"), *r1 = vkp_metrics_find(log, "train_r1");
  assert_non_null(loss);
  assert_non_null(r1);
  assert_int_equal(loss->n, 40);
  double l0 = mean_range(loss, 0, 5), l1 = mean_range(loss, 35, 40), r0 = mean_range(r1, 0, 5), rN = mean_range(r1, 35, 40);
  printf("  loss %.3f -> %.3f, in-batch R@1 %.1f%% -> %.1f%%, val loss %.3f, val R@1 i->t %.1f%% t->i %.1f%% (%.1f s)\n",
         l0, l1, 100 * r0, 100 * rN, s.val_loss, 100 * s.val_i2t_r1, 100 * s.val_t2i_r1, s.seconds);
  assert_true(l1 < 0.7 * l0);
  assert_true(rN > r0 + 0.2);
  assert_true(isfinite(s.val_loss) && s.val_i2t_r1 >= 0);
  vkp_metrics_log_free(log);
  const char *files[] = {"config.json", "metrics.jsonl", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                         "adapter/preprocessor_config.json", "adapter/config.json", "model/config.json",
                         "model/model.safetensors", "plots/loss.png", "plots/lr.png", "plots/val.png",
                         "retrieval_gallery.png", "eval.json", "report.html",
                         "checkpoints/step-00000040/trainer_state.json", "checkpoints/step-00000020/optimizer.safetensors"};
  assert_files(dir, files, (int)(sizeof files / sizeof *files));
  // The saved config resolves again (it is what --resume reads).
  char p[600];
  snprintf(p, sizeof p, "%s/config.json", dir);
  cJSON *again = NULL;
  if (vkp_clip_train_config(p, NULL, 0, &again, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(again);
}

// (2) The first step's loss: a float64 InfoNCE from the embeddings the step read back, and
// vkp_clip_forward in a fresh graph on the same batch (warmup: the first update has lr 0, so the
// weights are still those the step saw).
static double host_infonce(const float *ie, const float *te, int n, int P, double logit_scale) {
  double total = 0, scale = exp(logit_scale);
  double L[64][64];
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double d = 0, ni = 0, nj = 0;
      for (int k = 0; k < P; k++) d += (double)ie[i * P + k] * te[j * P + k], ni += (double)ie[i * P + k] * ie[i * P + k],
                                  nj += (double)te[j * P + k] * te[j * P + k];
      L[i][j] = scale * d / sqrt(ni * nj);   // the embeddings are normalised; dividing again changes nothing
    }
  for (int i = 0; i < n; i++) {   // rows: image -> texts; columns: text -> images
    double si = 0, st = 0;
    for (int j = 0; j < n; j++) si += exp(L[i][j]), st += exp(L[j][i]);
    total += (log(si) - L[i][i]) + (log(st) - L[i][i]);
  }
  return total / (2.0 * n);
}

static void test_first_step_loss(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400];
  snprintf(dir, sizeof dir, "%s/first", tmp_root);
  const char *extra[] = {"train.warmup_steps=2", "train.max_steps=4"};
  cJSON *cfg = tiny_config(dir, extra, 2);
  vkp_clip_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_clip_trainer_new(ctx, cfg, NULL, true, &t, &err)) fail_msg("%s", err.msg);
  vkp_clip_trainer_record(t, true);
  vkp_clip_step_info info;
  if (vkp_clip_trainer_step(t, &info, &err)) fail_msg("%s", err.msg);
  assert_true(info.lr == 0);
  const vkp_clip_batch_record *r = vkp_clip_trainer_last_batch(t);
  assert_int_equal(r->n, 8);
  double want = host_infonce(r->image_embeds, r->text_embeds, r->n, r->dim, r->logit_scale);
  printf("  first step: loss %.7f (graph), %.7f (float64 from the embeddings)\n", info.loss, want);
  assert_true(fabs(info.loss - want) <= 2e-5 * fabs(want));
  assert_true(fabs(r->loss - info.loss) <= 1e-7 * fabs(want));
  // The same batch through vkp_clip_forward in a fresh graph.
  vkp_clip *c = vkp_clip_trainer_model(t);
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_clip_inputs in;
  vkp_clip_outputs out;
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_new(c, g, r->n, r->n, r->seq_len, false, &in));
  VKP_ASSERT_OK(ctx, vkp_clip_forward(c, g, &in, &out));
  vkp_graph_output(g, out.loss);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_set(c, g, &in, r->pixels, r->input_ids, NULL));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  float fresh;
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.loss, &fresh, sizeof fresh));
  printf("  fresh vkp_clip_forward graph: %.7f\n", fresh);
  assert_true(fabs(fresh - info.loss) <= 1e-6 * fabs(want));
  vkp_graph_free(g);
  vkp_clip_trainer_free(t);
  cJSON_Delete(cfg);
}

// (3) Resume: stopped after 4 steps, resumed to 10, the adapter equals an uninterrupted run's bit for bit.
static void test_resume_exact(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char full[400], dir[400];
  snprintf(full, sizeof full, "%s/uninterrupted", tmp_root);
  snprintf(dir, sizeof dir, "%s/resumed", tmp_root);
  const char *base[] = {"train.max_steps=10", "train.checkpoint_every=2", "train.warmup_steps=2", "train.grad_accum=2",
                        "train.batch_size=6", "data.augment.random_resized_crop=true", "data.augment.hflip=0.5"};
  cJSON *cfg = tiny_config(full, base, 7);
  vkp_clip_train_summary s;
  vkp_error err = {0};
  if (vkp_clip_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  const char *stopped[] = {"train.max_steps=10", "train.checkpoint_every=2", "train.warmup_steps=2", "train.grad_accum=2",
                           "train.batch_size=6", "data.augment.random_resized_crop=true", "data.augment.hflip=0.5",
                           "train.stop_after=5"};
  cfg = tiny_config(dir, stopped, 8);
  if (vkp_clip_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  assert_int_equal(s.steps, 5);
  // A checkpoint at step 5 (the stop) exists; the resumed run must not stop again: clear stop_after.
  char p[600];
  snprintf(p, sizeof p, "%s/config.json", dir);
  cJSON *saved = NULL;
  if (vkp_config_resolve(vkp_clip_train_defaults, p, (const char *const[]){"train.stop_after=0"}, 1, &saved, &err))
    fail_msg("%s", err.msg);
  char *text = cJSON_Print(saved);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
  free(text);
  cJSON_Delete(saved);
  if (vkp_clip_train(ctx, NULL, dir, true, &s, &err)) fail_msg("resume: %s", err.msg);
  assert_int_equal(s.steps, 10);
  char pa[600], pb[600];
  snprintf(pa, sizeof pa, "%s/adapter/adapter_model.safetensors", full);
  snprintf(pb, sizeof pb, "%s/adapter/adapter_model.safetensors", dir);
  vkp_safetensors *a = NULL, *b = NULL;
  if (vkp_safetensors_open(pa, &a, &err) || vkp_safetensors_open(pb, &b, &err)) fail_msg("%s", err.msg);
  assert_int_equal(vkp_safetensors_count(a), vkp_safetensors_count(b));
  assert_true(vkp_safetensors_count(a) >= 24);   // A and B of 6 modules x 2 layers x 2 towers (+ projections)
  for (size_t i = 0; i < vkp_safetensors_count(a); i++) {
    const vkp_st_tensor *ta = vkp_safetensors_at(a, i), *tb = vkp_safetensors_find(b, ta->name);
    if (!tb || tb->nbytes != ta->nbytes || memcmp(ta->data, tb->data, ta->nbytes))
      fail_msg("%s differs between the uninterrupted and the resumed run", ta->name);
  }
  printf("  %zu adapter tensors bit-identical after resuming at step 5 of 10\n", vkp_safetensors_count(a));
  vkp_safetensors_free(a);
  vkp_safetensors_free(b);
  vkp_metrics_log *la = vkp_test_metrics_read(full), *lb = vkp_test_metrics_read(dir);
  const vkp_metric_series *sa = vkp_metrics_find(la, "loss"), *sb = vkp_metrics_find(lb, "loss");
  assert_int_equal(sb->n, 10);
  for (int i = 0; i < 10; i++)
    if (sa->value[i] != sb->value[i]) fail_msg("step %d: loss %.9g uninterrupted, %.9g resumed", i + 1, sa->value[i], sb->value[i]);
  vkp_metrics_log_free(la);
  vkp_metrics_log_free(lb);
}

// (4) The clamp: full fine-tuning (logit_scale trainable) with the scale forced above ln 100 and
// below 0 between steps.
static void test_logit_scale_clamp(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400];
  snprintf(dir, sizeof dir, "%s/clamp", tmp_root);
  const char *extra[] = {"peft=[{\"method\":\"full\"}]", "train.lr=0.05", "model.init.logit_scale_init_value=4.5",
                         "train.max_steps=12"};
  cJSON *cfg = tiny_config(dir, extra, 4);
  vkp_clip_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_clip_trainer_new(ctx, cfg, NULL, true, &t, &err)) fail_msg("%s", err.msg);
  vkp_clip *c = vkp_clip_trainer_model(t);
  assert_true(c->logit_scale->weight->trainable);
  double hi = 0;
  for (int k = 0; k < 12; k++) {
    float forced = k == 4 ? 7.0f : k == 8 ? -2.0f : NAN;
    if (!isnan(forced)) VKP_ASSERT_OK(ctx, vkp_param_write_f32(c->model, c->logit_scale->weight, &forced));
    vkp_clip_step_info info;
    if (vkp_clip_trainer_step(t, &info, &err)) fail_msg("%s", err.msg);
    float v;
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(c->model, c->logit_scale->weight, &v));
    if (!(v >= 0 && v <= VKP_CLIP_LOGIT_SCALE_MAX)) fail_msg("step %d: logit_scale %.7f outside [0, ln 100]", k + 1, v);
    assert_true(v == (float)info.logit_scale);
    if (k == 4) assert_true(v == VKP_CLIP_LOGIT_SCALE_MAX);   // the forced 7 came back to ln 100
    if (k == 8) assert_true(v == 0.0f);                       // the forced -2 to 0
    hi = fmax(hi, v);
  }
  printf("  logit_scale stayed in [0, %.7f] over 12 full fine-tuning steps (max %.7f)\n", VKP_CLIP_LOGIT_SCALE_MAX, hi);
  vkp_clip_trainer_free(t);
  cJSON_Delete(cfg);
}

// (5) A linear probe on the frozen image embeddings learns the names (the kohya folder names).
static void test_linear_probe(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400];
  snprintf(dir, sizeof dir, "%s/probe", tmp_root);
  const char *extra[] = {"train.objective=linear_probe", "peft=[{\"method\":\"linear_probe\"}]", "train.lr=0.3",
                         "train.max_steps=40", "data.val_fraction=0.25"};
  cJSON *cfg = tiny_config(dir, extra, 5);
  vkp_clip_train_summary s;
  vkp_error err = {0};
  if (vkp_clip_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("train: %s", err.msg);
  cJSON_Delete(cfg);
  vkp_metrics_log *log = vkp_test_metrics_read(dir);
  const vkp_metric_series *loss = vkp_metrics_find(log, "loss"), *acc = vkp_metrics_find(log, "train_accuracy");
  assert_non_null(acc);
  printf("  probe: loss %.3f -> %.3f, train accuracy %.1f%% -> %.1f%%, val accuracy %.1f%% (chance %.1f%%), %lld trainable\n",
         mean_range(loss, 0, 5), mean_range(loss, 35, 40), 100 * mean_range(acc, 0, 5), 100 * mean_range(acc, 35, 40),
         100 * s.val_accuracy, 100.0 / N_COLORS, (long long)s.trainable_params);
  assert_int_equal(s.trainable_params, N_COLORS * 32 + N_COLORS);   // the head only
  assert_true(mean_range(loss, 35, 40) < 0.6 * mean_range(loss, 0, 5));
  assert_true(s.val_accuracy > 0.5);
  vkp_metrics_log_free(log);
  const char *files[] = {"adapter/adapter_model.safetensors", "report.html", "plots/val.png"};
  assert_files(dir, files, 3);
}

// ---- (6) the command line ---------------------------------------------------------------------

static void test_cli_errors(void **state) {
  (void)state;
  char args[2000], cfgp[400];
  vkp_cli_expect_bad("train --set task=clip --set train.nope=1", "unknown key 'train.nope'", NULL);
  vkp_cli_expect_bad("train --set task=clip --set train.batch_size=big", "train.batch_size", NULL);
  vkp_cli_expect_bad("train --set task=segment", "task", "segment");
  vkp_cli_expect_bad("train --set task=clip --set train.objective=telepathy --set data.train=x", "train.objective", NULL);
  vkp_cli_expect_bad("train --set task=clip --set data.train=/nonexistent/pairs --set data.workers=0", "data.train", "/nonexistent/pairs");
  vkp_cli_expect_bad("train --set task=clip --set model.pretrained=/nonexistent/clip", "/nonexistent/clip", NULL);
  vkp_cli_expect_bad("train --set task=clip --set data.template=nobraces", "data.template", NULL);
  // A config file: a wrong type deep in model.init, and a peft entry that is not a list.
  snprintf(cfgp, sizeof cfgp, "%s/bad_clip.json", tmp_root);
  FILE *f = fopen(cfgp, "w");
  fputs("{\"task\": \"clip\", \"model\": {\"init\": {\"text_config\": {\"hidden_size\": \"wide\"}}}}", f);
  fclose(f);
  snprintf(args, sizeof args, "train %s", cfgp);
  vkp_cli_expect_bad(args, "model.init.text_config.hidden_size", cfgp);
  f = fopen(cfgp, "w");
  fputs("{\"task\": \"clip\", \"peft\": {\"method\": \"lora\"}}", f);
  fclose(f);
  vkp_cli_expect_bad(args, "peft", cfgp);
  f = fopen(cfgp, "w");
  fputs("{\"task\": 7}", f);
  fclose(f);
  vkp_cli_expect_bad(args, "task", cfgp);
  // A caption missing: the reader names the file.
  char bad[400], img[500];
  snprintf(bad, sizeof bad, "%s/no_caption", tmp_root);
  vkp_dir_create(bad, NULL);
  snprintf(img, sizeof img, "%s/lonely.png", bad);
  vkp_image *im = NULL;
  vkp_image_new(4, 4, 3, &im, NULL);
  vkp_png_write(img, im, NULL, 0, NULL);
  vkp_image_free(im);
  snprintf(args, sizeof args, "train --set task=clip --set data.train=%s --set data.workers=0", bad);
  vkp_cli_expect_bad(args, "data.train", "lonely");
  // The resolved defaults train end to end through the program (a few steps of the tiny model).
  snprintf(args, sizeof args,
           "train --quiet --set task=clip --set output_dir=%s/cli_run --set data.train=%s --set data.val_fraction=0 "
           "--set train.batch_size=8 --set train.max_steps=2 --set model.init.projection_dim=16 "
           "--set model.init.text_config.hidden_size=16 --set model.init.text_config.num_hidden_layers=1 "
           "--set model.init.text_config.num_attention_heads=1 --set model.init.text_config.intermediate_size=16 "
           "--set model.init.text_config.max_position_embeddings=8 --set model.init.vision_config.image_size=8 "
           "--set model.init.vision_config.hidden_size=16 --set model.init.vision_config.num_hidden_layers=1 "
           "--set model.init.vision_config.num_attention_heads=1 --set model.init.vision_config.intermediate_size=16",
           tmp_root, pairs_dir);
  int rc = vkp_cli_run(args);
  if (rc != 0 || strstr(vkp_cli_output(), "validation")) fail_msg("vkpeft %s\n  exit %d:\n%s", args, rc, vkp_cli_output());
  snprintf(args, sizeof args, "train --quiet --resume %s/cli_run", tmp_root);   // finished: resumes to the end at once
  rc = vkp_cli_run(args);
  if (rc != 0) fail_msg("vkpeft %s\n  exit %d:\n%s", args, rc, vkp_cli_output());
}

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmp_root, sizeof tmp_root, "%s/vkp_clip_train_XXXXXX", base && strlen(base) < 100 ? base : "/tmp");
  if (!mkdtemp(tmp_root)) return -1;
  snprintf(pairs_dir, sizeof pairs_dir, "%s/colors", tmp_root);
  write_pairs(pairs_dir);
  return 0;
}

static int teardown(void **state) {
  if (!getenv("VKP_KEEP_TMP")) vkp_path_remove_all(tmp_root, NULL);
  return vkp_test_teardown(state);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lora_learns),     cmocka_unit_test(test_first_step_loss),
      cmocka_unit_test(test_resume_exact),    cmocka_unit_test(test_logit_scale_clamp),
      cmocka_unit_test(test_linear_probe),    cmocka_unit_test(test_cli_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
