// cmd_bench_peft.c — `vkpeft bench peft`: what one training step of a ViT costs under each PEFT
// method. For every method, on a randomly initialised model in a fresh device context (so the
// memory numbers are that method's alone), it builds the same training graph as the classification
// trainer (vision/classify_train.c: ViT forward -> cross-entropy -> vkp_graph_backward over the
// trainable parameters -> vkp_optimizer_append (AdamW, clipping) -> compile) and reports:
//   - trainable and total parameters (total = base + adapter parameters, as HF PEFT counts them);
//   - planned peak device memory of training, in parts measured with vkp_ctx_memory_in_use after
//     each stage: parameters (base + adapters, incl. frozen adapter buffers such as VeRA's shared
//     projections), gradient + optimizer-state buffers (trainable parameters only), the graph
//     arena (vkp_graph_get_stats: activations kept for backward, transient gradients, inputs) and
//     the rest (optimizer tables, step scalars);
//   - dispatches per step and, with --steps S > 0, the median wall time of S steps after one
//     warm-up step (a step = set step scalars + upload the batch + submit/wait + read the loss),
//     and the median process CPU time of a step (on lavapipe: the work of all driver threads, a
//     number that other load on a shared machine disturbs less than wall time).
// Inputs are random (pixels uniform in [-1, 1), labels uniform); the values do not affect cost.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench_peft.h"
#include "vkp_classify.h"
#include "vkp_device.h"
#include "vkp_compare.h"
#include "vkp_graph.h"
#include "vkp_ops.h"
#include "vkp_optim.h"
#include "vkp_peft.h"
#include "vkp_rng.h"
#include "vkp_vit.h"
#include "vkpeft_cli.h"

// The PEFT configs are those of `vkpeft compare` (vision/classify_compare.c: the presets of the
// PEFT method table, core/peft/methods.c, and a hybrid). The default list (in that order) leaves
// out the presets marked extra, e.g. lora_all (LoRA on all six linear layers: the demo's
// fine-tuning stage, measured against PyTorch by bench/compare_torch.sh).
#define N_METHODS vkp_compare_method_count()

typedef struct row {
  const char *method;
  bool ok;
  bool planned_only;       // the arena exceeds the device's largest allocation: planned, not run
  char error[VKP_ERROR_MSG_MAX + 64];
  int64_t trainable, total;
  uint64_t param_bytes;    // base + adapter parameters (and frozen adapter buffers)
  uint64_t optim_bytes;    // gradient + optimizer-state buffers of the trainable parameters
  uint64_t arena_bytes;    // the graph arena (planned peak of intermediates + inputs)
  uint64_t unplanned_bytes;// what the intermediates would need without reuse
  uint64_t other_bytes;    // optimizer tables, step scalars, ...
  uint64_t total_bytes;    // vkp_ctx_memory_in_use after compile
  uint32_t nodes, dispatches;
  double build_s;          // graph build + backward + compile
  int steps;               // timed steps
  double step_s;           // median wall time of a step (0 when not timed)
  double step_cpu_s;       // median process CPU time of a step (all driver threads: the work done)
  float loss;              // loss of the last step
} row;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// CPU time of the whole process: on a CPU driver (lavapipe) the work done, less sensitive to
// other load on the machine than wall time.
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: vkpeft bench peft [--config vit-b|vit-s|demo] [--batch N] [--steps S] [--methods a,b,...] [--json]\n"
          "         [--base-dtype f32|f16|bf16] [--optimizer adamw|adamw8bit] [--checkpointing]\n"
          "         [--unfused-lora] [--rank R]\n"
          "For each PEFT method, on a randomly initialised ViT in a fresh device context: trainable and\n"
          "total parameters, planned peak device memory of a training step (parameters + gradient and\n"
          "AdamW state + graph arena + rest), dispatches per step and, with --steps S > 0, the median\n"
          "time (wall and process CPU) of S training steps after one warm-up step (0 = compile only;\n"
          "default 3).\n"
          "  --config  vit-b: 224/16, hidden 768, 12 layers, 12 heads, MLP 3072, 3 channels, 1000 labels, batch 64\n"
          "            vit-s: 224/16, hidden 384, 12 layers, 6 heads, MLP 1536, 3 channels, 1000 labels, batch 32\n"
          "            demo:  28/7, hidden 64, 4 layers, 4 heads, MLP 128, 1 channel, 10 labels, batch 64 (default)\n"
          "  --methods default: every method but the extra presets (lora_all); known:");
  for (int i = 0; i < N_METHODS; i++) fprintf(f, " %s", vkp_compare_method_name(i));
  fprintf(f,
          "\n  --base-dtype  storage of the frozen base's Linear/Conv2d/Embedding weights (default f32)\n"
          "  --optimizer   adamw (f32 state, default) or adamw8bit (block-wise 8-bit state)\n"
          "  --checkpointing  activation checkpointing: every layer recomputed in backward\n"
          "  --unfused-lora   LoRA linears as separate matmul, scale and add ops (before/after of the fused form)\n"
          "  --rank R  rank of the low-rank methods (their \"r\", with lora_alpha = 2R where they have one;\n"
          "            default: each method's own, LoRA r 4 alpha 8)\n"
          "  --json    one JSON object on stdout (the table then goes to stderr)\n"
          "Progress lines go to stderr.\n");
}

