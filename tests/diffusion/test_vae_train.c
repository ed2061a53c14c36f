// test_vae_train.c — `vkpeft train` with "task": "vae" (a tiny AutoencoderKL from random weights on
// the six 16x16 RGBA shapes of train_fixture.h), and a diffusion run that assembles a pipeline from
// parts (the fixture's scheduler/, (c)'s VAE, the fixture CLIP's text tower) with a random-init UNet
// trained in full:
//   (a) one micro-batch's reconstruction (L1 and MSE) and KL terms against float64 sums of the
//       recorded pixels, posterior and reconstruction;
//   (b) the validation reconstruction loss falls by at least 2x in 60 steps;
//   (c) a run stopped after 4 steps and resumed ends with a bit-identical vae/ safetensors file;
//       gradient reaches the encoder and the decoder (Adam moments non-zero at both ends);
//       the saved folder loads with vkp_vae_load, carries the run's scaling_factor and encodes and
//       decodes exactly as the trained model;
//   (d) model.init.unet + model.vae + model.text_encoder with peft "full": pipeline/ is written and
//       `vkpeft generate` makes an image from it; the latent cache is keyed by model.vae;
//   (e) bad keys through the CLI: exit status 2 and the key named.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train_fixture.h"
#include "vkp_json.h"
#include "vkp_ops.h"
#include "vkp_vae_train.h"

static char vae_cfg[320];

static cJSON *vae_config(const char *out, const char *const *extra, int n_extra) {
  const char *sets[24] = {"data.resolution=16", "train.batch_size=3", "train.max_steps=8", "train.lr=0.003", "train.log_every=1",
                          "train.val_limit=6", "train.eval_batch=3"};
  int n = 7;
  char o[512], d[512];
  snprintf(o, sizeof o, "output_dir=%s", out);
  snprintf(d, sizeof d, "data.train=%s", pairs_dir);
  sets[n++] = o, sets[n++] = d;
  for (int i = 0; i < n_extra; i++) sets[n++] = extra[i];
  cJSON *cfg = NULL;
  vkp_error err = {0};
  if (vkp_vae_train_config(vae_cfg, sets, n, &cfg, &err)) fail_msg("config: %s", err.msg);
  return cfg;
}

// ---- (a) the loss terms against float64 --------------------------------------------------------------

static void check_terms(bool l1) {
  char out[400];
  out_path(l1 ? "terms_l1" : "terms_mse", out, sizeof out);
  const char *extra[] = {l1 ? "train.recon_loss=l1" : "train.recon_loss=mse", "train.kl_weight=0.01"};
  cJSON *cfg = vae_config(out, extra, 2);
  vkp_vae_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_vae_trainer_new(vkp_test_ctx(), cfg, NULL, true, &t, &err)) fail_msg("%s", err.msg);
  vkp_vae_trainer_record(t, true);
  double loss;
  if (vkp_vae_trainer_step(t, &loss, &err)) fail_msg("%s", err.msg);
  const vkp_vae_batch_record *r = vkp_vae_trainer_last_batch(t);
  assert_int_equal(r->n, 3);
  size_t np = (size_t)r->n * 3 * r->height * r->width, per = (size_t)r->latent_c * r->latent_h * r->latent_w;
  double rec = 0, kl = 0;
  for (size_t i = 0; i < np; i++) {
    double d = (double)r->recon[i] - (double)r->pixels[i];
    rec += l1 ? fabs(d) : d * d;
  }
  rec /= (double)np;
  for (size_t i = 0; i < (size_t)r->n * per; i++) {
    double m = r->mean[i], lv = r->logvar[i];
    kl += 0.5 * (m * m + exp(lv) - 1 - lv);
  }
  kl /= r->n;
  printf("    %s: rec %.6f (graph %.6f), kl %.4f (graph %.4f), loss %.6f\n", l1 ? "l1" : "mse", rec, r->rec, kl, r->kl, r->loss);
  assert_true(fabs(r->rec - rec) <= 1e-5 * fabs(rec) + 1e-7);
  assert_true(fabs(r->kl - kl) <= 1e-4 * fabs(kl) + 1e-4);
  assert_true(fabs(r->loss - (rec + 0.01 * kl)) <= 1e-4 * fabs(rec + 0.01 * kl));
  assert_true(kl > 0);
  vkp_vae_trainer_free(t);
  cJSON_Delete(cfg);
}

