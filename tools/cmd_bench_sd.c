// cmd_bench_sd.c — `vkpeft bench unet` and `vkpeft bench vae`: Stable Diffusion-sized models with
// random weights (torch's default initialisation, what a freshly built diffusers model holds).
//   unet  one sampling step (the UNet on batch B, or 2B with --cfg, + the guidance combination) or,
//         with --train, one LoRA training step (r 4 on to_q/to_k/to_v/to_out.0, MSE against a
//         noise target, backward, AdamW with clipping); --save DIR writes the model as a diffusers
//         folder and the inputs + noise_pred of the last run (bench/torch_unet.py reads both)
//   vae   the decoder at --latent L (image 8L); --save DIR as above (sample + decoded image)
// Each prints one JSON object: median seconds per run (after one warm-up run, which also creates
// the pipelines), planned and allocated device memory and the process's peak resident memory.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bench_sd.h"
#include "bench_time.h"
#include "vkp_device.h"
#include "vkp_fileio.h"
#include "vkp_graph.h"
#include "vkp_ops.h"
#include "vkp_optim.h"
#include "vkp_peft.h"
#include "vkp_rng.h"
#include "vkp_safetensors.h"
#include "vkp_unet.h"
#include "vkp_vae.h"
#include "vkpeft_cli.h"

#define TOKENS 77          // CLIP text length
#define GUIDANCE 7.5f
#define TIMESTEP 500.0f

typedef struct bench_opts {
  const char *config;      // sd15 | sd21 | tiny
  int latent, batch, steps;
  bool cfg, train, profile;
  bool checkpointing;      // --train: every resnet + transformer block an activation-checkpoint segment
  vkp_dtype base_dtype;    // the UNet's Linear/Conv2d weights (f32 | f16 | bf16, vkp_model_set_base_dtype)
  const char *optimizer;   // --train: "adamw" (f32 state) or "adamw8bit" (block-wise 8-bit state)
  const char *save;        // NULL or a folder
  uint64_t seed;
} bench_opts;

static double peak_rss_bytes(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss * 1024.0;
}

// ---- configs ------------------------------------------------------------------------------------

// The UNets of runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1 (config.json of
// their `unet` folders), and a tiny one for smoke runs (hf-internal-testing's tiny SD pipeline).
static bool unet_config(const char *name, vkp_unet_config *c) {
  vkp_unet_config_default(c);   // SD 1.x layout: 320/640/1280/1280, 2 layers, 8 heads
  if (!strcmp(name, "sd15")) {
    for (int i = 0; i < 4; i++) c->cross_attention_dim[i] = 768;
    return true;
  }
  if (!strcmp(name, "sd21")) {
    static const int heads[4] = {5, 10, 20, 20};   // attention_head_dim: head dim 64
    for (int i = 0; i < 4; i++) c->cross_attention_dim[i] = 1024, c->heads[i] = heads[i];
    c->use_linear_projection = true;
    c->sample_size = 96;
    return true;
  }
  if (!strcmp(name, "tiny")) {
    c->n_blocks = 2;
    c->sample_size = 32;
    c->block_out_channels[0] = 32, c->block_out_channels[1] = 64;
    c->down_cross[0] = false, c->down_cross[1] = true;
    c->up_cross[0] = true, c->up_cross[1] = false;
    for (int i = 0; i < 2; i++) c->cross_attention_dim[i] = 32, c->heads[i] = 2;
    return true;
  }
  return false;
}

// The AutoencoderKL of SD 1.x / 2.x.
static void vae_config(vkp_vae_config *c) {
  vkp_vae_config_default(c);
  static const int boc[4] = {128, 256, 512, 512};
  c->n_blocks = 4;
  for (int i = 0; i < 4; i++) c->block_out_channels[i] = boc[i];
  c->layers_per_block = 2;
  c->sample_size = 512;
}

// ---- options ------------------------------------------------------------------------------------

static bool parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || errno || *end || v < lo || v > hi) return false;
  *out = (int)v;
  return true;
}

