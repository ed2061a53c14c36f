// test_generate.c — `vkpeft generate` against diffusers (../shared/fixtures/unet/sampling.safetensors):
// a pipeline folder of the fixture's unet/ + vae/ + a scheduler config, --tensors-in with the kohya
// LoRA, DDIM and Euler at 10 steps and CFG 5: final latents and the VAE decode within 1e-3
// (max |got - want| / max |want|); a PNG whose `parameters` chunk holds the settings; bad input;
// --prediction-type (epsilon = the config's, v_prediction changes the run).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vkp_parity.h"
#include "vkp_png.h"
#include "vkp_safetensors.h"
#include "generate_fixture.h"
#include "vkp_test.h"

static void check_sampler(void **state, const char *sampler, const char *sched, const char *prefix) {
  char dir[1024], out[1024], png[1024], args[6000];
  char pname[64];
  snprintf(pname, sizeof pname, "pipe_%s", sampler);
  gen_make_pipeline(state, pname, sched, false, dir, sizeof dir);
  snprintf(pname, sizeof pname, "%s.safetensors", sampler);
  vkp_test_dir_path(state, pname, out, sizeof out);
  snprintf(pname, sizeof pname, "%s.png", sampler);
  vkp_test_dir_path(state, pname, png, sizeof png);
  char fin[1024];
  snprintf(fin, sizeof fin, "%s", vkp_fixture_path("unet/sampling.safetensors"));
  snprintf(args, sizeof args,
           "generate --model %s --tensors-in %s --sampler %s --steps 10 --cfg 5 --seed 7 --lora %s --tensors-out %s "
           "--output %s",
           dir, fin, sampler, vkp_fixture_path("unet/lora/kohya.safetensors"), out, png);
  assert_int_equal(gen_run_cli(state, args), 0);
  vkp_safetensors *got, *want;
  vkp_error err = {0};
  if (vkp_safetensors_open(out, &got, &err)) fail_msg("%s", err.msg);
  if (vkp_safetensors_open(fin, &want, &err)) fail_msg("%s", err.msg);
  const char *keys[] = {"final_latents", "decoded"};
  for (int k = 0; k < 2; k++) {
    char wk[128], what[160];
    snprintf(wk, sizeof wk, "%s/%s", prefix, keys[k]);
    size_t n, m;
    float *g = vkp_fixture_tensor(got, keys[k], &n), *w = vkp_fixture_tensor(want, wk, &m);
    assert_int_equal(n, m);
    double amax = 0;
    for (size_t i = 0; i < n; i++) amax = fmax(amax, fabs((double)g[i] - w[i]));
    snprintf(what, sizeof what, "%s %s (max abs err %.3g)", sampler, keys[k], amax);
    vkp_check_rel(what, g, w, n, 1e-3);
    free(g), free(w);
  }
  vkp_safetensors_free(got);
  vkp_safetensors_free(want);
  // The PNG: 32x32 RGB with the settings in `parameters`.
  vkp_image *img = NULL;
  vkp_png_text *txt = NULL;
  int nt = 0;
  if (vkp_png_read(png, &img, &txt, &nt, &err)) fail_msg("%s", err.msg);
  assert_int_equal(img->width, 32);
  assert_int_equal(img->height, 32);
  assert_int_equal(img->channels, 3);
  const char *par = vkp_png_text_find(txt, nt, "parameters");
  assert_non_null(par);
  printf("  parameters: %s\n", par);
  char want_s[256];
  snprintf(want_s, sizeof want_s, "Steps: 10, Sampler: %s, CFG scale: 5, Seed: 7, Size: 32x32, Model: pipe_%s",
           strcmp(sampler, "ddim") ? "Euler" : "DDIM", sampler);
  assert_non_null(strstr(par, want_s));
  assert_non_null(strstr(par, "<lora:kohya:1>"));
  free(txt);
  vkp_image_free(img);
}

static void test_ddim(void **state) { check_sampler(state, "ddim", GEN_DDIM_CFG, "ddim10"); }
static void test_euler(void **state) { check_sampler(state, "euler", GEN_EULER_CFG, "euler10"); }

// Bad input: exit 2 with the file named.
static void test_errors(void **state) {
  char dir[1024], args[4096];
  gen_make_pipeline(state, "pipe_err", GEN_DDIM_CFG, false, dir, sizeof dir);
  snprintf(args, sizeof args, "generate --model %s --tensors-in %s --sampler nope --output x.png", dir,
           vkp_fixture_path("unet/sampling.safetensors"));
  assert_int_equal(gen_run_cli(state, args), 2);
  snprintf(args, sizeof args, "generate --model %s --tensors-in %s --tensors-out %s/o.safetensors", dir,
           vkp_fixture_path("unet/io.safetensors"), dir);
  assert_int_equal(gen_run_cli(state, args), 2);   // no sample/initial_latents
  snprintf(args, sizeof args, "generate --model %s/unet --tensors-in %s --tensors-out %s/o.safetensors", dir,
           vkp_fixture_path("unet/sampling.safetensors"), dir);
  assert_int_equal(gen_run_cli(state, args), 2);   // no model_index.json
}

// --prediction-type: epsilon is the config's (same latents), v_prediction changes the run.
static void test_prediction_type(void **state) {
  char dir[1024], args[4096], out[3][1024];
  gen_make_pipeline(state, "pipe_pred", GEN_EULER_CFG, false, dir, sizeof dir);
  const char *types[3] = {"", "--prediction-type epsilon", "--prediction-type v_prediction"};
  float *lat[3];
  size_t n[3];
  for (int k = 0; k < 3; k++) {
    char name[32];
    snprintf(name, sizeof name, "pred%d.safetensors", k);
    vkp_test_dir_path(state, name, out[k], sizeof out[k]);
    snprintf(args, sizeof args, "generate --model %s --tensors-in %s --sampler euler --steps 2 --cfg 5 %s --tensors-out %s",
             dir, vkp_fixture_path("unet/sampling.safetensors"), types[k], out[k]);
    assert_int_equal(gen_run_cli(state, args), 0);
    vkp_safetensors *sf;
    vkp_error err = {0};
    if (vkp_safetensors_open(out[k], &sf, &err)) fail_msg("%s", err.msg);
    lat[k] = vkp_fixture_tensor(sf, "final_latents", &n[k]);
    vkp_safetensors_free(sf);
  }
  assert_memory_equal(lat[0], lat[1], n[0] * sizeof(float));
  double diff = 0;
  for (size_t i = 0; i < n[0]; i++) diff = fmax(diff, fabs(lat[0][i] - lat[2][i]));
  printf("  v_prediction vs epsilon: final latents differ by up to %.3g\n", diff);
  assert_true(diff > 1e-2);
  for (int k = 0; k < 3; k++) free(lat[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ddim, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_euler, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_errors, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_prediction_type, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
