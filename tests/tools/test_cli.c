// test_cli.c — the vkpeft program as users meet it: exit status 0 on success and 2 on bad input,
// one clear line naming the file and the field, and files already written left intact.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vkp_cli_run.h"
#include "vkp_parity.h"
#include "vkp_safetensors.h"
#include "vkp_adapter_format.h"
#include "vkp_test.h"
#include "vkp_unet.h"

static char tmp[256];

static void test_usage_and_devices(void **state) {
  (void)state;
  vkp_cli_expect("", 2, "usage");
  vkp_cli_expect("no-such-command", 2, "unknown command");
  vkp_cli_expect("--help", 0, "commands:");
  vkp_cli_expect("devices", 0, "llvmpipe");
  vkp_cli_expect("devices --json", 0, "\"subgroup_size\"");
}

static void test_bad_configs(void **state) {
  (void)state;
  char cfg[600], args[1400];
  vkp_cli_expect("train --set train.lr=abc", 2, "train.lr");
  vkp_cli_expect("train --set no.such.key=1", 2, "unknown key 'no.such.key'");
  vkp_cli_expect("train --set peft.3.r=16", 2, "not an index");
  vkp_cli_expect("train --set peft.0.r=16 --set train.lr=-1", 2, "train.lr");
  // Config keys are checked before any data loads: a bad key is named even with missing data.
  vkp_cli_expect("train --set data.train=/nonexistent/images/ --set train.beta2=2", 2, "train.beta2");
  vkp_cli_expect("train /nonexistent/config.json", 2, "/nonexistent/config.json");
  snprintf(cfg, sizeof cfg, "%s/bad.json", tmp);
  FILE *f = fopen(cfg, "w");
  fputs("{\"train\": {\"batch_size\": \"big\"}}", f);
  fclose(f);
  snprintf(args, sizeof args, "train %s", cfg);
  vkp_cli_expect(args, 2, "train.batch_size");
  f = fopen(cfg, "w");
  fputs("{\"train\": {\"lr\": 0.1,}", f);
  fclose(f);
  vkp_cli_expect(args, 2, "not valid JSON");
  vkp_cli_expect("train --set 'peft=[{\"method\":\"lora\",\"r\":\"four\"}]' --set train.max_steps=1", 2, "'r'");
  vkp_cli_expect("train --set 'peft=[{\"method\":\"lora\",\"target_modules\":[\"nothing_like_this\"]}]' --set train.max_steps=1",
         2, "no module matches");
  vkp_cli_expect("train --set 'peft=[{\"method\":\"telepathy\"}]' --set train.max_steps=1", 2, "unknown method");
}

static void test_forward_parity_and_errors(void **state) {
  (void)state;
  char args[2048], out[400];
  snprintf(out, sizeof out, "%s/fw.safetensors", tmp);
  snprintf(args, sizeof args, "forward --model %s/vit/model --adapter %s/vit/adapters/ia3 --inputs %s/vit/io.safetensors --output %s --loss",
           VKP_FIXTURES_DIR, VKP_FIXTURES_DIR, VKP_FIXTURES_DIR, out);
  vkp_cli_expect(args, 0, NULL);
  vkp_safetensors *st;
  vkp_error err = {0};
  if (vkp_safetensors_open(out, &st, &err)) fail_msg("%s", err.msg);
  assert_non_null(vkp_safetensors_find(st, "logits"));
  assert_non_null(vkp_safetensors_find(st, "hidden_states/2"));
  assert_non_null(vkp_safetensors_find(st, "grad/base_model.model.vit.layers.0.mlp.fc2.ia3_l.default"));
  vkp_safetensors_free(st);
  struct stat before, after;
  stat(out, &before);
  // A corrupt inputs file: exit 2 naming it, and the existing output stays as it was.
  char bad[400];
  snprintf(bad, sizeof bad, "%s/corrupt.safetensors", tmp);
  FILE *f = fopen(bad, "wb");
  fputs("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\":1}}", f);
  fclose(f);
  snprintf(args, sizeof args, "forward --model %s/vit/model --inputs %s --output %s", VKP_FIXTURES_DIR, bad, out);
  vkp_cli_expect(args, 2, "corrupt.safetensors");
  // An adapter whose tensors do not fit the model (CLIP's LoRA on the ViT): exit 2.
  snprintf(args, sizeof args, "forward --model %s/vit/model --adapter %s/clip/adapters/lora --inputs %s/vit/io.safetensors --output %s",
           VKP_FIXTURES_DIR, VKP_FIXTURES_DIR, VKP_FIXTURES_DIR, out);
  int rc = vkp_cli_run(args);
  if (rc != 2) fail_msg("mismatched adapter: exit %d: %s", rc, vkp_cli_output());
  stat(out, &after);
  assert_int_equal(before.st_size, after.st_size);
  assert_int_equal(before.st_mtime, after.st_mtime);
  snprintf(args, sizeof args, "eval --model /nonexistent/model --data fashion-mnist:test");
  vkp_cli_expect(args, 2, "/nonexistent/model");
  snprintf(args, sizeof args, "eval --model %s/vit/model --data /nonexistent/images/", VKP_FIXTURES_DIR);
  vkp_cli_expect(args, 2, "nonexistent");
}