static void usage(FILE *f, bool unet) {
  if (unet)
    fprintf(f,
            "usage: vkpeft bench unet [--config sd15|sd21|tiny] [--latent 64] [--batch 1] [--cfg] [--train]\n"
            "                         [--steps 3] [--seed 0] [--save DIR] [--profile] [--base-dtype f32|f16|bf16]\n"
            "                         [--checkpointing] [--optimizer adamw|adamw8bit]\n"
            "The UNet of the config with random weights on (batch, 4, latent, latent) latents and %d text tokens.\n"
            "Default: one sampling step (UNet on the batch, 2x with --cfg, + guidance %.1f); --train: one LoRA\n"
            "training step (r 4, alpha 4 on to_q/to_k/to_v/to_out.0, MSE, backward, AdamW lr 1e-4 wd 0.01 clip 1).\n"
            "step_s: median of --steps runs after a warm-up run (--steps 0: compile only, for the memory\n"
            "figures). --save DIR: DIR/unet (config.json +\n"
            "diffusion_pytorch_model.safetensors) and DIR/unet_io.safetensors (inputs, noise_pred of the last run).\n"
            "--base-dtype: the frozen weights in 16 bits (param_bytes: after conversion); --checkpointing\n"
            "(with --train): activation checkpointing of every resnet + transformer block; --optimizer (with\n"
            "--train): the AdamW state in f32 (default) or block-wise 8 bits.\n",
            TOKENS, GUIDANCE);
  else
    fprintf(f,
            "usage: vkpeft bench vae [--latent 64] [--batch 1] [--steps 3] [--seed 0] [--save DIR] [--profile]\n"
            "The SD AutoencoderKL decoder with random weights: (batch, 4, latent, latent) -> (batch, 3, 8 latent,\n"
            "8 latent). --save DIR: DIR/vae (diffusers folder) and DIR/vae_io.safetensors (sample, decoded).\n");
  fprintf(f, "--profile: device time per op of the last run (\"profile_ms\"; adds a barrier per node).\n");
}

// Returns -1 to go on, else an exit status.
static int parse_opts(int argc, char **argv, bool unet, bench_opts *o) {
  *o = (bench_opts){.config = "sd15", .latent = 64, .batch = 1, .steps = 3, .optimizer = "adamw"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = true;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout, unet);
      return VKP_EXIT_OK;
    }
    if (!strcmp(a, "--profile")) o->profile = true;
    else if (unet && !strcmp(a, "--cfg")) o->cfg = true;
    else if (unet && !strcmp(a, "--train")) o->train = true;
    else if (unet && !strcmp(a, "--checkpointing")) o->checkpointing = true;
    else if (unet && !strcmp(a, "--base-dtype")) ok = vkp_base_dtype_parse(v, &o->base_dtype) == VKP_OK, i++;
    else if (unet && !strcmp(a, "--optimizer")) ok = vkp_optim_name_is_adamw(v), o->optimizer = v, i++;
    else if (unet && !strcmp(a, "--config") && v) o->config = argv[++i];
    else if (!strcmp(a, "--latent")) ok = parse_int(v, 1, 1024, &o->latent), i++;
    else if (!strcmp(a, "--batch")) ok = parse_int(v, 1, 64, &o->batch), i++;
    else if (!strcmp(a, "--steps")) ok = parse_int(v, 0, 10000, &o->steps), i++;
    else if (!strcmp(a, "--save") && v) o->save = argv[++i];
    else if (!strcmp(a, "--seed") && v) {
      int s;
      ok = parse_int(v, 0, 1 << 30, &s), i++;
      o->seed = (uint64_t)s;
    } else ok = false;
    if (!ok) {
      fprintf(stderr, "vkpeft bench %s: bad option '%s'%s%s\n", unet ? "unet" : "vae", a, v ? " " : "", v ? v : "");
      usage(stderr, unet);
      return VKP_EXIT_BAD_INPUT;
    }
  }
  if (o->steps == 0 && (o->save || o->profile)) {
    fprintf(stderr, "vkpeft bench %s: --steps 0 compiles only: --save and --profile need a run\n", unet ? "unet" : "vae");
    return VKP_EXIT_BAD_INPUT;
  }
  if (o->cfg && o->train) {
    fprintf(stderr, "vkpeft bench unet: --cfg is for sampling; --train measures a training step\n");
    return VKP_EXIT_BAD_INPUT;
  }
  return -1;
}

