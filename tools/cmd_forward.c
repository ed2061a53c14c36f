// cmd_forward.c — `vkpeft forward --model DIR [--adapter PATH[:scale]]... --inputs IN.safetensors
// [--inputs MORE.safetensors]... --output OUT.safetensors [--loss] [--merge]`: the parity tool.
// Runs a checkpoint of any model family on the named tensors of the input files (later files add
// tensors; a name in two files takes the later one's) and writes the family's outputs (ViT:
// `logits`, `hidden_states/i`; CLIP: embeddings and logits; UNet: `noise_pred`); with --loss also
// `loss` and the gradient of every trainable tensor: `grad/<key>` under the key the adapter's own
// file gives it for an adapter read from a kohya or diffusers .safetensors file, and
// `grad/<peft name>` (PEFT's in-memory name) otherwise (HF PEFT folders, modules_to_save).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_model.h"
#include "vkp_adapter_format.h"
#include "vkp_ops.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkpeft_cli.h"

#define MAX_INPUTS 16

static int usage(void) {
  fprintf(stderr, "usage: vkpeft forward --model DIR [--adapter PATH[:scale]]... --inputs IN.safetensors [--inputs MORE]...\n"
                  "                      --output OUT.safetensors [--loss] [--merge]\n"
                  "  Reads the model family's inputs from the IN files (ViT: pixel_values, labels; CLIP: pixel_values,\n"
                  "  input_ids, attention_mask; UNet: sample, timestep, encoder_hidden_states, target) and writes its\n"
                  "  outputs to OUT; --loss adds `loss` and the gradient of every trainable tensor as grad/<name>\n"
                  "  (an adapter file's own tensor names; PEFT names for HF PEFT folders).\n");
  return VKP_EXIT_BAD_INPUT;
}

static vkp_status read_f32(vkp_graph *g, vkp_tensor *t, float **out, vkp_error *err) {
  size_t n = (size_t)vkp_tensor_numel(t);
  float *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = vkp_graph_read(g, t, v, n * 4);
  if (st) {
    free(v);
    return vkp_error_set(err, st, "%s", vkp_ctx_error(vkp_graph_ctx(g)));
  }
  *out = v;
  return VKP_OK;
}

static vkp_status add_output(vkp_graph *g, vkp_safetensors_writer *w, const char *name, vkp_tensor *t, vkp_error *err) {
  float *v = NULL;
  VKP_TRY(read_f32(g, t, &v, err));
  vkp_status st = vkp_safetensors_writer_add_f32(w, name, VKP_DTYPE_F32, t->ndim, t->shape, v, err);
  free(v);
  return st;
}

// Several --inputs files become one (in a temporary file, unlinked once mapped): every tensor of
// each file, a later file's tensor replacing an earlier one of the same name.
static vkp_status merge_inputs(const char *const *paths, int n, const char *tmpdir, vkp_safetensors **out, vkp_error *err) {
  vkp_safetensors *in[MAX_INPUTS] = {0};
  vkp_safetensors_writer *w = NULL;
  vkp_status st = vkp_safetensors_writer_new(&w, err);
  for (int i = 0; !st && i < n; i++) st = vkp_safetensors_open(paths[i], &in[i], err);
  for (int i = n - 1; !st && i >= 0; i--)
    for (size_t k = 0; !st && k < vkp_safetensors_count(in[i]); k++) {
      const vkp_st_tensor *t = vkp_safetensors_at(in[i], k);
      bool later = false;
      for (int j = i + 1; j < n && !later; j++) later = vkp_safetensors_find(in[j], t->name) != NULL;
      if (!later) st = vkp_safetensors_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
    }
  char path[1100];
  snprintf(path, sizeof path, "%s/inputs.safetensors", tmpdir);
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  if (!st) st = vkp_safetensors_open(path, out, err);
  unlink(path);
  vkp_safetensors_writer_free(w);
  for (int i = 0; i < n; i++) vkp_safetensors_free(in[i]);
  return st;
}