static bool parse_int(const char *s, long lo, long hi, long *out) {
  if (!s) return false;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}


enum { CONFIG_DEMO, CONFIG_VIT_S, CONFIG_VIT_B };
static const char *const config_names[] = {"demo", "vit-s", "vit-b"};

static void vit_config(int config, vkp_vit_config *c, int *batch) {
  vkp_vit_config_default(c);
  c->layer_norm_eps = 1e-6f;
  c->qkv_bias = true;
  c->gelu_tanh = false;
  if (config == CONFIG_VIT_B) {   // ViT-B/16 (google/vit-base-patch16-224)
    c->image_size = 224, c->patch_size = 16, c->num_channels = 3, c->hidden_size = 768;
    c->num_hidden_layers = 12, c->num_attention_heads = 12, c->intermediate_size = 3072, c->num_labels = 1000;
    *batch = 64;
  } else if (config == CONFIG_VIT_S) {   // ViT-S/16 (DeiT-S shape)
    c->image_size = 224, c->patch_size = 16, c->num_channels = 3, c->hidden_size = 384;
    c->num_hidden_layers = 12, c->num_attention_heads = 6, c->intermediate_size = 1536, c->num_labels = 1000;
    *batch = 32;
  } else {       // the demo's ViT (configs/mnist_pretrain.json)
    c->image_size = 28, c->patch_size = 7, c->num_channels = 1, c->hidden_size = 64;
    c->num_hidden_layers = 4, c->num_attention_heads = 4, c->intermediate_size = 128, c->num_labels = 10;
    *batch = 64;
  }
  for (int i = 0; i < c->num_labels && i < 256; i++) snprintf(c->labels[i], sizeof c->labels[i], "LABEL_%d", i);
}

// Measures one method; fills r (r->ok false with r->error on failure).
// What the run varies besides the method: the frozen base's storage and the optimizer state.
typedef struct bench_memory_opts {
  vkp_dtype base_dtype;    // f32, f16 or bf16 (vkp_model_set_base_dtype)
  const char *optimizer;   // "adamw" or "adamw8bit"
  bool checkpointing;      // every ViT layer an activation-checkpoint segment
  bool unfused_lora;       // LoRA linears as separate matmul, scale and add ops (vkp_graph_set_lora_fusion)
  long rank;               // > 0: the "r" of every method entry that has one (lora_alpha = 2r)
} bench_memory_opts;

// Sets "r" (and "lora_alpha" = 2r where present) of every entry of a method's PEFT list.
static void set_rank(cJSON *peft, long rank) {
  cJSON *e;
  cJSON_ArrayForEach(e, peft) {
    if (cJSON_GetObjectItem(e, "r")) cJSON_ReplaceItemInObject(e, "r", cJSON_CreateNumber((double)rank));
    if (cJSON_GetObjectItem(e, "lora_alpha"))
      cJSON_ReplaceItemInObject(e, "lora_alpha", cJSON_CreateNumber(2.0 * (double)rank));
  }
}

