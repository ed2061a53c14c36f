// test_vit_parity.c — ViT and the six peft methods against transformers + peft
// (../shared/fixtures/vit): logits, hidden states, loss, gradients of every trainable tensor.
// Error measure: max |got - want| / max |want| over the tensor ("relative error" below).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_optim.h"
#include "vkp_parity.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"
#include "vkp_vit.h"

static vkp_vit *load_model(void) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *v = NULL;
  vkp_error err = {0};
  if (vkp_vit_load(ctx, vkp_fixture_path("vit/model"), 0, &v, &err)) fail_msg("load: %s", err.msg);
  return v;
}

static void test_base_forward(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *v = load_model();
  vkp_safetensors *io;
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("vit/io.safetensors"), &io, &err)) fail_msg("%s", err.msg);
  size_t np, n;
  float *pixels = vkp_fixture_tensor(io, "pixel_values", &np);
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){3, 3, 32, 32});
  vkp_vit_outputs out;
  vkp_vit_forward(v, g, px, &out);
  vkp_graph_output(g, out.logits);
  for (int i = 0; i <= 2; i++) vkp_graph_output(g, out.hidden[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, px, pixels, np * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  float *want = vkp_fixture_tensor(io, "logits", &n), got[15];
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.logits, got, sizeof got));
  vkp_check_rel("logits", got, want, n, 1e-4);
  free(want);
  for (int i = 0; i <= 2; i++) {
    char name[32];
    snprintf(name, sizeof name, "hidden_states/%d", i);
    want = vkp_fixture_tensor(io, name, &n);
    float *h = malloc(n * 4);
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.hidden[i], h, n * 4));
    vkp_check_rel(name, h, want, n, 1e-4);
    free(h);
    free(want);
  }
  free(pixels);
  vkp_graph_free(g);
  vkp_safetensors_free(io);
  vkp_vit_free(v);
}

// One peft method: adapter from the fixture folder; logits, loss, gradients.
static void run_method(const char *method) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *v = load_model();
  vkp_model *m = v->model;
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s", vkp_fixture_path("vit/adapters"));
  strncat(dir, "/", sizeof dir - strlen(dir) - 1);
  strncat(dir, method, sizeof dir - strlen(dir) - 1);
  vkp_adapter *a = NULL;
  VKP_ASSERT_OK(ctx, vkp_peft_load(m, dir, &a));
  vkp_safetensors *io, *io_base;
  vkp_error err = {0};
  snprintf(path, sizeof path, "%s/io.safetensors", dir);
  if (vkp_safetensors_open(path, &io, &err)) fail_msg("%s", err.msg);
  if (vkp_safetensors_open(vkp_fixture_path("vit/io.safetensors"), &io_base, &err)) fail_msg("%s", err.msg);
  vkp_undo_adamw_step(m, io, 1e-2, 0.01, 1e-8);   // the adapter file holds the values after the step
  size_t np, nl, n;
  float *pixels = vkp_fixture_tensor(io_base, "pixel_values", &np), *labels_f = vkp_fixture_tensor(io_base, "labels", &nl);
  int32_t labels[3];
  for (size_t i = 0; i < nl; i++) labels[i] = (int32_t)labels_f[i];

  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){3, 3, 32, 32});
  vkp_tensor *lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){3});
  vkp_vit_outputs out;
  vkp_vit_forward(v, g, px, &out);
  vkp_tensor *loss = vkp_cross_entropy(g, out.logits, lab);
  vkp_graph_output(g, out.logits);
  vkp_graph_output(g, loss);
  vkp_param **tp;
  int nt = vkp_model_trainable(m, &tp);
  vkp_tensor **pt = calloc((size_t)nt, sizeof *pt), **grads = calloc((size_t)nt, sizeof *grads);
  for (int i = 0; i < nt; i++) pt[i] = vkp_param_tensor(m, tp[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, pt, nt, grads));
  for (int i = 0; i < nt; i++) {
    if (!grads[i]) fail_msg("%s: no gradient for %s", method, tp[i]->name);
    vkp_graph_output(g, grads[i]);
  }
  // One torch.optim.AdamW step (lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight decay 0.01) on the
  // trainable tensors, in the same recorded graph, after the outputs above.
  vkp_param_set *ps;
  vkp_optimizer *opt = vkp_parity_adamw_step(g, tp, nt, grads, &ps);
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, px, pixels, np * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, lab, labels, sizeof labels));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  printf("[%s]\n", method);
  float got[16];
  float *want = vkp_fixture_tensor(io, "logits", &n);
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.logits, got, n * 4));
  vkp_check_rel("logits", got, want, n, 1e-4);
  free(want);
  want = vkp_fixture_tensor(io, "loss", &n);
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, loss, got, 4));
  vkp_check_rel("loss", got, want, 1, 1e-4);
  free(want);
  int checked = 0;
  for (int i = 0; i < nt; i++) {
    char peft_name[512], key[600];
    vkp_peft_param_peft_name(m, tp[i], peft_name, sizeof peft_name);
    snprintf(key, sizeof key, "grad/%s", peft_name);
    want = vkp_fixture_tensor(io, key, &n);
    if (n != (size_t)vkp_param_numel(tp[i])) fail_msg("%s: size mismatch", key);
    float *gd = malloc(n * 4);
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, grads[i], gd, n * 4));
    vkp_check_rel(key, gd, want, n, 1e-3);
    free(gd);
    free(want);
    checked++;
  }
  for (int i = 0; i < nt; i++) {   // the parameters after the step
    char peft_name[512], key[600];
    vkp_peft_param_peft_name(m, tp[i], peft_name, sizeof peft_name);
    snprintf(key, sizeof key, "step1/%s", peft_name);
    want = vkp_fixture_tensor(io, key, &n);
    float *p1 = malloc(n * 4);
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, tp[i], p1));
    vkp_check_rel(key, p1, want, n, 1e-4);
    free(p1);
    free(want);
  }
  // Every gradient in the fixture was checked.
  int in_fixture = 0;
  for (size_t i = 0; i < vkp_safetensors_count(io); i++) in_fixture += !strncmp(vkp_safetensors_at(io, i)->name, "grad/", 5);
  assert_int_equal(checked, in_fixture);
  free(tp), free(pt), free(grads), free(pixels), free(labels_f);
  vkp_graph_free(g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  vkp_safetensors_free(io);
  vkp_safetensors_free(io_base);
  vkp_vit_free(v);
}

static void test_lora(void **s) { (void)s; run_method("lora"); }
static void test_rslora(void **s) { (void)s; run_method("rslora"); }
static void test_dora(void **s) { (void)s; run_method("dora"); }
static void test_loha(void **s) { (void)s; run_method("loha"); }
static void test_lokr(void **s) { (void)s; run_method("lokr"); }
static void test_ia3(void **s) { (void)s; run_method("ia3"); }

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_base_forward), cmocka_unit_test(test_lora), cmocka_unit_test(test_rslora),
      cmocka_unit_test(test_dora),         cmocka_unit_test(test_loha), cmocka_unit_test(test_lokr),
      cmocka_unit_test(test_ia3),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
