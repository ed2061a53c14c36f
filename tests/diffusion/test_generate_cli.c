// test_generate_cli.c — `vkpeft generate` from prompts on a pipeline folder assembled from the
// fixtures (UNet + VAE + the CLIP fixture as text encoder and tokenizer):
// - the prompt path equals the --tensors-in path (parity-tested against diffusers in
//   test_generate.c) fed with the pipeline's text states and torch.randn(seed) latents;
// - --batch: image k of a batch is the image a single run with seed + k makes, named NNNNN-SEED.png;
// - `<lora:NAME:0.8>` with --lora-dir equals --lora DIR/NAME.safetensors:0.8;
// - --prompts FILE: image (i, k) = the single run with prompt i and seed + k (±1 level); the grid;
// - img2img (transparent init images composited onto white), the grid, `vkpeft info IMAGE.png`,
//   the `parameters` text (Lora hashes: kohya's addnet SHA-256 of the file after its header,
//   computed here);
// - bad input: one line naming the file or flag, exit 2, no PNG left behind.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate_fixture.h"
#include "vkp_parity.h"
#include "vkp_fileio.h"
#include "vkp_png.h"
#include "vkp_pipeline.h"
#include "vkp_safetensors.h"
#include "vkp_sha256.h"
#include "vkp_test.h"

static char g_pipe[1024];

static int setup(void **state) {
  vkp_test_dir_setup(state);
  gen_make_pipeline(state, "pipe", GEN_EULER_CFG, true, g_pipe, sizeof g_pipe);
  return 0;
}

static vkp_image *read_png(const char *path, char **params) {
  vkp_image *img = NULL;
  vkp_png_text *txt = NULL;
  int n = 0;
  vkp_error err = {0};
  if (vkp_png_read(path, &img, &txt, &n, &err)) fail_msg("%s", err.msg);
  const char *p = vkp_png_text_find(txt, n, "parameters");
  assert_non_null(p);
  if (params) *params = strdup(p);
  free(txt);
  return img;
}

static int max_pixel_diff(const vkp_image *a, const vkp_image *b) {
  assert_int_equal(a->width, b->width);
  assert_int_equal(a->height, b->height);
  int d = 0;
  for (size_t i = 0; i < (size_t)a->width * a->height * a->channels; i++) d = abs(a->data[i] - b->data[i]) > d ? abs(a->data[i] - b->data[i]) : d;
  return d;
}

static float *read_t(const char *file, const char *key, size_t *n) {
  vkp_safetensors *sf;
  vkp_error err = {0};
  if (vkp_safetensors_open(file, &sf, &err)) fail_msg("%s", err.msg);
  float *v = vkp_fixture_tensor(sf, key, n);
  vkp_safetensors_free(sf);
  return v;
}

static const char *tpath(void **state, const char *name) {
  static char buf[8][1024];
  static int k;
  return vkp_test_dir_path(state, name, buf[k++ % 8], sizeof buf[0]);
}