static void bench_method(int method, const vkp_vit_config *vc, int batch, int steps, const bench_memory_opts *mo,
                         row *r) {
  memset(r, 0, sizeof *r);
  r->method = vkp_compare_method_name(method);
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  vkp_vit *v = NULL;
  vkp_param_set *ps = NULL;
  vkp_optimizer *opt = NULL;
  vkp_graph *g = NULL;
  vkp_param **tp = NULL;
  vkp_tensor **pt = NULL, **grads = NULL;
  float *pixels = NULL;
  int32_t *labels = NULL;
  double *times = NULL;
  cJSON *peft = NULL;
  const char *fail = NULL;
  vkp_ctx_options o = {0};   // no validation layer: measure the driver alone
  if (vkp_ctx_new(&o, &ctx, &err)) {
    snprintf(r->error, sizeof r->error, "device: %s", err.msg);
    return;
  }
  uint64_t m0 = vkp_ctx_memory_in_use(ctx);
  if (vkp_vit_new(ctx, vc, 1, &v)) {
    fail = vkp_ctx_error(ctx);
    goto done;
  }
  peft = vkp_compare_method_peft(method, &err);
  if (!peft) {
    fail = err.msg;
    goto done;
  }
  if (mo->rank > 0) set_rank(peft, mo->rank);
  if (vkp_classify_attach(v, peft, 7, &err)) {
    fail = err.msg;
    goto done;
  }
  if (vkp_model_set_base_dtype(v->model, mo->base_dtype, NULL)) {
    fail = vkp_ctx_error(ctx);
    goto done;
  }
  v->model->gradient_checkpointing = mo->checkpointing;
  uint64_t m1 = vkp_ctx_memory_in_use(ctx);
  r->param_bytes = m1 - m0;
  vkp_peft_report rep = vkp_peft_get_report(v->model);
  r->trainable = rep.trainable_params;
  r->total = rep.total_params + rep.adapter_params;

  // The optimizer over the trainable parameters (as the trainer: AdamW or AdamW8bit, weight decay
  // 0.01, clip 1).
  int nt = vkp_model_trainable(v->model, &tp);
  if (nt <= 0) {
    fail = "nothing to train";
    goto done;
  }
  if (vkp_param_set_new(ctx, &ps)) {
    fail = vkp_ctx_error(ctx);
    goto done;
  }
  for (int i = 0; i < nt; i++)
    if (vkp_param_set_add(ps, tp[i]->name, tp[i]->buf, 0, tp[i]->dtype, tp[i]->ndim, tp[i]->shape, true, NULL)) {
      fail = vkp_ctx_error(ctx);
      goto done;
    }
  vkp_optim_config oc = vkp_adamw_config(0.01);
  oc.max_grad_norm = 1.0;
  if (vkp_optim_name_parse(mo->optimizer, &oc) || vkp_optimizer_new(ps, &oc, &opt)) {
    fail = vkp_ctx_error(ctx);
    goto done;
  }
  uint64_t m2 = vkp_ctx_memory_in_use(ctx);
  r->optim_bytes = m2 - m1;

  // The training graph, exactly as vision/classify_train.c builds it.
  double t0 = now_s();
  if (vkp_graph_new(ctx, &g)) {
    fail = vkp_ctx_error(ctx);
    goto done;
  }
  vkp_graph_set_lora_fusion(g, !mo->unfused_lora);
  int64_t S = vc->image_size;
  vkp_tensor *px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){batch, vc->num_channels, S, S});
  vkp_tensor *lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){batch});
  v->model->training = true;
  vkp_vit_outputs out;
  vkp_vit_forward(v, g, px, &out);
  vkp_tensor *loss = vkp_cross_entropy(g, out.logits, lab);
  vkp_graph_output(g, loss);
  vkp_graph_output(g, out.logits);
  pt = calloc((size_t)nt, sizeof *pt);
  grads = calloc((size_t)nt, sizeof *grads);
  if (!pt || !grads) {
    fail = "out of host memory";
    goto done;
  }
  for (int i = 0; i < nt; i++) pt[i] = vkp_param_tensor(v->model, tp[i]);
  vkp_status st = vkp_graph_backward(g, loss, pt, nt, grads);
  if (!st) vkp_optimizer_append(opt, g, grads);
  if (!st) st = vkp_graph_compile(g);
  r->build_s = now_s() - t0;
  vkp_graph_stats gs = vkp_graph_get_stats(g);
  r->nodes = gs.nodes;
  r->dispatches = gs.dispatches;
  r->arena_bytes = gs.arena_bytes;
  r->unplanned_bytes = gs.unplanned_bytes;
  uint64_t max_alloc = vkp_ctx_info(ctx)->max_allocation_size;
  if (st && !vkp_graph_status(g) && max_alloc && gs.arena_bytes > max_alloc) {
    // The memory plan is complete, only the arena (one buffer) cannot be allocated on this
    // device: report the planned numbers, run nothing.
    r->planned_only = true;
    r->dispatches = 0;
    r->other_bytes = vkp_ctx_memory_in_use(ctx) - m2;
    r->total_bytes = r->param_bytes + r->optim_bytes + r->arena_bytes + r->other_bytes;
    snprintf(r->error, sizeof r->error, "%s", vkp_ctx_error(ctx));
    r->ok = true;
    goto done;
  }
  if (st) {
    fail = vkp_graph_status(g) ? vkp_graph_error(g) : vkp_ctx_error(ctx);
    goto done;
  }
  r->total_bytes = vkp_ctx_memory_in_use(ctx) - m0;
  r->other_bytes = r->total_bytes - r->param_bytes - r->optim_bytes - r->arena_bytes;

  if (steps > 0) {
    size_t npx = (size_t)vkp_tensor_numel(px);
    pixels = malloc(npx * sizeof *pixels);
    labels = malloc((size_t)batch * sizeof *labels);
    times = malloc(2 * (size_t)steps * sizeof *times);   // wall, then CPU
    if (!pixels || !labels || !times) {
      fail = "out of host memory";
      goto done;
    }
    vkp_rng rng = vkp_rng_new(0);   // as torch.manual_seed(0); torch.empty(npx).uniform_(-1, 1); ...
    vkp_rng_uniform_fill(&rng, pixels, npx, -1.0f, 1.0f);
    for (int i = 0; i < batch; i++) labels[i] = (int32_t)vkp_rng_int(&rng, 0, vc->num_labels);
    for (int k = 0; k <= steps; k++) {   // k = 0 warms up
      double ts = now_s(), tc = cpu_s();
      vkp_step_scalars sc = {.loss_scale = 1.0f, .seed = (uint32_t)k};
      vkp_optimizer_prepare_step(opt, 1e-3f, true, &sc);
      st = vkp_graph_set_scalars(g, &sc);
      if (!st) st = vkp_graph_set_input(g, px, pixels, npx * sizeof *pixels);
      if (!st) st = vkp_graph_set_input(g, lab, labels, (size_t)batch * sizeof *labels);
      if (!st) st = vkp_graph_run(g);
      if (!st) st = vkp_graph_read(g, loss, &r->loss, sizeof r->loss);
      if (st) {
        fail = vkp_ctx_error(ctx);
        goto done;
      }
      if (k > 0) times[k - 1] = now_s() - ts, times[steps + k - 1] = cpu_s() - tc;
    }
    if (getenv("VKPEFT_PROFILE")) {   // device time per op of the last step (timestamps around every node)
      vkp_op_time ops[64];
      uint32_t n = vkp_graph_profile(g, ops, 64);
      double total = 0;
      for (uint32_t i = 0; i < n; i++) total += ops[i].ms;
      fprintf(stderr, "profile of one %s step (%u dispatches): %.1f ms\n", r->method, r->dispatches, total);
      for (uint32_t i = 0; i < n && i < 30; i++)
        fprintf(stderr, "  %-24s %5u nodes %5u dispatches %9.3f ms  %5.1f%%\n", ops[i].op, ops[i].count,
                ops[i].dispatches, ops[i].ms, 100 * ops[i].ms / total);
    }
    r->steps = steps;
    r->step_s = median(times, steps);
    r->step_cpu_s = median(times + steps, steps);
  }
  r->ok = true;
