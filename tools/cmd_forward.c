// cmd_forward.c — `vkpeft forward --model DIR [--adapter DIR]... --inputs IN.safetensors
// --output OUT.safetensors [--loss] [--merge]`: the parity tool. Runs a checkpoint of any model
// family on the named tensors of IN and writes the family's outputs (ViT: `logits`,
// `hidden_states/i`; CLIP: embeddings and logits); with --loss also `loss` and
// `grad/<peft name>` for every trainable tensor (adapters, modules_to_save).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "vkp_ops.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr, "usage: vkpeft forward --model DIR [--adapter DIR[:scale]]... --inputs IN.safetensors "
                  "--output OUT.safetensors [--loss] [--merge]\n"
                  "  Reads the model family's inputs from IN (ViT: pixel_values, labels; CLIP: pixel_values,\n"
                  "  input_ids, attention_mask) and writes its outputs to OUT; --loss adds `loss` and the\n"
                  "  gradient of every trainable tensor as grad/<peft name>.\n");
  return VKP_EXIT_BAD_INPUT;
}

static vkp_status add_output(vkp_graph *g, vkp_safetensors_writer *w, const char *name, vkp_tensor *t, vkp_error *err) {
  size_t n = (size_t)vkp_tensor_numel(t);
  float *v = malloc((n ? n : 1) * sizeof *v);
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
  vkp_loaded_model lm = {0};
  vkp_graph *g = NULL;
  vkp_safetensors_writer *w = NULL;
  vkp_forward_io io = {0};
  vkp_tensor **pt = NULL, **grads = NULL;
  vkp_param **tp = NULL;
  int nt = 0;
  vkp_status st = vkp_ctx_new(NULL, &ctx, &err);
  if (!st) st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  if (!st && !(st = vkp_graph_new(ctx, &g))) st = lm.family->forward(&lm, g, in, inputs, with_loss, &io, &err);
  if (!st && with_loss && !io.loss)
    st = vkp_error_set(&err, VKP_ERR_UNSUPPORTED, "%s: --loss: %s models have no loss here", cm.model_dir, lm.family->name);
  if (!st && with_loss) {
    nt = vkp_model_trainable(lm.model, &tp);
    pt = calloc((size_t)nt + 1, sizeof *pt);
    grads = calloc((size_t)nt + 1, sizeof *grads);
    if (!pt || !grads) st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
    for (int i = 0; !st && i < nt; i++) pt[i] = vkp_param_tensor(lm.model, tp[i]);
    if (!st) {
      vkp_graph_output(g, io.loss);
      vkp_graph_backward(g, io.loss, pt, nt, grads);
      for (int i = 0; i < nt; i++) vkp_graph_output(g, grads[i]);
    }
  }
  for (int32_t i = 0; !st && i < io.outputs.n; i++) vkp_graph_output(g, io.outputs.v[i].t);
  if (!st && (st = vkp_graph_compile(g))) vkp_error_set(&err, st, "%s", vkp_ctx_error(ctx));
  for (int32_t i = 0; !st && i < io.inputs.n; i++)
    st = vkp_graph_set_input(g, io.inputs.v[i].t, io.inputs.v[i].data, vkp_tensor_nbytes(io.inputs.v[i].t));
  if (!st) st = vkp_graph_run(g);
  if (st && !err.msg[0]) vkp_error_set(&err, st, "%s", vkp_ctx_error(ctx));
  if (!st) st = vkp_safetensors_writer_new(&w, &err);
  for (int32_t i = 0; !st && i < io.outputs.n; i++) st = add_output(g, w, io.outputs.v[i].name, io.outputs.v[i].t, &err);
  if (!st && with_loss) st = add_output(g, w, "loss", io.loss, &err);
  for (int i = 0; !st && i < nt; i++) {
    if (!grads[i]) continue;
    char peft[512], name[600];
    vkp_peft_param_peft_name(lm.model, tp[i], peft, sizeof peft);
    snprintf(name, sizeof name, "grad/%s", peft);
    st = add_output(g, w, name, grads[i], &err);
  }
  if (!st) st = vkp_safetensors_writer_save(w, output, &err);
  vkp_safetensors_writer_free(w);
  free(pt), free(grads), free(tp);
  vkp_forward_io_free(&io);
  vkp_graph_free(g);
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  vkp_safetensors_free(in);
  return st ? vkp_cli_fail("forward", st, err.msg) : VKP_EXIT_OK;
}