// Prompt path vs --tensors-in with the same states and latents.
static void test_prompt_equals_tensors(void **state) {
  char args[8192];
  const char *pa = tpath(state, "prompt.safetensors"), *pb = tpath(state, "tin.safetensors");
  snprintf(args, sizeof args,
           "generate --model %s --prompt 'a photo of a cat' --negative-prompt 'blurry' --sampler euler --steps 6 "
           "--seed 9 --cfg 5 --tensors-out %s",
           g_pipe, pa);
  assert_int_equal(gen_run_cli(state, args), 0);
  // The inputs by hand: the pipeline's text states, torch.randn(4·16·16) from seed 9.
  vkp_pipeline *p;
  vkp_error err = {0};
  vkp_pipeline_opts po = {.text_encoder = VKP_PIPELINE_TEXT_REQUIRED};
  if (vkp_pipeline_load(vkp_test_ctx(), g_pipe, &po, &p, &err)) fail_msg("%s", err.msg);
  float *cond = malloc(77 * 32 * sizeof(float)), *uncond = malloc(77 * 32 * sizeof(float)), lat[4 * 16 * 16];
  if (vkp_pipeline_encode_prompt(p, "a photo of a cat", cond, &err) || vkp_pipeline_encode_prompt(p, "blurry", uncond, &err))
    fail_msg("%s", err.msg);
  vkp_pipeline_free(p);
  vkp_rng g = vkp_rng_new(9);
  vkp_rng_randn(&g, lat, 4 * 16 * 16);
  vkp_safetensors_writer *w;
  const char *in = tpath(state, "in.safetensors");
  assert_int_equal(vkp_safetensors_writer_new(&w, &err), 0);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "sample/initial_latents", VKP_DTYPE_F32, 4, (int64_t[]){1, 4, 16, 16}, lat, &err), 0);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "sample/cond", VKP_DTYPE_F32, 3, (int64_t[]){1, 77, 32}, cond, &err), 0);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "sample/uncond", VKP_DTYPE_F32, 3, (int64_t[]){1, 77, 32}, uncond, &err), 0);
  assert_int_equal(vkp_safetensors_writer_save(w, in, &err), 0);
  vkp_safetensors_writer_free(w);
  snprintf(args, sizeof args, "generate --model %s --tensors-in %s --sampler euler --steps 6 --cfg 5 --tensors-out %s",
           g_pipe, in, pb);
  assert_int_equal(gen_run_cli(state, args), 0);
  size_t n, m;
  float *a = read_t(pa, "final_latents", &n), *b = read_t(pb, "final_latents", &m);
  assert_int_equal(n, m);
  vkp_check_rel("prompt path vs --tensors-in: final latents", a, b, n, 1e-6);
  free(a), free(b), free(cond), free(uncond);
}

// --batch 3 --seed 3: DIR/00000-3.png .. 00002-5.png; image 1 = the single run with seed 4.
static void test_batch_seeds(void **state) {
  char args[8192];
  const char *dir = tpath(state, "out"), *one = tpath(state, "one.png");
  snprintf(args, sizeof args, "generate --model %s --prompt 'a cat' --sampler euler_a --steps 5 --seed 3 --batch 3 --output %s",
           g_pipe, dir);
  assert_int_equal(gen_run_cli(state, args), 0);
  snprintf(args, sizeof args, "generate --model %s --prompt 'a cat' --sampler euler_a --steps 5 --seed 4 --output %s",
           g_pipe, one);
  assert_int_equal(gen_run_cli(state, args), 0);
  char f[1200], *par;
  int worst = 0;
  vkp_image *single = read_png(one, NULL);
  for (int k = 0; k < 3; k++) {
    snprintf(f, sizeof f, "%s/%05d-%d.png", dir, k, 3 + k);
    vkp_image *img = read_png(f, &par);
    char want[64];
    snprintf(want, sizeof want, "Seed: %d, Size: 32x32", 3 + k);
    assert_non_null(strstr(par, want));
    snprintf(want, sizeof want, "Batch size: 3, Batch pos: %d", k);
    assert_non_null(strstr(par, want));
    if (k == 1) worst = max_pixel_diff(img, single);
    if (k == 0) assert_true(max_pixel_diff(img, single) > 8);   // another seed, another image
    free(par);
    vkp_image_free(img);
  }
  printf("  batch image 1 (seed 4) vs the single run with seed 4: max pixel difference %d\n", worst);
  assert_int_equal(worst, 0);
  vkp_image_free(single);
  // The next run in the same folder continues the numbering.
  snprintf(args, sizeof args, "generate --model %s --prompt 'a cat' --steps 2 --seed 7 --output %s", g_pipe, dir);
  assert_int_equal(gen_run_cli(state, args), 0);
  snprintf(f, sizeof f, "%s/00003-7.png", dir);
  vkp_image_free(read_png(f, NULL));
}