// CLIP through the program: `forward` on the fixture's CLIPModel matches transformers, `info`
// describes it, a text-only input runs the text tower alone, bad ids are refused.
static void test_clip_forward(void **state) {
  (void)state;
  char args[2048], out[400], bad[400];
  snprintf(out, sizeof out, "%s/clip.safetensors", tmp);
  snprintf(args, sizeof args, "forward --model %s/clip/model --inputs %s/clip/io.safetensors --output %s --loss", VKP_FIXTURES_DIR,
           VKP_FIXTURES_DIR, out);
  vkp_cli_expect(args, 0, NULL);
  vkp_safetensors *got, *want;
  vkp_error err = {0};
  snprintf(args, sizeof args, "%s/clip/io.safetensors", VKP_FIXTURES_DIR);
  if (vkp_safetensors_open(out, &got, &err) || vkp_safetensors_open(args, &want, &err)) fail_msg("%s", err.msg);
  const char *names[] = {"text_embeds", "image_embeds", "logits_per_image", "loss"};
  for (int i = 0; i < 4; i++) {
    size_t n, m;
    float *g = vkp_fixture_tensor(got, names[i], &n), *w = vkp_fixture_tensor(want, names[i], &m);
    assert_int_equal(n, m);
    vkp_check_rel(names[i], g, w, n, 1e-4);
    free(g), free(w);
  }
  assert_non_null(vkp_safetensors_find(got, "text_hidden_states/2"));
  assert_non_null(vkp_safetensors_find(got, "vision_hidden_states/2"));
  vkp_safetensors_free(got);
  vkp_safetensors_free(want);
  snprintf(args, sizeof args, "info --model %s/clip/model", VKP_FIXTURES_DIR);
  vkp_cli_expect(args, 0, "CLIPModel, text: vocab 49408, hidden 32, 2 layers");
  // ids outside the vocabulary: exit 2 naming the entry.
  snprintf(bad, sizeof bad, "%s/bad_ids.safetensors", tmp);
  vkp_safetensors_writer *w;
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  float ids[2 * 4] = {49406, 320, 1125, 49407, 49406, 60000, 49407, 49407};
  if (vkp_safetensors_writer_add_f32(w, "input_ids", VKP_DTYPE_F32, 2, (int64_t[]){2, 4}, ids, &err) ||
      vkp_safetensors_writer_save(w, bad, &err))
    fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  snprintf(args, sizeof args, "forward --model %s/clip/model --inputs %s --output %s", VKP_FIXTURES_DIR, bad, out);
  vkp_cli_expect(args, 2, "input_ids[1][1] = 60000 is outside the vocabulary");
  // The same rows with a valid id: the text tower runs alone (no pixel_values), no image outputs.
  ids[5] = 320;
  if (vkp_safetensors_writer_new(&w, &err) ||
      vkp_safetensors_writer_add_f32(w, "input_ids", VKP_DTYPE_F32, 2, (int64_t[]){2, 4}, ids, &err) ||
      vkp_safetensors_writer_save(w, bad, &err))
    fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_cli_expect(args, 0, NULL);
  if (vkp_safetensors_open(out, &got, &err)) fail_msg("%s", err.msg);
  assert_non_null(vkp_safetensors_find(got, "text_embeds"));
  assert_null(vkp_safetensors_find(got, "image_embeds"));
  vkp_safetensors_free(got);
}