// ---- a timed graph ------------------------------------------------------------------------------

typedef struct bench_input {
  vkp_tensor *t;
  float *data;             // owned
  size_t n;
} bench_input;

// Standard normal values (or `fill` when not NaN) for input t.
static bool input_new(vkp_tensor *t, vkp_rng *rng, float fill, bench_input *in) {
  in->t = t;
  in->n = t ? (size_t)vkp_tensor_numel(t) : 0;
  in->data = t ? malloc(in->n * sizeof(float)) : NULL;
  if (!in->data) return false;
  for (size_t i = 0; i < in->n; i++) in->data[i] = isnan(fill) ? (float)vkp_rng_normal(rng) : fill;
  return true;
}

typedef struct bench_result {
  double compile_s, first_s, step_s, step_min_s;
  uint64_t device_bytes, param_bytes;
  vkp_graph_stats stats;
  float loss;
} bench_result;

// Compiles g, runs it once (warm-up: pipelines) and `steps` times more; step_s = median. opt (may be
// NULL) gets its step scalars before each run.
static vkp_status time_runs(vkp_ctx *ctx, vkp_graph *g, bench_input *in, int nin, vkp_optimizer *opt, vkp_tensor *loss,
                            int steps, bench_result *r) {
  double t0 = now_s();
  VKP_TRY(vkp_graph_compile(g));
  r->compile_s = now_s() - t0;
  r->stats = vkp_graph_get_stats(g);
  r->device_bytes = vkp_ctx_memory_in_use(ctx);
  if (steps == 0) return VKP_OK;   // compile only: the memory figures
  for (int i = 0; i < nin; i++) VKP_TRY(vkp_graph_set_input(g, in[i].t, in[i].data, in[i].n * sizeof(float)));
  double *t = malloc((size_t)steps * sizeof *t);
  if (!t) return VKP_ERR_OOM;
  vkp_status st = VKP_OK;
  for (int k = 0; k <= steps && !st; k++) {
    double ts = now_s();
    if (opt) {
      vkp_step_scalars sc = {.loss_scale = 1.0f, .seed = (uint32_t)k};
      vkp_optimizer_prepare_step(opt, 1e-4f, true, &sc);
      st = vkp_graph_set_scalars(g, &sc);
    }
    if (!st) st = vkp_graph_run(g);
    if (!st && loss) st = vkp_graph_read(g, loss, &r->loss, sizeof r->loss);
    if (k == 0) r->first_s = now_s() - ts;
    else t[k - 1] = now_s() - ts;
    fprintf(stderr, "  run %d/%d: %.3f s%s\n", k, steps, now_s() - ts, k ? "" : " (warm-up)");
  }
  if (!st) {
    r->step_s = median(t, steps);
    r->step_min_s = t[0];   // sorted by median
  }
  free(t);
  return st;
}

static void print_common(const char *bench, vkp_ctx *ctx, const bench_opts *o, const bench_result *r) {
  const vkp_device_info *d = vkp_ctx_info(ctx);
  printf("{\"bench\": \"%s\", \"device\": \"%s\", \"latent\": %d, \"batch\": %d, \"steps\": %d,\n", bench, d->name,
         o->latent, o->batch, o->steps);
  printf(" \"step_s\": %.4f, \"step_min_s\": %.4f, \"first_run_s\": %.3f, \"compile_s\": %.3f,\n", r->step_s,
         r->step_min_s, r->first_s, r->compile_s);
  printf(" \"nodes\": %u, \"dispatches\": %u, \"param_bytes\": %llu, \"graph_arena_bytes\": %llu,\n", r->stats.nodes,
         r->stats.dispatches, (unsigned long long)r->param_bytes, (unsigned long long)r->stats.arena_bytes);
  printf(" \"peak_device_bytes\": %llu, \"peak_rss_bytes\": %.0f", (unsigned long long)r->device_bytes,
         peak_rss_bytes());
}