// <lora:kohya:0.8> with --lora-dir = --lora .../kohya.safetensors:0.8; the hash in `parameters`.
static void test_prompt_lora_tag(void **state) {
  char args[8192], *pa, *pb;
  char lora[1024], ldir[1024];
  snprintf(lora, sizeof lora, "%s", vkp_fixture_path("unet/lora/kohya.safetensors"));
  snprintf(ldir, sizeof ldir, "%s", vkp_fixture_path("unet/lora"));
  const char *ta = tpath(state, "tag.safetensors"), *tb = tpath(state, "flag.safetensors");
  const char *ia = tpath(state, "tag.png"), *ib = tpath(state, "flag.png");
  snprintf(args, sizeof args,
           "generate --model %s --prompt 'a cat <lora:kohya:0.8>, red' --lora-dir %s --steps 4 --seed 2 --tensors-out %s "
           "--output %s", g_pipe, ldir, ta, ia);
  assert_int_equal(gen_run_cli(state, args), 0);
  snprintf(args, sizeof args,
           "generate --model %s --prompt 'a cat , red' --lora %s:0.8 --steps 4 --seed 2 --tensors-out %s --output %s",
           g_pipe, lora, tb, ib);
  assert_int_equal(gen_run_cli(state, args), 0);
  size_t n, m;
  float *a = read_t(ta, "final_latents", &n), *b = read_t(tb, "final_latents", &m);
  assert_int_equal(n, m);
  assert_memory_equal(a, b, n * sizeof(float));
  free(a), free(b);
  vkp_image *x = read_png(ia, &pa), *y = read_png(ib, &pb);
  assert_int_equal(max_pixel_diff(x, y), 0);
  // Kohya's addnet hash: SHA-256 of the bytes after the safetensors header, 12 hex digits.
  FILE *f = fopen(lora, "rb");
  unsigned char h8[8];
  assert_int_equal(fread(h8, 1, 8, f), 8);
  fclose(f);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | h8[i];
  char hex[65], want[128];
  vkp_error err = {0};
  assert_int_equal(vkp_sha256_file(lora, hl + 8, hex, &err), 0);
  snprintf(want, sizeof want, "Lora hashes: \"kohya: %.12s\"", hex);
  printf("  tag:  %s\n  flag: %s\n", pa, pb);
  assert_non_null(strstr(pa, want));
  assert_non_null(strstr(pb, want));
  assert_non_null(strstr(pa, "a cat <lora:kohya:0.8>, red\nSteps: 4"));
  assert_non_null(strstr(pb, "a cat , red <lora:kohya:0.8>\nSteps: 4"));
  free(pa), free(pb);
  vkp_image_free(x), vkp_image_free(y);
}

// img2img from a generated image, the grid, `vkpeft info`.
static void test_img2img_grid_info(void **state) {
  char args[8192], *par;
  const char *init = tpath(state, "init.png"), *out = tpath(state, "i2i.png"), *grid = tpath(state, "grid.png");
  snprintf(args, sizeof args, "generate --model %s --prompt 'a cat' --steps 3 --seed 1 --output %s", g_pipe, init);
  assert_int_equal(gen_run_cli(state, args), 0);
  snprintf(args, sizeof args,
           "generate --model %s --prompt 'a dog' --init-image %s --strength 0.5 --sampler dpmpp_2m --steps 6 --seed 1 "
           "--output %s", g_pipe, init, out);
  assert_int_equal(gen_run_cli(state, args), 0);
  vkp_image *img = read_png(out, &par);
  assert_non_null(strstr(par, "Denoising strength: 0.5"));
  assert_non_null(strstr(par, "Sampler: DPM++ 2M"));
  free(par);
  vkp_image_free(img);
  snprintf(args, sizeof args, "generate --model %s --prompt 'a cat' --steps 3 --grid seeds --grid-values 1,2,3 --output %s",
           g_pipe, grid);
  assert_int_equal(gen_run_cli(state, args), 0);
  img = read_png(grid, &par);
  printf("  grid %dx%d: %s\n", img->width, img->height, par);
  assert_true(img->width >= 3 * 32 && img->height > 32);
  assert_non_null(strstr(par, "Grid: seeds, Grid values: \"1, 2, 3\""));
  free(par);
  vkp_image_free(img);
  // --output FILE.png with a batch: FILE-0.png, FILE-1.png.
  const char *bf = tpath(state, "b.png");
  snprintf(args, sizeof args, "generate --model %s --prompt 'a cat' --steps 1 --batch 2 --seed 8 --output %s", g_pipe, bf);
  assert_int_equal(gen_run_cli(state, args), 0);
  vkp_image_free(read_png(tpath(state, "b-0.png"), NULL));
  img = read_png(tpath(state, "b-1.png"), &par);
  assert_non_null(strstr(par, "Seed: 9"));
  assert_int_equal(access(bf, F_OK), -1);
  free(par);
  vkp_image_free(img);
  int lines;
  snprintf(args, sizeof args, "info %s", out);
  assert_int_equal(gen_run_cli_log(state, args, true, &lines), 0);
  assert_true(lines >= 4);
}