// The gradients of an adapter read from a kohya / diffusers file, under that file's keys: the
// gradients replace the adapter's parameters (the pass that needed them has run) and the format's
// own writer saves them, so names and layouts are exactly the file's. Scalars (kohya's `.alpha`)
// are not gradients and are left out. done[j] marks the trainable tensors handled here.
static vkp_status add_file_grads(vkp_model *m, vkp_adapter *a, const char *format, vkp_graph *g, vkp_param **tp,
                                 vkp_tensor **grads, int nt, bool *done, const char *tmpdir, vkp_safetensors_writer *w,
                                 vkp_error *err) {
  vkp_status st = VKP_OK;
  for (int i = 0; !st && i < vkp_adapter_tensor_count(a); i++) {
    vkp_param *p = vkp_adapter_tensor_at(a, i).param;
    int j = 0;
    while (j < nt && tp[j] != p) j++;
    if (j == nt) continue;
    float *v = NULL;
    if (grads[j]) st = read_f32(g, grads[j], &v, err);
    else if (!(v = calloc((size_t)vkp_param_numel(p), sizeof *v))) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    if (!st && (st = vkp_param_write_f32(m, p, v))) vkp_error_set(err, st, "%s", vkp_ctx_error(m->ctx));
    free(v);
    done[j] = true;
  }
  char path[1100];
  snprintf(path, sizeof path, "%s/grad.safetensors", tmpdir);
  vkp_safetensors *sf = NULL;
  if (!st && (st = vkp_adapter_write(m, a, path, format, NULL))) vkp_error_set(err, st, "%s", vkp_ctx_error(m->ctx));
  if (!st) st = vkp_safetensors_open(path, &sf, err);
  for (size_t k = 0; !st && k < vkp_safetensors_count(sf); k++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, k);
    char name[600];
    snprintf(name, sizeof name, "grad/%s", t->name);
    if (t->ndim > 0) st = vkp_safetensors_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, err);
  }
  vkp_safetensors_free(sf);
  unlink(path);
  return st;
}

// grad/<name> for every trainable tensor (see the top of the file).
static vkp_status add_grads(const vkp_cli_model *cm, vkp_model *m, vkp_graph *g, vkp_param **tp, vkp_tensor **grads, int nt,
                            const char *tmpdir, vkp_safetensors_writer *w, vkp_error *err) {
  bool *done = calloc((size_t)nt + 1, 1);
  if (!done) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = VKP_OK;
  // One adapter per --adapter, in order (a count that differs: PEFT names for all).
  for (int k = 0; !st && vkp_peft_count(m) == cm->n_adapters && k < cm->n_adapters; k++) {
    const vkp_adapter_format *f = vkp_adapter_format_detect(cm->adapters[k]);
    if (f && (f == &vkp_adapter_format_kohya || f == &vkp_adapter_format_diffusers))
      st = add_file_grads(m, vkp_peft_get(m, k), f->name, g, tp, grads, nt, done, tmpdir, w, err);
  }
  for (int i = 0; !st && i < nt; i++) {
    if (!grads[i] || done[i]) continue;
    char peft[512], name[600];
    vkp_peft_param_peft_name(m, tp[i], peft, sizeof peft);
    snprintf(name, sizeof name, "grad/%s", peft);
    st = add_output(g, w, name, grads[i], err);
  }
  free(done);
  return st;
}

int cmd_forward(int argc, char **argv) {
  vkp_cli_model cm = {0};
  const char *inputs[MAX_INPUTS], *output = NULL;
  int n_inputs = 0;
  bool with_loss = false;
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return usage();
    if (r) continue;
    if (!strcmp(argv[i], "--inputs") && i + 1 < argc && n_inputs < MAX_INPUTS) inputs[n_inputs++] = argv[++i];
    else if (!strcmp(argv[i], "--output") && i + 1 < argc) output = argv[++i];
    else if (!strcmp(argv[i], "--loss")) with_loss = true;
    else return usage();
  }
  if (!cm.model_dir || !n_inputs || !output) return usage();
  vkp_error err = {0};
  char tmpdir[512], where[2048] = "";
  const char *tbase = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/vkpeft-forward-XXXXXX", tbase && tbase[0] ? tbase : "/tmp");
  if (!mkdtemp(tmpdir)) return vkp_cli_fail("forward", VKP_ERR_IO, "cannot create a temporary folder");
  for (int i = 0; i < n_inputs; i++)
    snprintf(where + strlen(where), sizeof where - strlen(where), "%s%s", i ? " + " : "", inputs[i]);
  vkp_safetensors *in = NULL;
  vkp_status st = n_inputs == 1 ? vkp_safetensors_open(inputs[0], &in, &err) : merge_inputs(inputs, n_inputs, tmpdir, &in, &err);
  vkp_ctx *ctx = NULL;
  vkp_loaded_model lm = {0};
  vkp_graph *g = NULL;
  vkp_safetensors_writer *w = NULL;
  vkp_forward_io io = {0};
  vkp_tensor **pt = NULL, **grads = NULL;
  vkp_param **tp = NULL;
  int nt = 0;
  if (!st) st = vkp_ctx_new(NULL, &ctx, &err);
  if (!st) st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  if (!st && !(st = vkp_graph_new(ctx, &g))) st = lm.family->forward(&lm, g, in, where, with_loss, &io, &err);
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
  if (!st && with_loss) st = add_grads(&cm, lm.model, g, tp, grads, nt, tmpdir, w, &err);
  if (!st) st = vkp_safetensors_writer_save(w, output, &err);
  vkp_safetensors_writer_free(w);
  free(pt), free(grads), free(tp);
  vkp_forward_io_free(&io);
  vkp_graph_free(g);
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  vkp_safetensors_free(in);
  rmdir(tmpdir);
  return st ? vkp_cli_fail("forward", st, err.msg) : VKP_EXIT_OK;
}