static void test_loss_terms(void **state) {
  (void)state;
  check_terms(true);
  check_terms(false);
}

// ---- (b) it learns --------------------------------------------------------------------------------------

static void test_learns(void **state) {
  (void)state;
  char out[400];
  out_path("learn", out, sizeof out);
  const char *extra[] = {"train.max_steps=60", "train.batch_size=6"};
  cJSON *cfg = vae_config(out, extra, 2);
  vkp_vae_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_vae_trainer_new(vkp_test_ctx(), cfg, NULL, true, &t, &err)) fail_msg("%s", err.msg);
  double before, after;
  if (vkp_vae_trainer_val_rec(t, &before, &err)) fail_msg("%s", err.msg);
  vkp_vae_train_summary s;
  if (vkp_vae_trainer_run(t, &s, &err)) fail_msg("%s", err.msg);
  if (vkp_vae_trainer_val_rec(t, &after, &err)) fail_msg("%s", err.msg);
  printf("    validation L1 %.4f -> %.4f in %lld steps (%.1f s, %.1f images/s); scaling_factor %.4f\n", before, after,
         (long long)s.steps, s.seconds, s.images_per_s, s.scaling_factor);
  assert_true(after < before / 2);
  assert_true(s.scaling_factor > 0 && isfinite(s.scaling_factor));
  vkp_vae_trainer_free(t);
  cJSON_Delete(cfg);
}

// ---- (c) resume, the saved folder -------------------------------------------------------------------

static void read_all(const char *path, char **buf, size_t *len) {
  vkp_error err = {0};
  if (vkp_file_read_all(path, (size_t)1 << 28, buf, len, &err)) fail_msg("%s", err.msg);
}

// encode → mean → decode of x (1, 3, R, R) with v, into mean / image.
static void roundtrip(vkp_vae *v, const float *x, float *mean, float *image, size_t nl) {
  vkp_graph *g = NULL;
  assert_int_equal(vkp_graph_new(vkp_test_ctx(), &g), 0);
  vkp_tensor *in = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){1, 3, RES, RES}), *m, *lv, *out;
  v->model->training = false;
  assert_int_equal(vkp_vae_encode(v, g, in, &m, &lv), 0);
  assert_int_equal(vkp_vae_decode(v, g, m, &out), 0);
  vkp_graph_output(g, m);
  vkp_graph_output(g, out);
  assert_int_equal(vkp_graph_compile(g), 0);
  assert_int_equal(vkp_graph_set_input(g, in, x, 3 * RES * RES * sizeof(float)), 0);
  assert_int_equal(vkp_graph_run(g), 0);
  assert_int_equal(vkp_graph_read(g, m, mean, nl * sizeof(float)), 0);
  assert_int_equal(vkp_graph_read(g, out, image, 3 * RES * RES * sizeof(float)), 0);
  vkp_graph_free(g);
}

