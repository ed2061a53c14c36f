// test_generate.c — `vkpeft generate` against diffusers (../shared/fixtures/unet/sampling.safetensors):
// a pipeline folder of the fixture's unet/ + vae/ + a scheduler config, --tensors-in with the kohya
// LoRA, DDIM and Euler at 10 steps and CFG 5: final latents and the VAE decode within 1e-3
// (max |got - want| / max |want|); and a PNG whose `parameters` chunk holds the settings.
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
#include "vkp_test.h"

static const char *DDIM_CFG =
    "{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 1000, \"beta_start\": 0.00085, \"beta_end\": 0.012,"
    " \"beta_schedule\": \"scaled_linear\", \"clip_sample\": false, \"set_alpha_to_one\": false, \"steps_offset\": 1}";
static const char *EULER_CFG =
    "{\"_class_name\": \"EulerDiscreteScheduler\", \"num_train_timesteps\": 1000, \"beta_start\": 0.00085,"
    " \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\", \"steps_offset\": 1}";

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) fail_msg("cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

// A pipeline folder in the test's temp dir: symlinks to the fixture's unet/ and vae/.
static void make_pipeline(void **state, const char *name, const char *sched, char *dir, size_t cap) {
  vkp_test_dir_path(state, name, dir, cap);
  char p[1200];
  assert_int_equal(mkdir(dir, 0755), 0);
  snprintf(p, sizeof p, "%s/unet", dir);
  assert_int_equal(symlink(vkp_fixture_path("unet/unet"), p), 0);
  snprintf(p, sizeof p, "%s/vae", dir);
  assert_int_equal(symlink(vkp_fixture_path("unet/vae"), p), 0);
  snprintf(p, sizeof p, "%s/model_index.json", dir);
  write_text(p, "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
                " \"vae\": [\"diffusers\", \"AutoencoderKL\"]}");
  snprintf(p, sizeof p, "%s/scheduler", dir);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", dir);
  write_text(p, sched);
}

static int run_cli(void **state, const char *args) {
  char log[1024], cmd[8192];
  vkp_test_dir_path(state, "cli.log", log, sizeof log);
  snprintf(cmd, sizeof cmd, "%s/vkpeft %s > %s 2>&1", VKP_BINARY_DIR, args, log);
  int rc = system(cmd);
  if (rc) {
    FILE *f = fopen(log, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) printf("  | %s", line);
    if (f) fclose(f);
  }
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void check_sampler(void **state, const char *sampler, const char *sched, const char *prefix) {
  char dir[1024], out[1024], png[1024], args[6000];
  char pname[64];
  snprintf(pname, sizeof pname, "pipe_%s", sampler);
  make_pipeline(state, pname, sched, dir, sizeof dir);
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
  assert_int_equal(run_cli(state, args), 0);
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

static void test_ddim(void **state) { check_sampler(state, "ddim", DDIM_CFG, "ddim10"); }
static void test_euler(void **state) { check_sampler(state, "euler", EULER_CFG, "euler10"); }

// Bad input: exit 2 with the file named.
static void test_errors(void **state) {
  char dir[1024], args[4096];
  make_pipeline(state, "pipe_err", DDIM_CFG, dir, sizeof dir);
  snprintf(args, sizeof args, "generate --model %s --tensors-in %s --sampler nope --output x.png", dir,
           vkp_fixture_path("unet/sampling.safetensors"));
  assert_int_equal(run_cli(state, args), 2);
  snprintf(args, sizeof args, "generate --model %s --tensors-in %s --tensors-out %s/o.safetensors", dir,
           vkp_fixture_path("unet/io.safetensors"), dir);
  assert_int_equal(run_cli(state, args), 2);   // no sample/initial_latents
  snprintf(args, sizeof args, "generate --model %s/unet --tensors-in %s --tensors-out %s/o.safetensors", dir,
           vkp_fixture_path("unet/sampling.safetensors"), dir);
  assert_int_equal(run_cli(state, args), 2);   // no model_index.json
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ddim, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_euler, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_errors, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
