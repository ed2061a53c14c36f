// test_diffusion_train.c — `vkpeft train` with "task": "diffusion" on the tiny pipeline and the
// kohya caption folder of 16x16 RGBA shapes of train_fixture.h:
//   (a) one micro-batch's objective against a float64 reference computed here from forced noise and
//       timesteps: noisy latents, epsilon and v targets, min-SNR-γ weights, the alpha loss mask
//       (from the images' own alpha), the loss from the UNet output read back;
//   (b) the validation loss at fixed triples falls over 30 steps of memorising the images;
//   (c) a run stopped after N steps and resumed for N more ends with bit-identical adapter tensors
//       (and EMA tensors) and one metrics line per step, equal to the uninterrupted run's;
//   (d) the saved kohya / diffusers / PEFT files give identical final latents in `vkpeft generate`,
//       different from the base model's (LoRA, DoRA, LoHa), and the kohya file carries ss_* metadata;
//       the sample grids written while training show generate's images without and with the adapter;
//   (e) the latent cache: a second run encodes nothing, a changed setting re-encodes;
//   (f) bad input through the CLI: one line naming the file or key, exit status 2.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_cli_run.h"
#include "vkp_config.h"
#include "vkp_diffusion_train.h"
#include "vkp_fileio.h"
#include "vkp_metrics.h"
#include "vkp_png.h"
#include "vkp_rng.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"
#include "train_internal.h"   // vkp_dtrain_caption
#include "train_fixture.h"

// ---- (a) the objective against float64 ---------------------------------------------------------------

// ᾱ_t of SD's scaled_linear schedule in double: β = linspace(√0.00085, √0.012, 1000)².
static double alpha_bar(int t) {
  double a = 1, s0 = sqrt(0.00085), s1 = sqrt(0.012);
  for (int i = 0; i <= t; i++) {
    double b = s0 + (s1 - s0) * i / 999.0;
    a *= 1 - b * b;
  }
  return a;
}

static void check_objective(const char *pred_type, double gamma) {
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400], e1[64], e2[64];
  snprintf(dir, sizeof dir, "%s/objective_%s", tmp_root, pred_type);
  snprintf(e1, sizeof e1, "train.prediction_type=%s", pred_type);
  snprintf(e2, sizeof e2, "train.min_snr_gamma=%g", gamma);
  const char *extra[] = {e1, e2, "train.masked_loss=true", "train.noise_offset=0"};
  cJSON *cfg = config(dir, extra, 4);
  vkp_diffusion_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_diffusion_trainer_new(ctx, cfg, NULL, true, &t, &err)) fail_msg("%s", err.msg);
  const int B = 2, C = 4, h = RES / 2, w = RES / 2;
  const size_t item = (size_t)C * h * w;
  float noise[2 * 4 * 8 * 8];
  int ts[2] = {17, 803};
  vkp_rng r = vkp_rng_new(99);
  vkp_rng_randn(&r, noise, sizeof noise / sizeof *noise);
  vkp_diffusion_trainer_record(t, true);
  vkp_diffusion_trainer_force(t, noise, ts);
  double loss;
  if (vkp_diffusion_trainer_step(t, &loss, &err)) fail_msg("%s", err.msg);
  const vkp_diffusion_batch_record *rec = vkp_diffusion_trainer_last_batch(t);
  assert_int_equal(rec->n, B);
  assert_int_equal(rec->channels * rec->height * rec->width, (int)item);
  bool v = !strcmp(pred_type, "v_prediction");
  assert_int_equal(rec->v_prediction, v);
  double *noisy = malloc(B * item * sizeof *noisy), *target = malloc(B * item * sizeof *target);
  double ref_loss = 0;
  for (int s = 0; s < B; s++) {
    assert_int_equal(rec->timesteps[s], ts[s]);
    double ab = alpha_bar(ts[s]), sa = sqrt(ab), sb = sqrt(1 - ab), snr = ab / (1 - ab);
    double wgt = gamma > 0 ? (snr < gamma ? snr : gamma) / (v ? snr + 1 : snr) : 1;
    if (fabs(rec->snr_weight[s] - wgt) > 1e-5 * wgt) fail_msg("sample %d: min-SNR weight %.8g, want %.8g", s, rec->snr_weight[s], wgt);
    // The mask: the image's alpha averaged over 2x2 blocks (16 px -> 8 latent px).
    size_t img = rec->images[s];
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        double a = 0;
        for (int dy = 0; dy < 2; dy++)
          for (int dx = 0; dx < 2; dx++) a += alpha_of((int)img, 2 * x + dx, 2 * y + dy) / 255.0 / 4;
        if (fabs(rec->mask[s * h * w + y * w + x] - a) > 1e-5) fail_msg("sample %d mask (%d, %d): %g, want %g", s, y, x, rec->mask[s * h * w + y * w + x], a);
      }
    double se = 0;
    for (size_t i = 0; i < item; i++) {
      size_t k = s * item + i;
      assert_true(rec->noise[k] == noise[k]);
      double x0 = rec->latents[k], e = noise[k];
      noisy[k] = sa * x0 + sb * e;
      target[k] = v ? sa * e - sb * x0 : e;
      double d = rec->pred[k] - target[k];
      se += rec->mask[s * h * w + i % (h * w)] * d * d;
    }
    ref_loss += wgt * se / (double)item / B;
  }
  vkp_assert_close("noisy latents", rec->noisy, noisy, B * item, 1e-5, 1e-6);
  vkp_assert_close("target", rec->target, target, B * item, 1e-5, 1e-6);
  if (fabs(rec->loss - ref_loss) > 1e-4 * fabs(ref_loss)) fail_msg("loss %.8g, float64 reference %.8g", rec->loss, ref_loss);
  if (fabs(loss - rec->loss) > 0) fail_msg("step loss %.8g, recorded %.8g", loss, rec->loss);
  printf("  %s, gamma %g: loss %.6g (reference %.6g), weights %.4g %.4g\n", pred_type, gamma, rec->loss, ref_loss,
         rec->snr_weight[0], rec->snr_weight[1]);
  free(noisy), free(target);
  vkp_diffusion_trainer_free(t);
  cJSON_Delete(cfg);
}