static void test_resume_and_folder(void **state) {
  (void)state;
  char a[400], b[400], pa[500], pb[500];
  out_path("straight", a, sizeof a);
  out_path("resumed", b, sizeof b);
  const char *every[] = {"train.checkpoint_every=4"}, *stop[] = {"train.checkpoint_every=4", "train.stop_after=4"};
  cJSON *ca = vae_config(a, every, 1), *cb = vae_config(b, stop, 2);
  vkp_error err = {0};
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vae_trainer *t = NULL;
  vkp_vae_train_summary sa, sb;
  if (vkp_vae_trainer_new(ctx, ca, NULL, true, &t, &err) || vkp_vae_trainer_run(t, &sa, &err)) fail_msg("%s", err.msg);
  if (vkp_vae_train(ctx, cb, NULL, true, &sb, &err)) fail_msg("%s", err.msg);
  assert_int_equal(sb.steps, 4);
  // Resume must not see stop_after again: it is in config.json, so clear it there.
  cJSON *saved = NULL;
  snprintf(pb, sizeof pb, "%s/config.json", b);
  if (vkp_config_resolve(vkp_vae_train_defaults, pb, (const char *const[]){"train.stop_after=0"}, 1, &saved, &err) ||
      vkp_json_write_atomic(pb, saved, &err))
    fail_msg("%s", err.msg);
  cJSON_Delete(saved);
  if (vkp_vae_train(ctx, NULL, b, true, &sb, &err)) fail_msg("%s", err.msg);
  assert_int_equal(sb.steps, 8);
  snprintf(pa, sizeof pa, "%s/vae/diffusion_pytorch_model.safetensors", a);
  snprintf(pb, sizeof pb, "%s/vae/diffusion_pytorch_model.safetensors", b);
  char *ba, *bb;
  size_t la, lb;
  read_all(pa, &ba, &la);
  read_all(pb, &bb, &lb);
  assert_int_equal(la, lb);
  assert_memory_equal(ba, bb, la);
  free(ba), free(bb);
  assert_true(sa.scaling_factor == sb.scaling_factor);
  // Every part trained: Adam's second moments are non-zero at both ends of the encoder and decoder.
  snprintf(pa, sizeof pa, "%s/checkpoints/step-00000008/optimizer.safetensors", a);
  vkp_safetensors *opt = NULL;
  if (vkp_safetensors_open(pa, &opt, &err)) fail_msg("%s", err.msg);
  const char *probe[] = {"encoder.conv_in.weight.exp_avg_sq", "quant_conv.weight.exp_avg_sq", "post_quant_conv.weight.exp_avg_sq",
                         "decoder.conv_out.weight.exp_avg_sq"};
  for (int i = 0; i < 4; i++) {
    const vkp_st_tensor *st = vkp_safetensors_find(opt, probe[i]);
    if (!st) fail_msg("%s: no %s", pa, probe[i]);
    size_t n = vkp_st_tensor_numel(st);
    float *v = malloc(n * sizeof *v);
    if (vkp_safetensors_read_f32(opt, probe[i], v, n, &err)) fail_msg("%s", err.msg);
    double sum = 0;
    for (size_t k = 0; k < n; k++) sum += v[k];
    free(v);
    if (!(sum > 0)) fail_msg("%s: %s sums to %g (no gradient reached it)", pa, probe[i], sum);
  }
  vkp_safetensors_free(opt);
  // The folder: loads, carries the scaling factor, encodes and decodes as the trained model does.
  snprintf(pa, sizeof pa, "%s/vae", a);
  vkp_vae *loaded = NULL;
  if (vkp_vae_load(ctx, pa, true, &loaded, &err)) fail_msg("%s", err.msg);
  assert_true(loaded->cfg.scaling_factor == (float)sa.scaling_factor);
  size_t nl = (size_t)loaded->cfg.latent_channels * (RES / 2) * (RES / 2);
  float x[3 * RES * RES], img1[3 * RES * RES], img2[3 * RES * RES], *m1 = malloc(nl * 4), *m2 = malloc(nl * 4);
  for (int i = 0; i < 3 * RES * RES; i++) x[i] = (float)sin(0.37 * i);
  roundtrip(vkp_vae_trainer_model(t), x, m1, img1, nl);
  roundtrip(loaded, x, m2, img2, nl);
  assert_memory_equal(m1, m2, nl * sizeof(float));
  assert_memory_equal(img1, img2, sizeof img1);
  free(m1), free(m2);
  snprintf(pa, sizeof pa, "%s/reconstructions.png", a);
  vkp_image *grid = read_png(pa);
  assert_int_equal(grid->width, 6 * RES);
  assert_int_equal(grid->height, 2 * RES);
  vkp_image_free(grid);
  vkp_vae_free(loaded);
  vkp_vae_trainer_free(t);
  cJSON_Delete(ca), cJSON_Delete(cb);
}

// ---- (d) a pipeline from parts, random UNet trained in full ------------------------------------------

