// generate_fixture.h — shared by tests/diffusion/test_generate*.c: a diffusers pipeline folder
// assembled in the test's temp dir from the fixtures (symlinks: unet/ and vae/ from
// ../shared/fixtures/unet; with a text encoder, text_encoder/ and tokenizer/ from
// ../shared/fixtures/clip/model, whose hidden size 32 is the UNet's cross_attention_dim), and a
// runner for the vkpeft binary. Header-only (static functions): each test file is its own binary.
#ifndef VKP_GENERATE_FIXTURE_H
#define VKP_GENERATE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vkp_test.h"

static const char *const GEN_DDIM_CFG =
    "{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 1000, \"beta_start\": 0.00085, \"beta_end\": 0.012,"
    " \"beta_schedule\": \"scaled_linear\", \"clip_sample\": false, \"set_alpha_to_one\": false, \"steps_offset\": 1}";
static const char *const GEN_EULER_CFG =
    "{\"_class_name\": \"EulerDiscreteScheduler\", \"num_train_timesteps\": 1000, \"beta_start\": 0.00085,"
    " \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\", \"steps_offset\": 1}";

static inline void gen_write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) fail_msg("cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

static inline void gen_link(const char *dir, const char *name, const char *fixture) {
  char p[2400];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  assert_int_equal(symlink(vkp_fixture_path(fixture), p), 0);
}

// DIR = the test dir's `name`: model_index.json, unet/, vae/, scheduler/scheduler_config.json
// (`sched`), and text_encoder/ + tokenizer/ when `text`.
static inline void gen_make_pipeline(void **state, const char *name, const char *sched, bool text, char *dir,
                                     size_t cap) {
  vkp_test_dir_path(state, name, dir, cap);
  char p[1200];
  assert_int_equal(mkdir(dir, 0755), 0);
  gen_link(dir, "unet", "unet/unet");
  gen_link(dir, "vae", "unet/vae");
  if (text) {
    gen_link(dir, "text_encoder", "clip/model");
    gen_link(dir, "tokenizer", "clip/model");
  }
  snprintf(p, sizeof p, "%s/model_index.json", dir);
  gen_write_text(p, "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
                    " \"vae\": [\"diffusers\", \"AutoencoderKL\"]}");
  snprintf(p, sizeof p, "%s/scheduler", dir);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", dir);
  gen_write_text(p, sched);
}

// Runs `vkpeft ARGS` with stdout and stderr in the test dir's cli.log (printed when it fails, or
// when `show`); returns the exit status. *lines: the log's line count (may be NULL).
static inline int gen_run_cli_log(void **state, const char *args, bool show, int *lines) {
  char log[1024], cmd[9400];
  vkp_test_dir_path(state, "cli.log", log, sizeof log);
  snprintf(cmd, sizeof cmd, "%s/vkpeft %s > %s 2>&1", VKP_BINARY_DIR, args, log);
  int rc = system(cmd);
  FILE *f = fopen(log, "r");
  char line[4096];
  int nl = 0;
  while (f && fgets(line, sizeof line, f)) {
    nl++;
    if (rc || show) printf("  | %s", line);
  }
  if (f) fclose(f);
  if (lines) *lines = nl;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static inline int gen_run_cli(void **state, const char *args) { return gen_run_cli_log(state, args, false, NULL); }

#endif