// Subcommands dispatch on the checkpoint's model type: a model of no registered family is named in
// the error (not a misleading key error of another family's config), exit 2.
static void test_model_families(void **state) {
  (void)state;
  char args[1400], dir[400], out[400];
  snprintf(out, sizeof out, "%s/fam.safetensors", tmp);
  snprintf(dir, sizeof dir, "%s/flux", tmp);
  mkdir(dir, 0755);
  snprintf(args, sizeof args, "%s/config.json", dir);
  FILE *f = fopen(args, "w");
  fputs("{\"_class_name\": \"FluxTransformer2DModel\", \"in_channels\": 64}", f);
  fclose(f);
  snprintf(args, sizeof args, "forward --model %s --inputs %s/unet/io.safetensors --output %s", dir, VKP_FIXTURES_DIR, out);
  vkp_cli_expect(args, 2, "unsupported model: FluxTransformer2DModel");
  snprintf(args, sizeof args, "info --model %s", dir);
  vkp_cli_expect(args, 2, "unsupported model: FluxTransformer2DModel");
  snprintf(dir, sizeof dir, "%s/typeless", tmp);
  mkdir(dir, 0755);
  snprintf(args, sizeof args, "%s/config.json", dir);
  f = fopen(args, "w");
  fputs("{\"hidden_size\": 8}", f);
  fclose(f);
  snprintf(args, sizeof args, "info --model %s", dir);
  vkp_cli_expect(args, 2, "no 'model_type' or '_class_name'");
  f = fopen(strcat(strcpy(out, dir), "/config.json"), "w");
  fputs("{\"model_type\": \"vit\"} trailing", f);
  fclose(f);
  vkp_cli_expect(args, 2, "trailing text after the JSON document");
  snprintf(args, sizeof args, "info --model %s/vit/model", VKP_FIXTURES_DIR);
  vkp_cli_expect(args, 0, "ViTForImageClassification, image 32, patch 8");
  snprintf(args, sizeof args, "info --model %s", tmp);
  vkp_cli_expect(args, 2, "not a model folder");
}

// Compares tensor `name` of two safetensors files (rows [first, first + n) of `want` when n > 0).
static void compare_tensor(vkp_safetensors *got, vkp_safetensors *want, const char *name, size_t first, size_t n, double tol) {
  size_t ng, nw;
  float *g = vkp_fixture_tensor(got, name, &ng), *w = vkp_fixture_tensor(want, name, &nw);
  if (!n) {
    assert_int_equal(ng, nw);
    n = nw;
  }
  assert_int_equal(ng, n);
  vkp_check_rel(name, g, w + first, n, tol);
  free(g), free(w);
}

