// test_diffusion_train_report.c — what a diffusion run leaves for watching it learn, on the tiny
// pipeline and shapes of train_fixture.h:
//   (a) the EMA of the adapter weights (train.ema_decay) against a float64 recomputation from the
//       raw adapter of every step's checkpoint, with diffusers EMAModel's decay (0 at the first
//       update, then min(decay, (1 + s) / (10 + s)) with the warmup, else the decay), at every step;
//       the EMA files of every format load in `vkpeft generate` with identical latents, other than
//       the raw adapter's, and the sample grid's EMA row is generate's image with the EMA adapter;
//   (b) report.html embeds plots/loss.png and plots/lr.png (valid PNGs, read back) and every
//       samples/step-NNNNNN.png in step order, and links the adapter files of every format (the
//       final ones, or a stopped run's last checkpoint's).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train_fixture.h"
#include "vkp_report.h"

static char warm_dir[400], const_dir[400];

// diffusers EMAModel.get_decay for optimizer update k (1, 2, ...), written out here.
static double ema_decay(int k, double decay, bool warmup) {
  int s = k - 1;
  if (s <= 0) return 0;
  double d = warmup ? (1.0 + s) / (10.0 + s) : decay;
  return d < decay ? d : decay;
}

// Every tensor of a safetensors file into one new float64 array (in file order); *n its length.
static double *read_all(const char *path, size_t *n, vkp_safetensors **keep) {
  vkp_error err = {0};
  if (vkp_safetensors_open(path, keep, &err)) fail_msg("%s", err.msg);
  size_t total = 0;
  for (size_t i = 0; i < vkp_safetensors_count(*keep); i++) total += vkp_st_tensor_numel(vkp_safetensors_at(*keep, i));
  double *out = malloc(total * sizeof *out);
  float *tmp = malloc(total * sizeof *tmp);
  size_t off = 0;
  for (size_t i = 0; i < vkp_safetensors_count(*keep); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(*keep, i);
    size_t m = vkp_st_tensor_numel(t);
    if (vkp_safetensors_read_f32(*keep, t->name, tmp + off, m, &err)) fail_msg("%s", err.msg);
    off += m;
  }
  for (size_t i = 0; i < total; i++) out[i] = tmp[i];
  free(tmp);
  *n = total;
  return out;
}

// A tensor file of checkpoint `step` of run dir as float64 (names in the same order in every file
// of one run: the same writer over the same adapters).
static double *checkpoint_tensors(const char *dir, int step, const char *file, size_t *n) {
  char path[700];
  snprintf(path, sizeof path, "%s/checkpoints/step-%08d/%s", dir, step, file);
  vkp_safetensors *sf = NULL;
  double *v = read_all(path, n, &sf);
  vkp_safetensors_free(sf);
  return v;
}

// Checks the EMA of checkpoints 1..steps of dir against the float64 recursion over the raw ones.
static void check_ema(const char *dir, int steps, double decay, bool warmup) {
  size_t n = 0, m;
  double *ref = NULL, worst = 0, moved = 0;
  for (int k = 1; k <= steps; k++) {
    double *raw = checkpoint_tensors(dir, k, "adapter/adapter_model.safetensors", &m);
    double *ema = checkpoint_tensors(dir, k, "adapter_ema/adapter_model.safetensors", &n);
    assert_int_equal(m, n);
    if (!ref) ref = calloc(n, sizeof *ref);   // update 1 has decay 0: the start value drops out
    double d = ema_decay(k, decay, warmup), scale = 0;
    for (size_t i = 0; i < n; i++) ref[i] = d * ref[i] + (1 - d) * raw[i], scale = fmax(scale, fabs(ref[i]));
    double e = 0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs(ema[i] - ref[i]));
    worst = fmax(worst, e / scale);
    if (e > 1e-6 * scale) fail_msg("%s step %d (decay %.6f): EMA off the float64 recursion by %.3g (scale %.3g)", dir, k, d, e, scale);
    if (k == steps)
      for (size_t i = 0; i < n; i++) moved = fmax(moved, fabs(ema[i] - raw[i]) / scale);
    free(raw), free(ema);
  }
  printf("  EMA (decay %g, %s) over %d steps, %zu weights: worst error vs float64 %.3g of the scale; "
         "EMA - raw at the end %.3g of the scale\n", decay, warmup ? "warmup" : "constant", steps, n, worst, moved);
  if (moved < 1e-3) fail_msg("%s: the EMA equals the raw adapter: the test would not see a wrong average", dir);
  free(ref);
}