// A transparent init image is composited onto white (as the data loaders flatten training images):
// RGBA and grey+alpha inputs give exactly the images their white-composited RGB versions give.
static void write_png(const char *path, int w, int h, int channels, const uint8_t *px) {
  vkp_image view = {.width = w, .height = h, .channels = channels, .data = (uint8_t *)px};
  vkp_error err = {0};
  if (vkp_png_write(path, &view, NULL, 0, &err)) fail_msg("%s", err.msg);
}

static uint8_t on_white(int v, int a) { return (uint8_t)floor((v * a + 255.0 * (255 - a)) / 255.0 + 0.5); }

static void test_init_image_alpha(void **state) {
  enum { W = 32, H = 32 };
  static uint8_t rgba[W * H * 4], ga[W * H * 2], rgb[W * H * 3], grey_rgb[W * H * 3];
  for (int i = 0; i < W * H; i++) {
    int a = i % 5 == 0 ? 0 : i % 5 == 1 ? 255 : (i * 37) % 256;   // transparent, opaque, partial
    uint8_t c[3] = {(uint8_t)(i * 7), (uint8_t)(255 - i % 256), (uint8_t)(i * 13 + 40)};
    for (int k = 0; k < 3; k++) rgba[4 * i + k] = c[k], rgb[3 * i + k] = on_white(c[k], a);
    rgba[4 * i + 3] = (uint8_t)a;
    ga[2 * i] = c[0], ga[2 * i + 1] = (uint8_t)a;
    for (int k = 0; k < 3; k++) grey_rgb[3 * i + k] = on_white(c[0], a);
  }
  const char *names[4] = {"rgba.png", "rgb.png", "ga.png", "grey_rgb.png"};
  const uint8_t *pixels[4] = {rgba, rgb, ga, grey_rgb};
  const int channels[4] = {4, 3, 2, 3};
  vkp_image *out[4];
  for (int i = 0; i < 4; i++) {
    char args[4096], outname[32];
    write_png(tpath(state, names[i]), W, H, channels[i], pixels[i]);
    snprintf(outname, sizeof outname, "alpha-out-%d.png", i);
    snprintf(args, sizeof args, "generate --model %s --prompt 'a cat' --init-image %s --strength 0.5 --steps 2 --seed 3 "
             "--output %s", g_pipe, tpath(state, names[i]), tpath(state, outname));
    assert_int_equal(gen_run_cli(state, args), 0);
    out[i] = read_png(tpath(state, outname), NULL);
  }
  assert_int_equal(max_pixel_diff(out[0], out[1]), 0);   // RGBA == its composite
  assert_int_equal(max_pixel_diff(out[2], out[3]), 0);   // grey+alpha == its composite
  assert_true(max_pixel_diff(out[0], out[2]) > 0);       // and the inputs do matter
  for (int i = 0; i < 4; i++) vkp_image_free(out[i]);
}