// A diffusion run of 3 steps from parts: a random UNet trained in full on `vae` (a vae/ folder),
// the fixture CLIP's text tower, the fixture pipeline's scheduler/, latents cached in tmp_root/cache.
static vkp_diffusion_train_summary train_unet(const char *tag, const char *vae) {
  char out[400], s_out[520], s_data[520], s_pre[520], s_vae[620], s_te[700], s_cache[520], cfg_path[500];
  out_path(tag, out, sizeof out);
  snprintf(s_out, sizeof s_out, "output_dir=%s", out);
  snprintf(s_data, sizeof s_data, "data.train=%s", pairs_dir);
  snprintf(s_pre, sizeof s_pre, "model.pretrained=%s", pipe_dir);   // its scheduler/; the parts come from the keys below
  snprintf(s_vae, sizeof s_vae, "model.vae=%s", vae);
  snprintf(s_te, sizeof s_te, "model.text_encoder=%s", vkp_fixture_path("clip/model"));
  snprintf(s_cache, sizeof s_cache, "data.cache_dir=%s/cache", tmp_root);
  const char *sets[] = {s_out, s_data, s_pre, s_vae, s_te, s_cache, "data.resolution=16", "train.batch_size=2", "train.max_steps=3",
                        "train.lr=0.001", "train.val_limit=2", "train.eval_batch=2"};
  snprintf(cfg_path, sizeof cfg_path, "%s/unet_full.json", tmp_root);
  write_text(cfg_path,
             "{\"task\": \"diffusion\", \"peft\": [{\"method\": \"full\"}], \"save\": {\"formats\": [\"peft\"]},"
             " \"model\": {\"init\": {\"unet\": {\"block_out_channels\": [16, 32], \"layers_per_block\": 1, \"norm_num_groups\": 8,"
             " \"cross_attention_dim\": 32, \"attention_head_dim\": 2, \"sample_size\": 8,"
             " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}}}}");
  cJSON *cfg = NULL;
  vkp_error err = {0};
  if (vkp_diffusion_train_config(cfg_path, sets, (int)(sizeof sets / sizeof *sets), &cfg, &err)) fail_msg("%s", err.msg);
  vkp_diffusion_train_summary s;
  if (vkp_diffusion_train(vkp_test_ctx(), cfg, NULL, true, &s, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(cfg);
  assert_int_equal(s.steps, 3);
  assert_true(s.trainable_params == s.total_params);
  assert_true(isfinite(s.final_loss));
  return s;
}

static void test_unet_full_pipeline(void **state) {
  (void)state;
  char straight[500], learn[500], args[2000], png[500];
  snprintf(straight, sizeof straight, "%s/straight/vae", tmp_root);   // (c)'s VAE: 16x16 -> 4x8x8
  snprintf(learn, sizeof learn, "%s/learn/vae", tmp_root);            // (b)'s, the same shape
  vkp_diffusion_train_summary a = train_unet("unet_full", straight), b = train_unet("unet_other_vae", learn),
                              c = train_unet("unet_again", straight);
  // The latent cache is keyed by model.vae: another VAE encodes again, the same one reuses.
  assert_true(a.latents_encoded > 0 && b.latents_encoded == a.latents_encoded);
  assert_int_equal(c.latents_encoded, 0);
  assert_int_equal(c.latents_reused, a.latents_encoded);
  snprintf(png, sizeof png, "%s/generated.png", tmp_root);
  snprintf(args, sizeof args, "generate --model %s/unet_full/pipeline --prompt 'vertical stripes' --steps 2 --seed 1 --output %s",
           tmp_root, png);
  vkp_cli_expect(args, 0, NULL);
  vkp_image *img = read_png(png);
  assert_int_equal(img->width, RES);
  vkp_image_free(img);
}

// ---- (e) bad input: one line naming the key, exit status 2 ---------------------------------------------

static void test_bad_input(void **state) {
  (void)state;
  char args[1200];
  snprintf(args, sizeof args, "train %s --set data.train=%s --set train.recon_loss=l3 --set output_dir=%s/bad --quiet", vae_cfg,
           pairs_dir, tmp_root);
  vkp_cli_expect(args, 2, "train.recon_loss");
  snprintf(args, sizeof args, "train %s --set data.train=%s --set data.resolution=9 --set output_dir=%s/bad --quiet", vae_cfg,
           pairs_dir, tmp_root);
  vkp_cli_expect(args, 2, "data.resolution");
  snprintf(args, sizeof args, "train --set task=vae --set data.train=%s --set 'model.init={\"block_out_channels\": 3}' --quiet",
           pairs_dir);
  vkp_cli_expect(args, 2, "block_out_channels");
}

// train_fixture.h's folder, and the tiny VAE's config (factor 2: 16x16 -> 4x8x8).
static int vae_fixture(void **state) {
  if (make_fixture(state)) return -1;
  snprintf(vae_cfg, sizeof vae_cfg, "%s/vae.json", tmp_root);
  write_text(vae_cfg, "{\"task\": \"vae\", \"model\": {\"init\": {\"block_out_channels\": [8, 16], \"layers_per_block\": 1,"
                      " \"norm_num_groups\": 4, \"latent_channels\": 4, \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],"
                      " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}}}");
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loss_terms),
      cmocka_unit_test(test_learns),
      cmocka_unit_test(test_resume_and_folder),
      cmocka_unit_test(test_unet_full_pipeline),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, vae_fixture, remove_fixture);
}