// diffusers' UNet and VAE through the program: `forward` on the fixture folders matches diffusers,
// `info` describes them, a single timestep serves the batch.
static void test_diffusion_forward(void **state) {
  (void)state;
  char args[2048], out[400], in[400];
  vkp_safetensors *got, *want;
  vkp_error err = {0};
  snprintf(out, sizeof out, "%s/unet.safetensors", tmp);
  snprintf(args, sizeof args, "forward --model %s/unet/unet --inputs %s/unet/io.safetensors --output %s", VKP_FIXTURES_DIR,
           VKP_FIXTURES_DIR, out);
  vkp_cli_expect(args, 0, NULL);
  snprintf(in, sizeof in, "%s/unet/io.safetensors", VKP_FIXTURES_DIR);
  if (vkp_safetensors_open(out, &got, &err) || vkp_safetensors_open(in, &want, &err)) fail_msg("%s", err.msg);
  compare_tensor(got, want, "noise_pred", 0, 0, 1e-4);
  vkp_safetensors_free(got);
  // The VAE folder on the same file: encodes vae_in, decodes sample.
  snprintf(args, sizeof args, "forward --model %s/unet/vae --inputs %s/unet/io.safetensors --output %s", VKP_FIXTURES_DIR,
           VKP_FIXTURES_DIR, out);
  vkp_cli_expect(args, 0, NULL);
  if (vkp_safetensors_open(out, &got, &err)) fail_msg("%s", err.msg);
  compare_tensor(got, want, "vae_mean", 0, 0, 1e-4);
  compare_tensor(got, want, "vae_logvar", 0, 0, 1e-4);
  compare_tensor(got, want, "vae_decoded", 0, 0, 1e-4);
  vkp_safetensors_free(got);
  // Batch item 0 alone with its timestep as a scalar (shape []): noise_pred[0].
  size_t n;
  float *sample = vkp_fixture_tensor(want, "sample", &n), *ctx = vkp_fixture_tensor(want, "encoder_hidden_states", &n);
  float t = 10;
  vkp_safetensors_writer *w;
  snprintf(in, sizeof in, "%s/unet_t.safetensors", tmp);
  if (vkp_safetensors_writer_new(&w, &err) ||
      vkp_safetensors_writer_add_f32(w, "sample", VKP_DTYPE_F32, 4, (int64_t[]){1, 4, 16, 16}, sample, &err) ||
      vkp_safetensors_writer_add_f32(w, "timestep", VKP_DTYPE_F32, 0, (int64_t[]){1}, &t, &err) ||
      vkp_safetensors_writer_add_f32(w, "encoder_hidden_states", VKP_DTYPE_F32, 3, (int64_t[]){1, 8, 32}, ctx, &err) ||
      vkp_safetensors_writer_save(w, in, &err))
    fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  free(sample), free(ctx);
  snprintf(args, sizeof args, "forward --model %s/unet/unet --inputs %s --output %s", VKP_FIXTURES_DIR, in, out);
  vkp_cli_expect(args, 0, NULL);
  if (vkp_safetensors_open(out, &got, &err)) fail_msg("%s", err.msg);
  compare_tensor(got, want, "noise_pred", 0, 4 * 16 * 16, 1e-4);
  vkp_safetensors_free(got);
  vkp_safetensors_free(want);
  // Missing inputs name the tensor; info describes both folders.
  snprintf(args, sizeof args, "forward --model %s/unet/unet --inputs %s/clip/io.safetensors --output %s", VKP_FIXTURES_DIR,
           VKP_FIXTURES_DIR, out);
  vkp_cli_expect(args, 2, "no tensor 'sample'");
  snprintf(args, sizeof args, "info --model %s/unet/unet", VKP_FIXTURES_DIR);
  vkp_cli_expect(args, 0, "UNet2DConditionModel, 4 -> 4 channels, blocks 32 (cross-attn) / 64");
  snprintf(args, sizeof args, "info --model %s/unet/vae", VKP_FIXTURES_DIR);
  vkp_cli_expect(args, 0, "AutoencoderKL, 3 -> 4 latent channels (x2 downsampling)");
}