// One line naming the file or flag, exit 2, no output file.
static void expect_fail(void **state, const char *args, const char *needle, const char *no_file) {
  int lines;
  assert_int_equal(gen_run_cli_log(state, args, true, &lines), 2);
  assert_int_equal(lines, 1);
  char log[1024], text[4096] = "";
  FILE *f = fopen(vkp_test_dir_path(state, "cli.log", log, sizeof log), "r");
  assert_non_null(fgets(text, sizeof text, f));
  fclose(f);
  if (!strstr(text, needle)) fail_msg("expected '%s' in: %s", needle, text);
  if (no_file && !access(no_file, F_OK)) fail_msg("%s was written", no_file);
}

// --prompts: 3 prompts (a comment and a blank line skipped) × --batch 2 in one UNet batch; image
// (i, k) = the single run `--prompt P_i --seed 5+k` (within one pixel level); the grid: 3 × 2 cells.
static void test_prompts_file(void **state) {
  char args[8192], f[1200], *par;
  const char *list = tpath(state, "prompts.txt"), *dir = tpath(state, "many"), *one = tpath(state, "single.png");
  const char *prompts[3] = {"a cat", "a red house, at night", "two dogs"};
  FILE *fp = fopen(list, "w");
  fprintf(fp, "# prompts\n%s\n\n  %s  \r\n%s", prompts[0], prompts[1], prompts[2]);
  fclose(fp);
  snprintf(args, sizeof args, "generate --model %s --prompts %s --negative-prompt blurry --sampler euler_a --steps 4 --seed 5 "
           "--batch 2 --output %s", g_pipe, list, dir);
  assert_int_equal(gen_run_cli(state, args), 0);
  int worst = 0;
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 2; k++) {
      snprintf(args, sizeof args, "generate --model %s --prompt '%s' --negative-prompt blurry --sampler euler_a --steps 4 --seed %d "
               "--output %s",
               g_pipe, prompts[i], 5 + k, one);
      assert_int_equal(gen_run_cli(state, args), 0);
      snprintf(f, sizeof f, "%s/%05d-%d.png", dir, 2 * i + k, 5 + k);
      vkp_image *img = read_png(f, &par), *single = read_png(one, NULL);
      assert_true(!strncmp(par, prompts[i], strlen(prompts[i])) && par[strlen(prompts[i])] == '\n');
      int d = max_pixel_diff(img, single);
      worst = d > worst ? d : worst;
      if (i > 0 && k == 0) {   // another prompt, same seed: another image
        snprintf(f, sizeof f, "%s/%05d-%d.png", dir, 0, 5);
        vkp_image *first = read_png(f, NULL);
        assert_true(max_pixel_diff(img, first) > 8);
        vkp_image_free(first);
      }
      free(par);
      vkp_image_free(img), vkp_image_free(single);
    }
  // Within one level: 12 UNet rows (6 images with CFG) against 2 take other matmul tile shapes, so
  // the float sums round differently (a wrong text state or seed differs by ~100; see above).
  printf("  --prompts images vs single runs: max pixel difference %d\n", worst);
  assert_true(worst <= 1);
  snprintf(f, sizeof f, "%s/00006-grid.png", dir);
  vkp_image *grid = read_png(f, &par);
  assert_non_null(strstr(par, "Grid: prompts, Prompts: 3"));
  assert_true(grid->width >= 2 * 32 && grid->height >= 3 * 32);
  free(par);
  vkp_image_free(grid);
  // Bad lists and flag combinations: exit 2, one line naming the file or flag.
  const char *png = tpath(state, "never.png");
  fp = fopen(list, "w");
  fprintf(fp, "a cat\nx <lora:kohya:0.5>\n");
  fclose(fp);
  char want[1200];
  snprintf(want, sizeof want, "%s:2: <lora:...> tags are not supported", list);
  snprintf(args, sizeof args, "generate --model %s --prompts %s --output %s", g_pipe, list, dir);
  expect_fail(state, args, want, png);
  fp = fopen(list, "w");
  fprintf(fp, "# only a comment\n\n");
  fclose(fp);
  expect_fail(state, args, "no prompts", png);
  snprintf(args, sizeof args, "generate --model %s --prompts %s --output %s", g_pipe, list, png);
  expect_fail(state, args, "needs --output DIR", png);
  snprintf(args, sizeof args, "generate --model %s --prompts %s --prompt x --output %s", g_pipe, list, dir);
  expect_fail(state, args, "not with --prompt", png);
  snprintf(args, sizeof args, "generate --model %s --prompts %s/nope.txt --output %s", g_pipe, dir, dir);
  expect_fail(state, args, "nope.txt", png);
}

