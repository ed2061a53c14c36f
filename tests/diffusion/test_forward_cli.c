// test_forward_cli.c — the UNet LoRA parity of issue 10 through the program:
//   vkpeft forward --model unet/unet --adapter FILE --inputs unet/io.safetensors
//                  --inputs unet/lora/io.safetensors --output OUT --loss
// with the fixture's LoRA as a kohya file and as a diffusers file gives diffusers' `noise_pred`,
// `loss` (MSE against `target`) and the gradient of every LoRA tensor, written as
// `grad/<the file's key>`. The fixture files hold the weights after one AdamW step while the
// fixture outputs were computed before it: the test writes each file back at the pre-step values
// (p0 = (p1 + lr·g/(|g| + eps)) / (1 − lr·wd), keys spelled here independently of the program).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vkp_cli_run.h"
#include "vkp_parity.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

// A fixture path in a buffer of the caller's (vkp_fixture_path's buffer is shared).
static const char *fx(const char *rel, char *buf) {
  snprintf(buf, 400, "%s", vkp_fixture_path(rel));
  return buf;
}

// A fixture gradient name `grad/<module>.lora_A.default.weight` spelled as the file's key.
static void file_key(const char *grad, bool kohya, char *out, size_t cap) {
  char module[400];
  const char *m = grad + 5, *dot = strstr(m, ".lora_");
  snprintf(module, sizeof module, "%.*s", (int)(dot - m), m);
  bool a = !strncmp(dot, ".lora_A.", 8);
  if (kohya) {
    for (char *c = module; *c; c++)
      if (*c == '.') *c = '_';
    snprintf(out, cap, "lora_unet_%s.%s.weight", module, a ? "lora_down" : "lora_up");
  } else {
    snprintf(out, cap, "unet.%s.%s.weight", module, a ? "lora_A" : "lora_B");
  }
}