done:
  if (fail) snprintf(r->error, sizeof r->error, "%s", fail);
  vkp_graph_free(g);   // graphs before their optimizer
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  free(tp), free(pt), free(grads), free(pixels), free(labels), free(times);
  cJSON_Delete(peft);
  vkp_vit_free(v);
  vkp_ctx_free(ctx);
}

static double mib(uint64_t b) { return (double)b / 1048576.0; }

static const row *find_row(const row *rows, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (rows[i].ok && !strcmp(rows[i].method, name)) return &rows[i];
  return NULL;
}

static void print_table(FILE *f, const row *rows, int n, int batch) {
  const row *full = find_row(rows, n, "full");
  fprintf(f, "| method | trainable | total params | trainable %% | params MiB | grads+AdamW MiB | graph arena MiB | "
             "other MiB | peak MiB | vs full | dispatches | step ms | CPU ms | images/s |\n"
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int i = 0; i < n; i++) {
    const row *r = &rows[i];
    if (!r->ok) {
      fprintf(f, "| %s | failed: %s ||||||||||||\n", r->method, r->error);
      continue;
    }
    char vs[32] = "", ms[32] = "-", cms[32] = "-", ips[32] = "-", disp[32] = "n/a";
    if (!r->planned_only) snprintf(disp, sizeof disp, "%u", r->dispatches);
    if (full) snprintf(vs, sizeof vs, "%.2f", (double)r->total_bytes / (double)full->total_bytes);
    if (r->steps > 0) {
      snprintf(ms, sizeof ms, "%.1f", r->step_s * 1e3);
      snprintf(cms, sizeof cms, "%.1f", r->step_cpu_s * 1e3);
      snprintf(ips, sizeof ips, "%.1f", batch / r->step_s);
    }
    fprintf(f, "| %s%s | %lld | %lld | %.3f%% | %.1f | %.2f | %.1f | %.2f | %.1f | %s | %s | %s | %s | %s |\n", r->method,
            r->planned_only ? " (planned only*)" : "",
            (long long)r->trainable, (long long)r->total, 100.0 * (double)r->trainable / (double)r->total,
            mib(r->param_bytes), mib(r->optim_bytes), mib(r->arena_bytes), mib(r->other_bytes), mib(r->total_bytes), vs,
            disp, ms, cms, ips);
  }
  for (int i = 0; i < n; i++)
    if (rows[i].planned_only)
      fprintf(f, "\n* %s: memory as planned; not run: %s\n", rows[i].method, rows[i].error);
  const row *lora = find_row(rows, n, "lora");
  if (lora && full)
    fprintf(f, "\nLoRA / full fine-tuning peak memory: %.3f (%.1f MiB / %.1f MiB)\n",
            (double)lora->total_bytes / (double)full->total_bytes, mib(lora->total_bytes), mib(full->total_bytes));
}