static void run(const char *dir, const char *const *extra, int n) {
  cJSON *cfg = config(dir, extra, n);
  vkp_diffusion_train_summary s;
  vkp_error err = {0};
  if (vkp_diffusion_train(vkp_test_ctx(), cfg, NULL, true, &s, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(cfg);
}

// The two runs of the file: 5 steps with the warmup, samples every 2 steps and validation; 4 steps
// at a constant decay, stopped after 3.
static int make_runs(void **state) {
  if (make_fixture(state)) return -1;
  out_path("ema_warmup", warm_dir, sizeof warm_dir);
  out_path("ema_constant", const_dir, sizeof const_dir);
  const char *warm[] = {"train.max_steps=5", "train.lr=0.02", "train.ema_decay=0.9", "train.checkpoint_every=1", "train.keep_last=10",
                        "train.eval_every=2", "samples.every=2", "samples.prompts=[\"sks, red, circle\"]", "samples.steps=2",
                        "samples.seed=3", "data.trigger=sks"};
  run(warm_dir, warm, 11);
  const char *cons[] = {"train.max_steps=4", "train.stop_after=3", "train.lr=0.02", "train.ema_decay=0.6", "train.ema_warmup=false",
                        "train.checkpoint_every=1", "train.keep_last=10", "train.min_snr_gamma=5"};
  run(const_dir, cons, 8);
  return 0;
}

// ---- (a) the EMA ----------------------------------------------------------------------------------

static void test_ema_reference(void **state) {
  (void)state;
  check_ema(warm_dir, 5, 0.9, true);
  check_ema(const_dir, 3, 0.6, false);
  // The final EMA files are the last checkpoint's average, in every format.
  char a[700], b[700];
  snprintf(a, sizeof a, "%s/adapter_ema/adapter_model.safetensors", warm_dir);
  snprintf(b, sizeof b, "%s/checkpoints/step-%08d/adapter_ema/adapter_model.safetensors", warm_dir, 5);
  assert_same_tensors(a, b);
  char peft[600], kohya[600], diff[600], raw[600];
  snprintf(peft, sizeof peft, "%s/adapter_ema", warm_dir);
  snprintf(kohya, sizeof kohya, "%s/lora_ema.safetensors", warm_dir);
  snprintf(diff, sizeof diff, "%s/pytorch_lora_weights_ema.safetensors", warm_dir);
  snprintf(raw, sizeof raw, "%s/adapter", warm_dir);
  size_t n0, n1, n2, n3;
  float *r = generate(raw, "raw", &n0), *p = generate(peft, "ema_peft", &n1), *k = generate(kohya, "ema_kohya", &n2),
        *d = generate(diff, "ema_diffusers", &n3);
  assert_int_equal(n0, n1), assert_int_equal(n1, n2), assert_int_equal(n2, n3);
  if (memcmp(p, k, n1 * sizeof *p) || memcmp(p, d, n1 * sizeof *p)) fail_msg("the EMA files of the three formats generate other latents");
  double diff_max = 0;
  for (size_t i = 0; i < n0; i++) diff_max = fmax(diff_max, fabs(p[i] - r[i]));
  printf("  EMA adapter: PEFT folder, kohya, diffusers give identical latents; max |EMA - raw| %.4g\n", diff_max);
  if (diff_max < 1e-5) fail_msg("the EMA adapter generates the raw adapter's latents");
  free(r), free(p), free(k), free(d);
  // The last grid's rows: generate without the adapter, with it, with its EMA.
  const char *common = "--prompt \"sks, red, circle\" --sampler ddim --steps 2 --cfg 5 --seed 3 --width 16 --height 16";
  const char *loras[3] = {NULL, raw, peft};
  char args[3000], png[600];
  snprintf(png, sizeof png, "%s/samples/step-000005.png", warm_dir);
  vkp_image *grid = read_png(png);
  for (int i = 0; i < 3; i++) {
    snprintf(png, sizeof png, "%s/grid_row_%d.png", tmp_root, i);
    snprintf(args, sizeof args, "generate --model %s %s%s%s --output %s", pipe_dir, common, loras[i] ? " --lora " : "",
             loras[i] ? loras[i] : "", png);
    vkp_cli_expect(args, 0, NULL);
    vkp_image *img = read_png(png);
    if (!in_grid(grid, img)) fail_msg("the grid of step 5 lacks row %d (`vkpeft generate`%s)", i, i ? (i == 1 ? " --lora adapter" : " --lora adapter_ema") : "");
    vkp_image_free(img);
  }
  vkp_image_free(grid);
  printf("  the grid of step 5: rows = generate without the adapter, with it, with its EMA\n");
}

// ---- (b) report.html ---------------------------------------------------------------------------------

static char *read_text(const char *path) {
  char *data = NULL;
  size_t len = 0;
  vkp_error err = {0};
  if (vkp_file_read_all(path, (size_t)1 << 30, &data, &len, &err)) fail_msg("%s", err.msg);
  return data;
}

// Where the base64 of file `path` stands in html (fails when it is not there).
static const char *embedded(const char *html, const char *path) {
  char *data = NULL;
  size_t len = 0;
  vkp_error err = {0};
  if (vkp_file_read_all(path, (size_t)1 << 30, &data, &len, &err)) fail_msg("%s", err.msg);
  char *b64 = vkp_base64_encode(data, len);
  const char *at = strstr(html, b64);
  if (!at) fail_msg("report.html does not embed %s", path);
  free(data), free(b64);
  return at;
}

static void expect_link(const char *html, const char *href) {
  char want[300];
  snprintf(want, sizeof want, "href=\"%s\"", href);
  if (!strstr(html, want)) fail_msg("report.html has no link %s", want);
}

static void test_report(void **state) {
  (void)state;
  char path[700];
  snprintf(path, sizeof path, "%s/report.html", warm_dir);
  char *html = read_text(path);
  // the plots: valid PNGs, embedded
  const char *plots[] = {"loss.png", "lr.png"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/plots/%s", warm_dir, plots[i]);
    vkp_image *img = read_png(path);
    if (img->width < 400 || img->height < 250) fail_msg("%s: %dx%d", path, img->width, img->height);
    printf("  plots/%s: %dx%d PNG, embedded\n", plots[i], img->width, img->height);
    vkp_image_free(img);
    embedded(html, path);
  }
  // the sample timeline: steps 2, 4 and the end (5), each embedded, in step order, named
  const int steps[3] = {2, 4, 5};
  const char *last = html;
  for (int i = 0; i < 3; i++) {
    char rel[64];
    snprintf(rel, sizeof rel, "samples/step-%06d.png", steps[i]);
    snprintf(path, sizeof path, "%s/%s", warm_dir, rel);
    const char *at = embedded(html, path);
    if (at < last) fail_msg("report.html: %s out of step order", rel);
    if (!strstr(html, rel)) fail_msg("report.html does not name %s", rel);
    last = at;
  }
  snprintf(path, sizeof path, "%s/samples/step-000003.png", warm_dir);
  if (!access(path, F_OK)) fail_msg("%s: a grid between samples.every steps", path);
  // the adapter files of every format, raw and EMA
  const char *files[] = {"adapter/", "lora.safetensors", "pytorch_lora_weights.safetensors",
                         "adapter_ema/", "lora_ema.safetensors", "pytorch_lora_weights_ema.safetensors"};
  for (int i = 0; i < 6; i++) {
    expect_link(html, files[i]);
    snprintf(path, sizeof path, "%s/%s", warm_dir, files[i]);
    if (access(path, F_OK)) fail_msg("linked %s is missing", path);
  }
  const char *rows[] = {"trainable parameters", "training steps", "throughput", "peak device memory", "validation loss",
                        "EMA of the adapter weights"};
  for (int i = 0; i < 6; i++)
    if (!strstr(html, rows[i])) fail_msg("report.html has no '%s' row", rows[i]);
  free(html);
  // a stopped run: the files of its newest checkpoint
  snprintf(path, sizeof path, "%s/report.html", const_dir);
  html = read_text(path);
  expect_link(html, "checkpoints/step-00000003/adapter/");
  expect_link(html, "checkpoints/step-00000003/adapter_ema/");
  snprintf(path, sizeof path, "%s/plots/loss.png", const_dir);
  embedded(html, path);
  if (strstr(html, "samples/step-")) fail_msg("%s: sample grids without samples.prompts", const_dir);
  printf("  report.html: plots and 3 sample grids embedded in step order, 6 adapter links; stopped run links checkpoint 3\n");
  free(html);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_ema_reference), cmocka_unit_test(test_report)};
  return cmocka_run_group_tests(tests, make_runs, remove_fixture);
}