// ", "profile_ms": {op: [count, ms], ...}" for the 24 slowest ops of the last run.
static void print_profile(const vkp_graph *g) {
  vkp_op_time ops[24];
  uint32_t n = vkp_graph_profile(g, ops, 24);
  printf(",\n \"profile_ms\": {");
  for (uint32_t i = 0; i < n && i < 24; i++) printf("%s\"%s\": [%u, %.2f]", i ? ", " : "", ops[i].op, ops[i].count, ops[i].ms);
  printf("}");
}

// The end of the JSON object: the profile with --profile.
static void print_end(const bench_opts *o, const vkp_graph *g) {
  if (o->profile) print_profile(g);
  printf("}\n");
}

// Fills err for a failure st (when nothing has yet): the graph's message, else the context's.
static void describe_failure(vkp_ctx *ctx, vkp_graph *g, vkp_status st, const char *what, vkp_error *err) {
  if (!st || err->status) return;
  vkp_error_set(err, st, "%s: %s", what, g && vkp_graph_status(g) ? vkp_graph_error(g) : vkp_ctx_error(ctx));
}

// Writes the inputs and the named outputs of the last run to `path`.
static vkp_status save_io(vkp_graph *g, const char *path, bench_input *in, const char *const *in_names, int nin,
                          vkp_tensor **outs, const char *const *out_names, int nout, vkp_error *err) {
  vkp_safetensors_writer *w;
  VKP_TRY(vkp_safetensors_writer_new(&w, err));
  vkp_status st = VKP_OK;
  for (int i = 0; i < nin && !st; i++)
    st = vkp_safetensors_writer_add_f32(w, in_names[i], VKP_DTYPE_F32, in[i].t->ndim, in[i].t->shape, in[i].data, err);
  for (int i = 0; i < nout && !st; i++) {
    size_t n = (size_t)vkp_tensor_numel(outs[i]);
    float *buf = malloc(n * sizeof *buf);
    st = buf ? vkp_graph_read(g, outs[i], buf, n * sizeof *buf) : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    if (!st) st = vkp_safetensors_writer_add_f32(w, out_names[i], VKP_DTYPE_F32, outs[i]->ndim, outs[i]->shape, buf, err);
    free(buf);
  }
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  return st;
}

static int64_t count_params(const vkp_model *m) {
  int64_t n = 0;
  for (int i = 0; i < m->nparams; i++) n += vkp_param_numel(m->params[i]);
  return n;
}

// The base parameters as DIR/diffusion_pytorch_model.safetensors in f32, streamed one parameter at
// a time (vkp_sd_save_weights holds a host copy of the whole model, twice the size of SD 1.5's
// 3.4 GB, which does not fit beside other jobs on a small machine). Written to a temporary name,
// then renamed.
static vkp_status save_weights_streamed(vkp_model *m, const char *dir, vkp_error *err) {
  char path[1200], tmp[1300];
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  cJSON *h = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
  cJSON_AddStringToObject(meta, "format", "pt");
  uint64_t off = 0;
  int64_t maxn = 1;
  for (int i = 0; i < m->nparams; i++) {
    const vkp_param *p = m->params[i];
    if (p->adapter) continue;
    cJSON *e = cJSON_AddObjectToObject(h, p->name);
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; d < p->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)p->shape[d]));
    int64_t n = vkp_param_numel(p);
    cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + 4 * (uint64_t)n)));
    off += 4 * (uint64_t)n;
    if (n > maxn) maxn = n;
  }
  char *json = cJSON_PrintUnformatted(h);
  cJSON_Delete(h);
  float *buf = malloc((size_t)maxn * sizeof *buf);
  FILE *f = json && buf ? fopen(tmp, "wb") : NULL;
  vkp_status st = f ? VKP_OK : vkp_error_set(err, json && buf ? VKP_ERR_IO : VKP_ERR_OOM, "%s: cannot write", tmp);
  if (!st) {
    size_t len = strlen(json), pad = (8 - len % 8) % 8;
    uint64_t hl = len + pad;
    unsigned char le[8];
    for (int k = 0; k < 8; k++) le[k] = (unsigned char)(hl >> (8 * k));
    bool ok = fwrite(le, 1, 8, f) == 8 && fwrite(json, 1, len, f) == len && fwrite("        ", 1, pad, f) == pad;
    for (int i = 0; i < m->nparams && ok && !st; i++) {
      const vkp_param *p = m->params[i];
      if (p->adapter) continue;
      size_t n = (size_t)vkp_param_numel(p);
      st = vkp_param_read_f32(m, p, buf);   // host order is little-endian (x86, ARM)
      ok = !st && fwrite(buf, sizeof *buf, n, f) == n;
    }
    if (fclose(f) != 0) ok = false;
    if (!st && !ok) st = vkp_error_set(err, VKP_ERR_IO, "%s: write failed", tmp);
    else if (st) vkp_error_set(err, st, "%s", vkp_ctx_error(m->ctx));
    if (!st && rename(tmp, path) != 0) st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot rename to %s", tmp, path);
  }
  free(buf);
  cJSON_free(json);
  return st;
}