static void test_objective_reference(void **state) {
  (void)state;
  check_objective("epsilon", 5);
  check_objective("v_prediction", 5);
  check_objective("epsilon", 0);
}

// ---- captions: trigger, tag shuffle after keep_tokens, dropout ----------------------------------------

static void test_captions(void **state) {
  (void)state;
  vkp_diffusion_trainer t = {.trigger = "sks", .keep_tokens = 1};
  vkp_error err = {0};
  const char *cap = "red,  circle , flat icon,small,,bright";
  char *c = vkp_dtrain_caption(&t, cap, 1, true, &err);
  assert_string_equal(c, "sks, red, circle, flat icon, small, bright");
  free(c);
  t.shuffle_captions = true, t.caption_dropout = 0.3;
  c = vkp_dtrain_caption(&t, cap, 1, false, &err);   // validation: trigger only
  assert_string_equal(c, "sks, red, circle, flat icon, small, bright");
  free(c);
  int dropped = 0, orders = 0, n = 2000;
  char first[128] = "";
  for (int k = 0; k < n; k++) {
    c = vkp_dtrain_caption(&t, cap, (uint64_t)k * 7919u + 3, true, &err);
    if (!*c) {
      dropped++;
    } else {
      // "sks, red, " stays in front; the other four tags are all there, in some order
      if (strncmp(c, "sks, red, ", 10)) fail_msg("keep_tokens: '%s'", c);
      const char *tags[] = {"circle", "flat icon", "small", "bright"};
      size_t total = 10;
      for (int i = 0; i < 4; i++) {
        if (!strstr(c + 10, tags[i])) fail_msg("tag '%s' lost: '%s'", tags[i], c);
        total += strlen(tags[i]) + (i ? 2 : 0);
      }
      assert_int_equal(strlen(c), total);
      if (!*first) snprintf(first, sizeof first, "%s", c);
      else orders += strcmp(first, c) != 0;
    }
    free(c);
  }
  double p = (double)dropped / n;   // binomial(2000, 0.3): sd 0.0102
  printf("  caption dropout %.4f (want 0.3), %d of %d kept captions in another order than the first\n", p, orders, n - dropped);
  if (fabs(p - 0.3) > 0.04) fail_msg("dropout rate %.4f, want 0.3", p);
  if (orders < (n - dropped) / 2) fail_msg("tags hardly shuffled: %d of %d", orders, n - dropped);
}

