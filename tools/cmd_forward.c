// cmd_forward.c — `vkpeft forward --model DIR [--adapter DIR]... --inputs IN.safetensors
// --output OUT.safetensors [--loss] [--merge]`: the parity tool. Runs the model on `pixel_values`
// and writes `logits` and `hidden_states/i`; with --loss also `loss` (cross-entropy against
// `labels`) and `grad/<peft name>` for every trainable tensor (adapters, modules_to_save).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr, "usage: vkpeft forward --model DIR [--adapter DIR[:scale]]... --inputs IN.safetensors "
                  "--output OUT.safetensors [--loss] [--merge]\n");
  return VKP_EXIT_BAD_INPUT;
}

static vkp_status add_output(vkp_graph *g, vkp_safetensors_writer *w, const char *name, vkp_tensor *t, vkp_error *err) {
  size_t n = (size_t)vkp_tensor_numel(t);
  float *v = malloc(n * sizeof *v);
  if (!v) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = vkp_graph_read(g, t, v, n * 4);
  if (st) vkp_error_set(err, st, "%s", vkp_ctx_error(vkp_graph_ctx(g)));
  else st = vkp_safetensors_writer_add_f32(w, name, VKP_DTYPE_F32, t->ndim, t->shape, v, err);
  free(v);
  return st;
}

int cmd_forward(int argc, char **argv) {
  vkp_cli_model cm = {0};
  const char *inputs = NULL, *output = NULL;
  bool with_loss = false;
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return usage();
    if (r) continue;
    if (!strcmp(argv[i], "--inputs") && i + 1 < argc) inputs = argv[++i];
    else if (!strcmp(argv[i], "--output") && i + 1 < argc) output = argv[++i];
    else if (!strcmp(argv[i], "--loss")) with_loss = true;
    else return usage();
  }
  if (!cm.model_dir || !inputs || !output) return usage();
  vkp_error err = {0};
  vkp_safetensors *in = NULL;
  if (vkp_safetensors_open(inputs, &in, &err)) return vkp_cli_fail("forward", err.status, err.msg);
  vkp_ctx *ctx = NULL;
  vkp_vit *v = NULL;
  vkp_graph *g = NULL;
  vkp_safetensors_writer *w = NULL;
  float *pixels = NULL, *labels_f = NULL;
  int32_t *labels = NULL;
  vkp_tensor **pt = NULL, **grads = NULL;
  vkp_param **tp = NULL;
  int nt = 0;
  vkp_status st = vkp_ctx_new(NULL, &ctx, &err);
  if (!st) st = vkp_cli_model_load(ctx, &cm, &v, NULL, &err);
  const vkp_st_tensor *px_t = in ? vkp_safetensors_find(in, "pixel_values") : NULL, *lab_t = NULL;
  if (!st && !px_t) st = vkp_error_set(&err, VKP_ERR_NOT_FOUND, "%s: no tensor 'pixel_values'", inputs);
  int64_t B = 0;
  if (!st) {
    const vkp_vit_config *c = &v->cfg;
    if (px_t->ndim != 4 || px_t->shape[1] != c->num_channels || px_t->shape[2] != c->image_size || px_t->shape[3] != c->image_size)
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: tensor 'pixel_values' must be (B, %d, %d, %d)", inputs, c->num_channels,
                         c->image_size, c->image_size);
    B = px_t->shape[0];
  }
  if (!st && with_loss) {
    lab_t = vkp_safetensors_find(in, "labels");
    if (!lab_t || vkp_st_tensor_numel(lab_t) != (size_t)B)
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: --loss needs a tensor 'labels' with %lld entries", inputs, (long long)B);
  }
  vkp_tensor *px = NULL, *lab = NULL, *loss = NULL;
  vkp_vit_outputs out;
  if (!st) {
    size_t n = vkp_st_tensor_numel(px_t);
    pixels = malloc(n * sizeof *pixels);
    vkp_convert_to_f32(px_t->dtype, px_t->data, pixels, n);
    st = vkp_graph_new(ctx, &g);
  }
  if (!st) {
    px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, px_t->shape);
    vkp_vit_forward(v, g, px, &out);
    vkp_graph_output(g, out.logits);
    for (int i = 0; i <= v->cfg.num_hidden_layers; i++) vkp_graph_output(g, out.hidden[i]);
    if (with_loss) {
      labels = malloc((size_t)B * sizeof *labels);
      labels_f = malloc((size_t)B * sizeof *labels_f);
      vkp_convert_to_f32(lab_t->dtype, lab_t->data, labels_f, (size_t)B);
      for (int64_t i = 0; i < B; i++) labels[i] = (int32_t)labels_f[i];
      lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, &B);
      loss = vkp_cross_entropy(g, out.logits, lab);
      vkp_graph_output(g, loss);
      nt = vkp_model_trainable(v->model, &tp);
      pt = calloc((size_t)nt + 1, sizeof *pt);
      grads = calloc((size_t)nt + 1, sizeof *grads);
      for (int i = 0; i < nt; i++) pt[i] = vkp_param_tensor(v->model, tp[i]);
      vkp_graph_backward(g, loss, pt, nt, grads);
      for (int i = 0; i < nt; i++) vkp_graph_output(g, grads[i]);
    }
    st = vkp_graph_compile(g);
    if (st) vkp_error_set(&err, st, "%s", vkp_ctx_error(ctx));
  }
  if (!st) st = vkp_graph_set_input(g, px, pixels, vkp_tensor_nbytes(px));
  if (!st && lab) st = vkp_graph_set_input(g, lab, labels, vkp_tensor_nbytes(lab));
  if (!st) st = vkp_graph_run(g);
  if (st && !err.msg[0]) vkp_error_set(&err, st, "%s", vkp_ctx_error(ctx));
  if (!st) st = vkp_safetensors_writer_new(&w, &err);
  if (!st) st = add_output(g, w, "logits", out.logits, &err);
  for (int i = 0; !st && i <= v->cfg.num_hidden_layers; i++) {
    char name[32];
    snprintf(name, sizeof name, "hidden_states/%d", i);
    st = add_output(g, w, name, out.hidden[i], &err);
  }
  if (!st && loss) st = add_output(g, w, "loss", loss, &err);
  for (int i = 0; !st && i < nt; i++) {
    if (!grads[i]) continue;
    char peft[512], name[600];
    vkp_peft_param_peft_name(v->model, tp[i], peft, sizeof peft);
    snprintf(name, sizeof name, "grad/%s", peft);
    st = add_output(g, w, name, grads[i], &err);
  }
  if (!st) st = vkp_safetensors_writer_save(w, output, &err);
  vkp_safetensors_writer_free(w);
  free(pixels), free(labels), free(labels_f), free(pt), free(grads), free(tp);
  vkp_graph_free(g);
  vkp_vit_free(v);
  vkp_ctx_free(ctx);
  vkp_safetensors_free(in);
  return st ? vkp_cli_fail("forward", st, err.msg) : VKP_EXIT_OK;
}