// ---- unet ---------------------------------------------------------------------------------------

// r 4, alpha 4 on the attention projections (diffusers' train_text_to_image_lora.py targets).
static vkp_status attach_lora(vkp_unet *u, vkp_error *err) {
  vkp_peft_config pc;
  vkp_peft_config_init(&pc, VKP_PEFT_LORA);
  static const char *const targets[] = {"to_q", "to_k", "to_v", "to_out.0"};
  pc.r = 4;
  pc.alpha = 4.0f;
  for (int i = 0; i < 4; i++) pc.target_modules[pc.n_target_modules++] = strdup(targets[i]);
  vkp_adapter *a;
  vkp_status st = vkp_peft_attach(u->model, &pc, 1, &a);
  vkp_peft_config_clear(&pc);
  return st ? vkp_error_set(err, st, "lora: %s", vkp_ctx_error(u->model->ctx)) : VKP_OK;
}

static vkp_status run_unet(vkp_ctx *ctx, const bench_opts *o, const vkp_unet_config *cfg, vkp_error *err) {
  vkp_unet *u = NULL;
  vkp_graph *g = NULL;
  vkp_param_set *ps = NULL;
  vkp_optimizer *opt = NULL;
  vkp_param **tp = NULL;
  vkp_tensor **pt = NULL, **grads = NULL;
  bench_input in[4] = {0};
  bench_result r = {0};
  char path[1024];
  uint64_t m0 = vkp_ctx_memory_in_use(ctx);
  vkp_status st = vkp_unet_new(ctx, cfg, o->seed, &u, err);
  if (st) return st;
  r.param_bytes = vkp_ctx_memory_in_use(ctx) - m0;
  int64_t params = count_params(u->model), trainable = 0;
  if (o->save) {
    snprintf(path, sizeof path, "%s/unet", o->save);
    if ((st = vkp_dir_create(path, err)) || (st = save_weights_streamed(u->model, path, err))) goto done;
    snprintf(path, sizeof path, "%s/unet/config.json", o->save);
    if ((st = vkp_unet_config_save(cfg, path, err))) goto done;
  }
  int nb = o->batch * (o->cfg ? 2 : 1), L = o->latent, Dc = cfg->cross_attention_dim[0];
  if ((st = vkp_graph_new(ctx, &g))) goto done;
  vkp_tensor *sample = vkp_tensor_input(g, "sample", VKP_DTYPE_F32, 4, (int64_t[]){nb, cfg->in_channels, L, L});
  vkp_tensor *timestep = vkp_tensor_input(g, "timestep", VKP_DTYPE_F32, 1, (int64_t[]){nb});
  vkp_tensor *ehs = vkp_tensor_input(g, "encoder_hidden_states", VKP_DTYPE_F32, 3, (int64_t[]){nb, TOKENS, Dc});
  vkp_rng rng = vkp_rng_new(o->seed + 1);
  const float nan = (float)NAN;
  if (!input_new(sample, &rng, nan, &in[0]) || !input_new(timestep, &rng, TIMESTEP, &in[1]) ||
      !input_new(ehs, &rng, nan, &in[2])) {
    st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    goto done;
  }
  if (o->train) {
    if ((st = attach_lora(u, err))) goto done;
    u->model->training = true;
    u->model->gradient_checkpointing = o->checkpointing;
  }
  if (o->base_dtype != VKP_DTYPE_F32) {   // after --save: the file keeps the f32 weights
    if ((st = vkp_model_set_base_dtype(u->model, o->base_dtype, NULL))) {
      st = vkp_error_set(err, st, "--base-dtype: %s", vkp_ctx_error(ctx));
      goto done;
    }
    r.param_bytes = vkp_ctx_memory_in_use(ctx) - m0;
  }
  vkp_tensor *pred = NULL, *out = NULL, *loss = NULL;
  if ((st = vkp_unet_forward(u, g, sample, timestep, ehs, &pred))) goto done;
  int nin = 3;
  if (o->train) {
    vkp_tensor *target = vkp_tensor_input(g, "target", VKP_DTYPE_F32, 4, pred->shape);
    if (!input_new(target, &rng, nan, &in[3])) {
      st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      goto done;
    }
    nin = 4;
    loss = vkp_mse(g, pred, target);
    vkp_graph_output(g, loss);
    int nt = vkp_model_trainable(u->model, &tp);
    pt = calloc((size_t)nt, sizeof *pt);
    grads = calloc((size_t)nt, sizeof *grads);
    if (nt <= 0 || !pt || !grads) {
      st = vkp_error_set(err, VKP_ERR_OOM, "no trainable parameters or out of host memory");
      goto done;
    }
    if ((st = vkp_param_set_new(ctx, &ps))) goto done;
    for (int i = 0; i < nt && !st; i++) {
      trainable += vkp_tensor_numel(vkp_param_tensor(u->model, tp[i]));
      pt[i] = vkp_param_tensor(u->model, tp[i]);
      st = vkp_param_set_add(ps, tp[i]->name, tp[i]->buf, 0, tp[i]->dtype, tp[i]->ndim, tp[i]->shape, true, NULL);
    }
    vkp_optim_config oc = vkp_adamw_config(0.01);
    if (!st) st = vkp_optim_name_parse(o->optimizer, &oc);   // adamw8bit: the same AdamW, 8-bit state
    oc.max_grad_norm = 1.0;
    if (!st) st = vkp_optimizer_new(ps, &oc, &opt);
    if (!st) st = vkp_graph_backward(g, loss, pt, nt, grads);
    if (st) goto done;
    vkp_optimizer_append(opt, g, grads);
  } else {
    vkp_graph_output(g, pred);
    out = pred;
    if (o->cfg) {   // uncond + s (cond - uncond), the batch being [uncond; cond]
      vkp_tensor *un = vkp_slice(g, pred, 0, 0, o->batch), *co = vkp_slice(g, pred, 0, o->batch, o->batch);
      out = vkp_add(g, un, vkp_scale(g, vkp_sub(g, co, un), GUIDANCE));
      vkp_graph_output(g, out);
    }
  }
  if ((st = time_runs(ctx, g, in, nin, opt, loss, o->steps, &r))) goto done;
  if (o->save && !o->train) {
    snprintf(path, sizeof path, "%s/unet_io.safetensors", o->save);
    static const char *const in_names[3] = {"sample", "timestep", "encoder_hidden_states"};
    static const char *const out_names[2] = {"noise_pred", "guided"};
    vkp_tensor *outs[2] = {pred, out};
    if ((st = save_io(g, path, in, in_names, 3, outs, out_names, o->cfg ? 2 : 1, err))) goto done;
  }
  r.device_bytes -= m0;
  print_common("unet", ctx, o, &r);
  printf(",\n \"config\": \"%s\", \"mode\": \"%s\", \"cfg\": %s, \"unet_batch\": %d, \"params\": %lld", o->config,
         o->train ? "train_lora" : "sample", o->cfg ? "true" : "false", nb, (long long)params);
  if (o->train)
    printf(", \"trainable_params\": %lld, \"optimizer\": \"%s\", \"optimizer_state_bytes\": %llu, \"loss\": %.6g",
           (long long)trainable, o->optimizer, (unsigned long long)vkp_optimizer_state_bytes(opt), r.loss);
  print_end(o, g);
done:
  describe_failure(ctx, g, st, "unet", err);
  vkp_graph_free(g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  free(tp), free(pt), free(grads);
  for (int i = 0; i < 4; i++) free(in[i].data);
  vkp_unet_free(u);
  return st;
}

static vkp_status run_vae(vkp_ctx *ctx, const bench_opts *o, vkp_error *err) {
  vkp_vae_config cfg;
  vae_config(&cfg);
  vkp_vae *v = NULL;
  vkp_graph *g = NULL;
  bench_input in = {0};
  bench_result r = {0};
  char path[1024];
  uint64_t m0 = vkp_ctx_memory_in_use(ctx);
  vkp_status st = vkp_vae_new(ctx, &cfg, o->seed, &v, err);
  if (st) return st;
  r.param_bytes = vkp_ctx_memory_in_use(ctx) - m0;
  if (o->save) {
    snprintf(path, sizeof path, "%s/vae", o->save);
    if ((st = vkp_vae_save(v, path, err))) goto done;
  }
  if ((st = vkp_graph_new(ctx, &g))) goto done;
  vkp_tensor *z = vkp_tensor_input(g, "sample", VKP_DTYPE_F32, 4, (int64_t[]){o->batch, cfg.latent_channels, o->latent, o->latent});
  vkp_rng rng = vkp_rng_new(o->seed + 1);
  if (!input_new(z, &rng, (float)NAN, &in)) {
    st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    goto done;
  }
  vkp_tensor *image;
  if ((st = vkp_vae_decode(v, g, z, &image))) goto done;
  vkp_graph_output(g, image);
  if ((st = time_runs(ctx, g, &in, 1, NULL, NULL, o->steps, &r))) goto done;
  if (o->save) {
    snprintf(path, sizeof path, "%s/vae_io.safetensors", o->save);
    static const char *const in_names[1] = {"sample"}, *const out_names[1] = {"vae_decoded"};
    if ((st = save_io(g, path, &in, in_names, 1, &image, out_names, 1, err))) goto done;
  }
  r.device_bytes -= m0;
  print_common("vae", ctx, o, &r);
  printf(", \"params\": %lld", (long long)count_params(v->model));
  print_end(o, g);
done:
  describe_failure(ctx, g, st, "vae", err);
  vkp_graph_free(g);
  free(in.data);
  vkp_vae_free(v);
  return st;
}

static int bench_sd(int argc, char **argv, bool unet) {
  bench_opts o;
  int rc = parse_opts(argc, argv, unet, &o);
  if (rc >= 0) return rc;
  vkp_unet_config cfg;
  if (unet && !unet_config(o.config, &cfg)) {
    fprintf(stderr, "vkpeft bench unet: unknown --config '%s' (sd15, sd21, tiny)\n", o.config);
    return VKP_EXIT_BAD_INPUT;
  }
  vkp_error err = {0};
  vkp_ctx *ctx;
  vkp_ctx_options co = {.profiling = o.profile};   // no validation layer: the driver alone
  if (vkp_ctx_new(&co, &ctx, &err)) return vkp_cli_fail("bench", err.status, err.msg);
  vkp_status st = unet ? run_unet(ctx, &o, &cfg, &err) : run_vae(ctx, &o, &err);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("bench", st, err.msg) : VKP_EXIT_OK;
}

int vkp_bench_unet(int argc, char **argv) { return bench_sd(argc, argv, true); }
int vkp_bench_vae(int argc, char **argv) { return bench_sd(argc, argv, false); }