// LoRA files as users have them: `forward --adapter` with the fixture's kohya file, its diffusers
// file (no alpha stored: diffusers loads it at scale 1, so `:2` gives alpha 8 / r 4) and an HF PEFT
// folder written from the same post-step tensors all give the same noise_pred; bad files exit 2
// with a one-line error naming the file and the key.
static void test_diffusion_lora_files(void **state) {
  (void)state;
  char args[2048], out[3][400], peft[400], bad[400];
  const char *adapters[3] = {"kohya.safetensors", "pytorch_lora_weights.safetensors:2", NULL};
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_unet *u = NULL;
  char dir[600], kpath[600];
  snprintf(dir, sizeof dir, "%s/unet/unet", VKP_FIXTURES_DIR);
  snprintf(kpath, sizeof kpath, "%s/unet/lora/kohya.safetensors", VKP_FIXTURES_DIR);
  snprintf(peft, sizeof peft, "%s/lora_peft", tmp);
  vkp_adapter *a = NULL;
  if (vkp_unet_load(ctx, dir, NULL, &u, &err)) fail_msg("%s", err.msg);
  VKP_ASSERT_OK(ctx, vkp_adapter_load(u->model, kpath, &a));
  VKP_ASSERT_OK(ctx, vkp_adapter_save_format(u->model, a, peft, "peft"));
  vkp_unet_free(u);
  for (int i = 0; i < 3; i++) {
    snprintf(out[i], sizeof out[i], "%s/lora_%d.safetensors", tmp, i);
    if (i < 2)
      snprintf(args, sizeof args, "forward --model %s --adapter %s/unet/lora/%s --inputs %s/unet/io.safetensors --output %s", dir,
               VKP_FIXTURES_DIR, adapters[i], VKP_FIXTURES_DIR, out[i]);
    else
      snprintf(args, sizeof args, "forward --model %s --adapter %s --inputs %s/unet/io.safetensors --output %s", dir, peft,
               VKP_FIXTURES_DIR, out[i]);
    vkp_cli_expect(args, 0, NULL);
  }
  vkp_safetensors *g[3];
  for (int i = 0; i < 3; i++)
    if (vkp_safetensors_open(out[i], &g[i], &err)) fail_msg("%s", err.msg);
  size_t n0, n1, n2;
  float *p0 = vkp_fixture_tensor(g[0], "noise_pred", &n0), *p1 = vkp_fixture_tensor(g[1], "noise_pred", &n1),
        *p2 = vkp_fixture_tensor(g[2], "noise_pred", &n2);
  assert_int_equal(n0, n1);
  assert_int_equal(n0, n2);
  double d01 = 0, d02 = 0;
  for (size_t i = 0; i < n0; i++) d01 = fmax(d01, fabs(p0[i] - p1[i])), d02 = fmax(d02, fabs(p0[i] - p2[i]));
  printf("  noise_pred: max |kohya - diffusers:2| = %g, max |kohya - HF PEFT folder| = %g\n", d01, d02);
  assert_true(d01 == 0);
  assert_true(d02 < 1e-5);
  free(p0), free(p1), free(p2);
  for (int i = 0; i < 3; i++) vkp_safetensors_free(g[i]);
  // A key for a module that does not exist: exit 2, the file and the key named.
  snprintf(bad, sizeof bad, "%s/bad_lora.safetensors", tmp);
  vkp_safetensors_writer *w;
  float v[4 * 32] = {0};
  if (vkp_safetensors_writer_new(&w, &err) ||
      vkp_safetensors_writer_add_f32(w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight",
                                     VKP_DTYPE_F32, 2, (int64_t[]){4, 32}, v, &err) ||
      vkp_safetensors_writer_add_f32(w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight",
                                     VKP_DTYPE_F32, 2, (int64_t[]){32, 2}, v, &err) ||
      vkp_safetensors_writer_save(w, bad, &err))
    fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  snprintf(args, sizeof args, "forward --model %s --adapter %s --inputs %s/unet/io.safetensors --output %s", dir, bad,
           VKP_FIXTURES_DIR, out[0]);
  vkp_cli_expect(args, 2, "bad_lora.safetensors: rank mismatch: 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight' has rank 4");
  if (vkp_safetensors_writer_new(&w, &err) ||
      vkp_safetensors_writer_add_f32(w, "lora_unet_down_blocks_5_attn1_to_q.lora_down.weight", VKP_DTYPE_F32, 2, (int64_t[]){4, 32}, v, &err) ||
      vkp_safetensors_writer_save(w, bad, &err))
    fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_cli_expect(args, 2, "bad_lora.safetensors: no key names a module of the model (1 keys; the first: 'lora_unet_down_blocks_5_attn1_to_q.lora_down.weight')");
  snprintf(args, sizeof args, "info --model %s --adapter %s/unet/lora/kohya.safetensors:0.5", dir, VKP_FIXTURES_DIR);
  vkp_cli_expect(args, 0, "lora");
}

static int setup(void **state) {
  (void)state;
  snprintf(tmp, sizeof tmp, "/tmp/vkpeft-test-cli-XXXXXX");
  return mkdtemp(tmp) ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_usage_and_devices), cmocka_unit_test(test_bad_configs),
                                     cmocka_unit_test(test_forward_parity_and_errors), cmocka_unit_test(test_model_families),
                                     cmocka_unit_test(test_clip_forward), cmocka_unit_test(test_diffusion_forward),
                                     cmocka_unit_test(test_diffusion_lora_files)};
  return cmocka_run_group_tests(tests, setup, NULL);
}