static cJSON *rows_json(const row *rows, int n, int batch) {
  cJSON *arr = cJSON_CreateArray();
  for (int i = 0; i < n; i++) {
    const row *r = &rows[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", r->method);
    cJSON_AddBoolToObject(o, "ok", r->ok);
    if (!r->ok) {
      cJSON_AddStringToObject(o, "error", r->error);
      cJSON_AddItemToArray(arr, o);
      continue;
    }
    cJSON_AddBoolToObject(o, "runnable", !r->planned_only);
    if (r->planned_only) cJSON_AddStringToObject(o, "note", r->error);
    cJSON_AddNumberToObject(o, "trainable_params", (double)r->trainable);
    cJSON_AddNumberToObject(o, "total_params", (double)r->total);
    cJSON_AddNumberToObject(o, "param_bytes", (double)r->param_bytes);
    cJSON_AddNumberToObject(o, "grad_optimizer_bytes", (double)r->optim_bytes);
    cJSON_AddNumberToObject(o, "graph_arena_bytes", (double)r->arena_bytes);
    cJSON_AddNumberToObject(o, "graph_unplanned_bytes", (double)r->unplanned_bytes);
    cJSON_AddNumberToObject(o, "other_bytes", (double)r->other_bytes);
    cJSON_AddNumberToObject(o, "peak_bytes", (double)r->total_bytes);
    cJSON_AddNumberToObject(o, "nodes", r->nodes);
    if (r->planned_only) cJSON_AddNullToObject(o, "dispatches");
    else cJSON_AddNumberToObject(o, "dispatches", r->dispatches);
    cJSON_AddNumberToObject(o, "build_compile_s", r->build_s);
    cJSON_AddNumberToObject(o, "timed_steps", r->steps);
    if (r->steps > 0) {
      cJSON_AddNumberToObject(o, "step_ms", r->step_s * 1e3);
      cJSON_AddNumberToObject(o, "step_cpu_ms", r->step_cpu_s * 1e3);
      cJSON_AddNumberToObject(o, "images_per_s", batch / r->step_s);
      cJSON_AddNumberToObject(o, "loss", r->loss);
    } else {
      cJSON_AddNullToObject(o, "step_ms");
      cJSON_AddNullToObject(o, "images_per_s");
    }
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

int vkp_bench_peft(int argc, char **argv) {
  int config = CONFIG_DEMO;
  bool json = false;
  long batch = 0, steps = 3;
  const char *list = NULL;
  bench_memory_opts mo = {VKP_DTYPE_F32, "adamw", false, false, 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = true;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return VKP_EXIT_OK;
    } else if (!strcmp(a, "--json")) {
      json = true;
      continue;
    } else if (!strcmp(a, "--checkpointing")) {
      mo.checkpointing = true;
      continue;
    } else if (!strcmp(a, "--unfused-lora")) {
      mo.unfused_lora = true;
      continue;
    } else if (!strcmp(a, "--config")) {
      ok = false;
      for (int c = 0; c < (int)(sizeof config_names / sizeof *config_names) && v; c++)
        if (!strcmp(v, config_names[c])) config = c, ok = true;
    } else if (!strcmp(a, "--rank")) {
      ok = parse_int(v, 1, 4096, &mo.rank);
    } else if (!strcmp(a, "--batch")) {
      ok = parse_int(v, 1, 1 << 16, &batch);
    } else if (!strcmp(a, "--steps")) {
      ok = parse_int(v, 0, 100000, &steps);
    } else if (!strcmp(a, "--methods")) {
      ok = v && *v;
      list = v;
    } else if (!strcmp(a, "--base-dtype")) {
      ok = vkp_base_dtype_parse(v, &mo.base_dtype) == VKP_OK;
    } else if (!strcmp(a, "--optimizer")) {
      ok = vkp_optim_name_is_adamw(v);
      mo.optimizer = v;
    } else {
      fprintf(stderr, "vkpeft bench peft: unknown option '%s'\n", a);
      usage(stderr);
      return VKP_EXIT_BAD_INPUT;
    }
    if (!ok) {
      fprintf(stderr, "vkpeft bench peft: bad or missing value for %s\n", a);
      usage(stderr);
      return VKP_EXIT_BAD_INPUT;
    }
    i++;
  }
  // The methods to run, in the order given.
  int sel[64], nsel = 0;
  if (list) {
    for (const char *p = list; *p;) {
      size_t len = strcspn(p, ",");
      int m = vkp_compare_method_find(p, len);
      if (m < 0 || nsel == 64) {
        fprintf(stderr, "vkpeft bench peft: --methods: unknown method '%.*s' (known:", (int)len, p);
        for (int k = 0; k < N_METHODS; k++) fprintf(stderr, " %s", vkp_compare_method_name(k));
        fprintf(stderr, ")\n");
        return VKP_EXIT_BAD_INPUT;
      }
      sel[nsel++] = m;
      p += len + (p[len] == ',');
    }
  } else {
    for (int k = 0; k < N_METHODS && nsel < 64; k++)
      if (vkp_compare_method_default(k)) sel[nsel++] = k;
  }
  vkp_vit_config vc;
  int def_batch;
  vit_config(config, &vc, &def_batch);
  if (!batch) batch = def_batch;

  // Device description (a context only for its info).
  vkp_ctx *ctx = NULL;
  vkp_error err = {0};
  vkp_ctx_options o = {0};
  if (vkp_ctx_new(&o, &ctx, &err)) return vkp_cli_fail("bench", err.status, err.msg);
  vkp_device_info info = *vkp_ctx_info(ctx);
  const char *kernels = vkp_kernel_family_name(vkp_ctx_kernels(ctx));
  vkp_ctx_free(ctx);
  double load[3] = {0};
  if (getloadavg(load, 3) < 0) load[0] = load[1] = load[2] = -1;
  const char *lp = getenv("LP_NUM_THREADS");
  long threads = lp && *lp ? strtol(lp, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  fprintf(stderr,
          "bench peft: %s, %d layers, hidden %d, image %d/%d, batch %ld, %d method(s), %ld timed step(s), base %s, "
          "%s; %s (%s %s), %s kernels, %ld CPU threads, load average %.2f\n",
          config_names[config], vc.num_hidden_layers, vc.hidden_size, vc.image_size, vc.patch_size, batch, nsel, steps,
          vkp_dtype_name(mo.base_dtype), mo.optimizer,
          info.name, info.driver_name, info.driver_info, kernels, threads, load[0]);

  row *rows = calloc((size_t)nsel, sizeof *rows);
  if (!rows) return vkp_cli_fail("bench", VKP_ERR_OOM, "out of host memory");
  int failed = 0;
  double t_all = now_s();
  for (int k = 0; k < nsel; k++) {
    row *r = &rows[k];
    double t0 = now_s();
    bench_method(sel[k], &vc, (int)batch, (int)steps, &mo, r);
    if (!r->ok) {
      failed++;
      fprintf(stderr, "[%d/%d] %s: FAILED: %s\n", k + 1, nsel, r->method, r->error);
      continue;
    }
    fprintf(stderr, "[%d/%d] %-12s %10lld trainable, peak %8.1f MiB, %5u dispatches, compile %.1f s", k + 1, nsel,
            r->method, (long long)r->trainable, mib(r->total_bytes), r->dispatches, r->build_s);
    if (r->planned_only) fprintf(stderr, " (planned only: %s)", r->error);
    if (r->steps > 0)
      fprintf(stderr, ", step %.1f ms (%.1f images/s), CPU %.1f ms", r->step_s * 1e3, batch / r->step_s, r->step_cpu_s * 1e3);
    double la[1];
    if (getloadavg(la, 1) == 1) fprintf(stderr, ", load %.2f", la[0]);
    fprintf(stderr, " [%.1f s]\n", now_s() - t0);
  }
  double total_s = now_s() - t_all;
  double load_end[3] = {0};
  if (getloadavg(load_end, 3) < 0) load_end[0] = -1;

  print_table(json ? stderr : stdout, rows, nsel, (int)batch);
  if (json) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "bench", "peft");
    cJSON_AddStringToObject(j, "config", config_names[config]);
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddNumberToObject(m, "image_size", vc.image_size);
    cJSON_AddNumberToObject(m, "patch_size", vc.patch_size);
    cJSON_AddNumberToObject(m, "num_channels", vc.num_channels);
    cJSON_AddNumberToObject(m, "hidden_size", vc.hidden_size);
    cJSON_AddNumberToObject(m, "num_hidden_layers", vc.num_hidden_layers);
    cJSON_AddNumberToObject(m, "num_attention_heads", vc.num_attention_heads);
    cJSON_AddNumberToObject(m, "intermediate_size", vc.intermediate_size);
    cJSON_AddNumberToObject(m, "num_labels", vc.num_labels);
    cJSON_AddNumberToObject(j, "batch", (double)batch);
    cJSON_AddNumberToObject(j, "steps", (double)steps);
    cJSON_AddStringToObject(j, "optimizer", "adamw (weight decay 0.01, max_grad_norm 1.0)");
    cJSON_AddStringToObject(j, "device", info.name);
    cJSON_AddStringToObject(j, "kernels", kernels);
    char drv[600];
    snprintf(drv, sizeof drv, "%s %s", info.driver_name, info.driver_info);
    cJSON_AddStringToObject(j, "driver", drv);
    cJSON_AddNumberToObject(j, "cpu_threads", (double)threads);
    cJSON_AddNumberToObject(j, "loadavg_start", load[0]);
    cJSON_AddNumberToObject(j, "loadavg_end", load_end[0]);
    cJSON_AddNumberToObject(j, "seconds", total_s);
    cJSON_AddItemToObject(j, "methods", rows_json(rows, nsel, (int)batch));
    const row *lora = find_row(rows, nsel, "lora"), *full = find_row(rows, nsel, "full");
    if (lora && full) cJSON_AddNumberToObject(j, "lora_over_full_peak_memory", (double)lora->total_bytes / (double)full->total_bytes);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (text) printf("%s\n", text);
    free(text);
  }
  free(rows);
  return failed ? VKP_EXIT_FAIL : VKP_EXIT_OK;
}