// ---- (b) it learns -------------------------------------------------------------------------------

static void test_loss_decreases(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400];
  out_path("learn", dir, sizeof dir);
  const char *extra[] = {"peft=[{\"method\":\"lora\",\"r\":8,\"lora_alpha\":8,\"target_modules\":[\"to_q\",\"to_k\",\"to_v\",\"to_out.0\",\"conv1\",\"conv2\",\"proj_in\",\"proj_out\"]}]",
                         "train.lr=0.01", "train.max_grad_norm=1"};
  cJSON *cfg = config(dir, extra, 3);
  vkp_diffusion_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_diffusion_trainer_new(ctx, cfg, NULL, true, &t, &err)) fail_msg("%s", err.msg);
  double before, after, loss;
  if (vkp_diffusion_trainer_val_loss(t, &before, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < 30; i++)
    if (vkp_diffusion_trainer_step(t, &loss, &err)) fail_msg("step %d: %s", i, err.msg);
  if (vkp_diffusion_trainer_val_loss(t, &after, &err)) fail_msg("%s", err.msg);
  printf("  validation loss (4 images at fixed timesteps and noise): %.5f before, %.5f after 30 steps\n", before, after);
  if (!(after < 0.9 * before)) fail_msg("validation loss %.5f -> %.5f: not learning", before, after);
  vkp_diffusion_trainer_free(t);
  cJSON_Delete(cfg);
}

// ---- (c) exact resume -----------------------------------------------------------------------------