static void test_errors(void **state) {
  char args[8192];
  const char *png = tpath(state, "never.png");
  snprintf(args, sizeof args, "generate --model %s --prompt x --sampler dpm_fast --output %s", g_pipe, png);
  expect_fail(state, args, "dpm_fast", png);
  snprintf(args, sizeof args, "generate --model %s --prompt x --width 100 --output %s", g_pipe, png);
  expect_fail(state, args, "--width 100", png);
  snprintf(args, sizeof args, "generate --model %s --prompt x --init-image %s --strength 1.5 --output %s", g_pipe, png, png);
  expect_fail(state, args, "--strength 1.5", png);
  snprintf(args, sizeof args, "generate --model %s --prompt x --prediction-type sample --output %s", g_pipe, png);
  expect_fail(state, args, "--prediction-type sample", png);
  snprintf(args, sizeof args, "generate --model %s --prompt 'x <lora:kohya:0.5>' --output %s", g_pipe, png);
  expect_fail(state, args, "--lora-dir", png);
  snprintf(args, sizeof args, "generate --model %s --prompt 'x <lora:nope:0.5>' --lora-dir %s --output %s", g_pipe,
           vkp_fixture_path("unet/lora"), png);
  expect_fail(state, args, "nope.safetensors", png);
  snprintf(args, sizeof args, "generate --model %s --prompt x --lora %s --output %s", g_pipe,
           vkp_fixture_path("unet/io.safetensors"), png);
  expect_fail(state, args, "io.safetensors: no key names a module of the UNet or the text encoder", png);
  // strength 0 (with an existing init image).
  const char *init = tpath(state, "init0.png");
  snprintf(args, sizeof args, "generate --model %s --prompt x --steps 2 --output %s", g_pipe, init);
  assert_int_equal(gen_run_cli(state, args), 0);
  snprintf(args, sizeof args, "generate --model %s --prompt x --init-image %s --strength 0 --output %s", g_pipe, init, png);
  expect_fail(state, args, "--strength 0", png);
  // A truncated UNet checkpoint: the first 20,000 bytes of the fixture's.
  char dir[1024], p[1200];
  gen_make_pipeline(state, "trunc", GEN_EULER_CFG, true, dir, sizeof dir);
  snprintf(p, sizeof p, "%s/unet", dir);
  assert_int_equal(unlink(p), 0);
  assert_int_equal(mkdir(p, 0755), 0);
  gen_link(p, "config.json", "unet/unet/config.json");
  char *data;
  size_t len;
  vkp_error err = {0};
  if (vkp_file_read_all(vkp_fixture_path("unet/unet/diffusion_pytorch_model.safetensors"), 1 << 30, &data, &len, &err))
    fail_msg("%s", err.msg);
  snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.safetensors", dir);
  FILE *f = fopen(p, "wb");
  assert_int_equal(fwrite(data, 1, 20000, f), 20000);
  fclose(f);
  free(data);
  snprintf(args, sizeof args, "generate --model %s --prompt x --output %s", dir, png);
  expect_fail(state, args, "diffusion_pytorch_model.safetensors", png);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_prompt_equals_tensors, setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_batch_seeds, setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_prompt_lora_tag, setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_img2img_grid_info, setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_init_image_alpha, setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_prompts_file, setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