// The fixture adapter `name` at its pre-step values, written to dst.
static void write_prestep(const char *name, bool kohya, vkp_safetensors *lio, const char *dst) {
  vkp_error err = {0};
  vkp_safetensors *src = NULL;
  char rel[200];
  snprintf(rel, sizeof rel, "unet/lora/%s", name);
  if (vkp_safetensors_open(vkp_fixture_path(rel), &src, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer *w = NULL;
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  int converted = 0;
  for (size_t i = 0; i < vkp_safetensors_count(lio); i++) {
    const char *g = vkp_safetensors_at(lio, i)->name;
    if (strncmp(g, "grad/", 5)) continue;
    char key[600];
    file_key(g, kohya, key, sizeof key);
    const vkp_st_tensor *t = vkp_safetensors_find(src, key);
    if (!t) fail_msg("%s: no tensor '%s' for '%s'", name, key, g);
    size_t n, ng;
    float *p = vkp_fixture_tensor(src, key, &n), *gr = vkp_fixture_tensor(lio, g, &ng);
    assert_int_equal(n, ng);
    const double lr = 1e-2, wd = 0.01, eps = 1e-8;
    for (size_t k = 0; k < n; k++) p[k] = (float)((p[k] + lr * gr[k] / (fabs(gr[k]) + eps)) / (1 - lr * wd));
    if (vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, t->ndim, t->shape, p, &err)) fail_msg("%s", err.msg);
    free(p), free(gr);
    converted++;
  }
  for (size_t i = 0; i < vkp_safetensors_count(src); i++) {   // kohya's alphas as they are
    const vkp_st_tensor *t = vkp_safetensors_at(src, i);
    if (t->ndim == 0 && vkp_safetensors_writer_add(w, t->name, t->dtype, 0, t->shape, t->data, &err)) fail_msg("%s", err.msg);
  }
  assert_int_equal(converted + (kohya ? converted / 2 : 0), vkp_safetensors_count(src));
  if (vkp_safetensors_writer_save(w, dst, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_safetensors_free(src);
}

static void check_file(void **state, const char *name, const char *scale, bool kohya) {
  vkp_error err = {0};
  vkp_safetensors *lio = NULL, *got = NULL;
  if (vkp_safetensors_open(vkp_fixture_path("unet/lora/io.safetensors"), &lio, &err)) fail_msg("%s", err.msg);
  char adapter[300], out[300], args[3000];
  vkp_test_dir_path(state, kohya ? "kohya.safetensors" : "diffusers.safetensors", adapter, sizeof adapter);
  vkp_test_dir_path(state, "out.safetensors", out, sizeof out);
  write_prestep(name, kohya, lio, adapter);
  char f1[400], f2[400], f3[400];
  snprintf(args, sizeof args, "forward --model %s --adapter %s%s --inputs %s --inputs %s --output %s --loss", fx("unet/unet", f1),
           adapter, scale, fx("unet/io.safetensors", f2), fx("unet/lora/io.safetensors", f3), out);
  vkp_cli_expect(args, 0, NULL);
  if (vkp_safetensors_open(out, &got, &err)) fail_msg("%s", err.msg);
  printf("  %s:\n", name);
  const char *outputs[2] = {"noise_pred", "loss"};
  for (int i = 0; i < 2; i++) {
    size_t n, nw;
    float *g = vkp_fixture_tensor(got, outputs[i], &n), *w = vkp_fixture_tensor(lio, outputs[i], &nw);
    assert_int_equal(n, nw);
    vkp_check_rel(outputs[i], g, w, n, 1e-4);
    free(g), free(w);
  }
  double worst = 0;
  int n_grads = 0, n_out = 0;
  for (size_t i = 0; i < vkp_safetensors_count(got); i++) n_out += !strncmp(vkp_safetensors_at(got, i)->name, "grad/", 5);
  for (size_t i = 0; i < vkp_safetensors_count(lio); i++) {
    const char *gname = vkp_safetensors_at(lio, i)->name;
    if (strncmp(gname, "grad/", 5)) continue;
    char key[600], oname[620];
    file_key(gname, kohya, key, sizeof key);
    snprintf(oname, sizeof oname, "grad/%s", key);
    size_t n, nw;
    float *g = vkp_fixture_tensor(got, oname, &n), *w = vkp_fixture_tensor(lio, gname, &nw);
    assert_int_equal(n, nw);
    double e = vkp_rel_err(g, w, n);
    if (!(e < 1e-3)) fail_msg("%s: rel err %g", oname, e);
    worst = fmax(worst, e);
    n_grads++;
    free(g), free(w);
  }
  printf("  %d LoRA gradients (grad/<file key>), worst rel err %.3g\n", n_grads, worst);
  assert_int_equal(n_grads, 96);
  assert_int_equal(n_out, n_grads);
  vkp_safetensors_free(got);
  vkp_safetensors_free(lio);
}

static void test_kohya(void **state) { check_file(state, "kohya.safetensors", "", true); }
// No alpha in a diffusers file: diffusers loads it at scale 1; the fixture trained at alpha 8 / r 4.
static void test_diffusers(void **state) { check_file(state, "pytorch_lora_weights.safetensors", ":2", false); }

static void test_bad_inputs(void **state) {
  char args[2000], missing[300], out[300], f1[400], f2[400];
  vkp_test_dir_path(state, "nope.safetensors", missing, sizeof missing);
  vkp_test_dir_path(state, "o.safetensors", out, sizeof out);
  snprintf(args, sizeof args, "forward --model %s --inputs %s --inputs %s --output %s --loss", fx("unet/unet", f1),
           fx("unet/io.safetensors", f2), missing, out);
  vkp_cli_expect(args, 2, "nope.safetensors");
  // Without the second file there is no target: the error names the tensor.
  snprintf(args, sizeof args, "forward --model %s --inputs %s --output %s --loss", fx("unet/unet", f1), fx("unet/io.safetensors", f2), out);
  vkp_cli_expect(args, 2, "'target'");
  assert_int_equal(access(out, F_OK), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_kohya, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_diffusers, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_bad_inputs, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