// Runs `extra` for 2n steps in one go and as n steps + a resume; the adapters and logs must agree.
static void check_resume(const char *tag, const char *const *extra, int n_extra, int n) {
  vkp_ctx *ctx = vkp_test_ctx();
  char full[400], part[400], p[600], q[600], steps[64], stop[64];
  snprintf(full, sizeof full, "%s/full_%s", tmp_root, tag);
  snprintf(part, sizeof part, "%s/part_%s", tmp_root, tag);
  snprintf(steps, sizeof steps, "train.max_steps=%d", 2 * n);
  snprintf(stop, sizeof stop, "train.stop_after=%d", n);
  const char *sets[24];
  memcpy(sets, extra, (size_t)n_extra * sizeof *sets);
  sets[n_extra] = steps, sets[n_extra + 1] = stop;
  vkp_error err = {0};
  vkp_diffusion_train_summary s;
  cJSON *cfg = config(full, sets, n_extra + 1);
  if (vkp_diffusion_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(cfg);
  cfg = config(part, sets, n_extra + 2);
  if (vkp_diffusion_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("%s", err.msg);
  assert_int_equal(s.steps, n);
  cJSON_Delete(cfg);
  resume_run(ctx, part, &s);
  assert_int_equal(s.steps, 2 * n);
  snprintf(p, sizeof p, "%s/adapter/adapter_model.safetensors", full);
  snprintf(q, sizeof q, "%s/adapter/adapter_model.safetensors", part);
  assert_same_tensors(p, q);
  snprintf(p, sizeof p, "%s/adapter_ema/adapter_model.safetensors", full);   // written when train.ema_decay is on
  snprintf(q, sizeof q, "%s/adapter_ema/adapter_model.safetensors", part);
  bool ema = !access(p, F_OK) || !access(q, F_OK);
  if (ema) assert_same_tensors(p, q);
  printf("  %s: %d + %d resumed steps give the uninterrupted run's adapter%s bit for bit\n", tag, n, n, ema ? " and its EMA" : "");
  vkp_metrics_log *la = metrics_of(full), *lb = metrics_of(part);
  const vkp_metric_series *a = vkp_metrics_find(la, "loss_weighted"), *b = vkp_metrics_find(lb, "loss_weighted");
  if (!a || !b) fail_msg("no loss_weighted series");
  assert_int_equal(a->n, 2 * n);
  assert_int_equal(b->n, 2 * n);   // resumed: steps 1..n once, then n+1..2n
  for (int i = 0; i < 2 * n; i++) {
    if (b->step[i] != i + 1) fail_msg("resumed log: record %d has step %g", i, b->step[i]);
    if (a->value[i] != b->value[i]) fail_msg("%s, step %d: loss %.9g uninterrupted, %.9g resumed", tag, i + 1, a->value[i], b->value[i]);
  }
  vkp_metrics_log_free(la), vkp_metrics_log_free(lb);
}

static void test_resume_exact(void **state) {
  (void)state;
  // cached latents with flips, every caption augmentation, noise offset, min-SNR
  const char *cached[] = {"data.hflip=0.5", "data.caption_dropout=0.3", "data.shuffle_captions=true", "data.keep_tokens=1",
                          "train.noise_offset=0.05", "train.min_snr_gamma=5", "data.trigger=sks", "train.ema_decay=0.8"};
  check_resume("cached", cached, 8, 3);
  // random crops encoded in the step, the alpha mask, accumulation
  const char *random[] = {"data.crop=random", "data.hflip=0.5", "train.masked_loss=true", "train.grad_accum=2"};
  check_resume("random_crop", random, 4, 2);
}

// ---- (d) saved files load in `vkpeft generate` with identical outputs ------------------------------

// The sample grids of run `dir` (prompt "sks, red, circle", seed 7, DDIM 3 steps, cfg 5) hold
// `vkpeft generate`'s image without the adapter in every grid and with the final adapter (`lora`)
// in the last one, at `last_step`.
static void check_sample_grids(const char *dir, const char *lora, int first_step, int last_step) {
  char args[3000], png[600], g1[600], g2[600];
  const char *common = "--prompt \"sks, red, circle\" --sampler ddim --steps 3 --cfg 5 --seed 7 --width 16 --height 16";
  snprintf(png, sizeof png, "%s/sample_base.png", tmp_root);
  snprintf(args, sizeof args, "generate --model %s %s --output %s", pipe_dir, common, png);
  vkp_cli_expect(args, 0, NULL);
  vkp_image *base = read_png(png);
  snprintf(png, sizeof png, "%s/sample_lora.png", tmp_root);
  snprintf(args, sizeof args, "generate --model %s %s --lora %s --output %s", pipe_dir, common, lora, png);
  vkp_cli_expect(args, 0, NULL);
  vkp_image *tuned = read_png(png);
  snprintf(g1, sizeof g1, "%s/samples/step-%06d.png", dir, first_step);
  snprintf(g2, sizeof g2, "%s/samples/step-%06d.png", dir, last_step);
  vkp_image *a = read_png(g1), *b = read_png(g2);
  if (!in_grid(a, base) || !in_grid(b, base)) fail_msg("the adapters-off row of %s / %s is not `vkpeft generate`'s image", g1, g2);
  if (!in_grid(b, tuned)) fail_msg("the adapters-on row of %s is not `vkpeft generate --lora`'s image", g2);
  if (in_grid(b, base) && !memcmp(base->data, tuned->data, 16 * 16 * 3)) fail_msg("the adapter does not change the sample");
  printf("  sample grids: base row = generate without the LoRA; step %d row = generate with it\n", last_step);
  vkp_image_free(base), vkp_image_free(tuned), vkp_image_free(a), vkp_image_free(b);
}

static void check_formats(const char *method_json, const char *tag, bool diffusers) {
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[400], peft[600], kohya[600], diff[600];
  snprintf(dir, sizeof dir, "%s/formats_%s", tmp_root, tag);
  const char *extra[] = {method_json, "train.max_steps=4", "train.lr=0.05", "data.trigger=sks", "model.base_model_version=sd_v1",
                         "samples.every=2", "samples.prompts=[\"sks, red, circle\"]", "samples.seed=7", "samples.steps=3"};
  cJSON *cfg = config(dir, extra, diffusers && !strcmp(tag, "lora") ? 9 : 5);
  vkp_diffusion_train_summary s;
  vkp_error err = {0};
  if (vkp_diffusion_train(ctx, cfg, NULL, true, &s, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(cfg);
  snprintf(peft, sizeof peft, "%s/adapter", dir);
  snprintf(kohya, sizeof kohya, "%s/lora.safetensors", dir);
  snprintf(diff, sizeof diff, "%s/pytorch_lora_weights.safetensors", dir);
  if (access(kohya, R_OK)) fail_msg("missing %s", kohya);
  if (diffusers == !!access(diff, R_OK)) fail_msg("%s: %s", diff, diffusers ? "missing" : "written for a method the format cannot hold");
  size_t n0, n1, n2, n3 = 0;
  float *base = generate(NULL, "base", &n0), *a = generate(peft, "peft", &n1), *b = generate(kohya, "kohya", &n2);
  float *c = diffusers ? generate(diff, "diffusers", &n3) : NULL;
  assert_int_equal(n0, n1), assert_int_equal(n1, n2);
  if (memcmp(a, b, n1 * sizeof *a)) fail_msg("%s: the kohya file generates other latents than the PEFT folder", tag);
  if (c && memcmp(a, c, n1 * sizeof *a)) fail_msg("%s: the diffusers file generates other latents than the PEFT folder", tag);
  double diff_max = 0;
  for (size_t i = 0; i < n0; i++) diff_max = fmax(diff_max, fabs(a[i] - base[i]));
  printf("  %s: PEFT folder, kohya%s give identical latents; max |lora - base| %.4g\n", tag, c ? ", diffusers" : "", diff_max);
  if (diff_max < 1e-4) fail_msg("%s: the adapter changes nothing", tag);
  // kohya's training metadata
  vkp_safetensors *f = NULL;
  if (vkp_safetensors_open(kohya, &f, &err)) fail_msg("%s", err.msg);
  const char *want[][2] = {{"ss_resolution", "(16, 16)"}, {"ss_steps", "4"}, {"ss_learning_rate", "0.05"},
                           {"ss_base_model_version", "sd_v1"}, {"ss_batch_size_per_device", "2"}, {"ss_max_train_steps", "4"}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    const char *v = vkp_safetensors_metadata(f, want[i][0]);
    if (!v || strcmp(v, want[i][1])) fail_msg("%s: %s = %s, want %s", kohya, want[i][0], v ? v : "(none)", want[i][1]);
  }
  if (!vkp_safetensors_metadata(f, "ss_network_dim") || !vkp_safetensors_metadata(f, "ss_network_module"))
    fail_msg("%s: no ss_network_dim / ss_network_module", kohya);
  vkp_safetensors_free(f);
  free(base), free(a), free(b), free(c);
  if (!strcmp(tag, "lora")) check_sample_grids(dir, peft, 2, 4);
}

static void test_saved_formats_generate(void **state) {
  (void)state;
  check_formats("peft=[{\"method\":\"lora\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"to_q\",\"to_k\",\"to_v\",\"to_out.0\",\"conv1\"]}]",
                "lora", true);
  check_formats("peft=[{\"method\":\"lora\",\"r\":4,\"lora_alpha\":4,\"use_dora\":true,\"target_modules\":[\"to_q\",\"to_v\"]}]", "dora", true);
  check_formats("peft=[{\"method\":\"loha\",\"r\":4,\"alpha\":4,\"target_modules\":[\"to_q\",\"to_v\",\"conv2\"]}]", "loha", false);
}

// ---- (e) the latent cache ----------------------------------------------------------------------------

static void cache_counts(const char *const *extra, int n, int64_t *encoded, int64_t *reused) {
  char dir[400];
  out_path("cache_run", dir, sizeof dir);
  cJSON *cfg = config(dir, extra, n);
  vkp_diffusion_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_diffusion_trainer_new(vkp_test_ctx(), cfg, NULL, true, &t, &err)) fail_msg("%s", err.msg);
  vkp_diffusion_trainer_cache_counts(t, encoded, reused);
  vkp_diffusion_trainer_free(t);
  cJSON_Delete(cfg);
}

static void test_latent_cache(void **state) {
  (void)state;
  char c[400];
  snprintf(c, sizeof c, "data.cache_dir=%s/cache2", tmp_root);
  int64_t e, r;
  cache_counts((const char *const[]){c}, 1, &e, &r);
  assert_int_equal(e, N_IMAGES), assert_int_equal(r, 0);
  cache_counts((const char *const[]){c}, 1, &e, &r);
  assert_int_equal(e, 0), assert_int_equal(r, N_IMAGES);
  cache_counts((const char *const[]){c, "data.alpha=black"}, 2, &e, &r);   // another preprocessing
  assert_int_equal(e, N_IMAGES), assert_int_equal(r, 0);
  cache_counts((const char *const[]){c, "data.hflip=0.5"}, 2, &e, &r);     // flipped variants too
  assert_int_equal(e, N_IMAGES), assert_int_equal(r, 0);
}

// ---- (f) bad input -----------------------------------------------------------------------------------

// Exit status 2 and one line naming n1 (and n2).
static void test_bad_input(void **state) {
  (void)state;
  char args[3000], base[2000], bad[400], p[600];
  snprintf(base, sizeof base, "train --quiet --set task=diffusion --set model.pretrained=%s --set data.resolution=16 "
           "--set data.cache_dir=%s --set train.max_steps=1 --set output_dir=%s/bad_run", pipe_dir, cache_dir, tmp_root);
  // a caption file without its image
  snprintf(bad, sizeof bad, "%s/orphan/1_x", tmp_root);
  vkp_error err = {0};
  if (vkp_dir_create(bad, &err)) fail_msg("%s", err.msg);
  snprintf(p, sizeof p, "%s/a.png", bad);
  snprintf(args, sizeof args, "cp %s/2_shapes/img_0.png %s", pairs_dir, p);
  assert_int_equal(system(args), 0);
  snprintf(p, sizeof p, "%s/a.txt", bad), write_text(p, "a caption");
  snprintf(p, sizeof p, "%s/lonely.txt", bad), write_text(p, "a caption without an image");
  snprintf(args, sizeof args, "%s --set data.train=%s/orphan", base, tmp_root);
  vkp_cli_expect_bad(args, "lonely.txt", "without an image");
  // an image that does not decode
  snprintf(bad, sizeof bad, "%s/corrupt/1_x", tmp_root);
  if (vkp_dir_create(bad, &err)) fail_msg("%s", err.msg);
  snprintf(p, sizeof p, "%s/broken.png", bad), write_text(p, "this is not a PNG file");
  snprintf(p, sizeof p, "%s/broken.txt", bad), write_text(p, "a caption");
  snprintf(args, sizeof args, "%s --set data.train=%s/corrupt", base, tmp_root);
  vkp_cli_expect_bad(args, "broken.png", "data.train");
  // a resolution that is not a multiple of 8
  snprintf(args, sizeof args, "%s --set data.train=%s --set data.resolution=12", base, pairs_dir);
  vkp_cli_expect_bad(args, "data.resolution", "multiple of 8");
  // a LoRA target that matches nothing
  snprintf(args, sizeof args, "%s --set data.train=%s --set 'peft=[{\"method\":\"lora\",\"target_modules\":[\"no_such_module\"]}]'", base,
           pairs_dir);
  vkp_cli_expect_bad(args, "peft[0]", NULL);
  // an EMA decay outside [0, 1)
  snprintf(args, sizeof args, "%s --set data.train=%s --set train.ema_decay=1.5", base, pairs_dir);
  vkp_cli_expect_bad(args, "train.ema_decay", NULL);
  // nothing of the run was written
  snprintf(p, sizeof p, "%s/bad_run/config.json", tmp_root);
  if (!access(p, F_OK)) fail_msg("%s written by a run that failed its checks", p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_objective_reference), cmocka_unit_test(test_captions), cmocka_unit_test(test_loss_decreases),
      cmocka_unit_test(test_resume_exact),        cmocka_unit_test(test_saved_formats_generate),
      cmocka_unit_test(test_latent_cache),        cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, make_fixture, remove_fixture);
}
