// ops_bench.c — micro-benchmarks of the elementwise, copy and reduction kernels on the shapes of the
// demo ViT's training step (image 28, patch 4: T = 50 tokens, hidden 64, MLP 128, batch 64).
//
// Each case builds COPIES independent nodes of one op on random external inputs, compiles one
// graph, runs it REPS times with per-dispatch timestamps and reports the device time of one node
// (min and median over the runs; the machine is shared, the minimum is the number to compare),
// the effective bandwidth (bytes read + written by one node / min time) and the process CPU time
// per node (all of lavapipe's threads; includes the host's submit; less sensitive to other load).
// Usage: vkp_ops_bench [REPS] [NAME-SUBSTRING]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "vkp_device.h"
#include "vkp_graph.h"
#include "vkp_ops.h"

#define COPIES 8
#define MAX_IN 4

typedef struct bench_case {
  const char *name;
  const char *op;     // profiled op name
  int n_in;
  int ndim[MAX_IN];
  int64_t shape[MAX_IN][4];
  vkp_tensor *(*build)(vkp_graph *g, vkp_tensor **in);
  double bytes;       // bytes moved by one node
  int copies;         // nodes per graph (0 = COPIES)
} bench_case;

static vkp_tensor *b_add(vkp_graph *g, vkp_tensor **in) { return vkp_add(g, in[0], in[1]); }
static vkp_tensor *b_mul(vkp_graph *g, vkp_tensor **in) { return vkp_mul(g, in[0], in[1]); }
static vkp_tensor *b_gelu(vkp_graph *g, vkp_tensor **in) { return vkp_gelu(g, in[0]); }
static vkp_tensor *b_scale(vkp_graph *g, vkp_tensor **in) { return vkp_scale(g, in[0], 0.5f); }
static vkp_tensor *b_gelu_grad(vkp_graph *g, vkp_tensor **in) {
  // unary_grad node: the gradient of sum(gelu(x) * w) with respect to x.
  vkp_tensor *loss = vkp_sum(g, vkp_mul(g, vkp_gelu(g, in[0]), in[1]));
  vkp_tensor *grad = NULL;
  vkp_graph_backward(g, loss, &in[0], 1, &grad);
  return grad;
}
static vkp_tensor *b_bthd_bhtd(vkp_graph *g, vkp_tensor **in) {
  return vkp_contiguous(g, vkp_permute(g, in[0], (int[]){0, 2, 1, 3}));
}
static vkp_tensor *b_patch_t(vkp_graph *g, vkp_tensor **in) {   // (B, C, N) -> (B, N, C)
  return vkp_contiguous(g, vkp_transpose(g, in[0], 1, 2));
}
static vkp_tensor *b_sum_rows(vkp_graph *g, vkp_tensor **in) {   // bias gradient: sum over B*T
  return vkp_sum_to(g, in[0], 1, &in[0]->shape[in[0]->ndim - 1]);
}
static vkp_tensor *b_sum_last(vkp_graph *g, vkp_tensor **in) { return vkp_sum_axis(g, in[0], -1); }
static vkp_tensor *b_sum_all(vkp_graph *g, vkp_tensor **in) { return vkp_sum(g, in[0]); }
static vkp_tensor *b_sum_chan(vkp_graph *g, vkp_tensor **in) {   // conv bias gradient (N, C, HW) -> (1, C, 1)
  return vkp_sum_to(g, in[0], 3, (int64_t[]){1, in[0]->shape[1], 1});
}
static vkp_tensor *b_accumulate(vkp_graph *g, vkp_tensor **in) { return vkp_accumulate(g, in[0], in[1]); }
static vkp_tensor *b_fill(vkp_graph *g, vkp_tensor **in) { return vkp_fill(g, VKP_DTYPE_F32, 2, in[0]->shape, 1.0f); }
static vkp_tensor *b_concat(vkp_graph *g, vkp_tensor **in) { return vkp_concat(g, in[0], in[1], 1); }

#define F4 4.0
static const bench_case cases[] = {
    {"add (64,50,64)+(64,50,64)", "binary", 2, {3, 3}, {{64, 50, 64}, {64, 50, 64}}, b_add, 3 * F4 * 204800, 0},
    {"add (64,50,128)+(64,50,128)", "binary", 2, {3, 3}, {{64, 50, 128}, {64, 50, 128}}, b_add, 3 * F4 * 409600, 0},
    {"add bias (3200,64)+(64)", "binary", 2, {2, 1}, {{3200, 64}, {64}}, b_add, 2 * F4 * 204800, 0},
    {"mul column (3200,64)*(3200,1)", "binary", 2, {2, 2}, {{3200, 64}, {3200, 1}}, b_mul, 2 * F4 * 204800, 0},
    {"add channel (64,64,49)+(64,1)", "binary", 2, {3, 2}, {{64, 64, 49}, {64, 1}}, b_add, 2 * F4 * 200704, 0},
    {"add odd (3,1001,7)+(3,1001,7)", "binary", 2, {3, 3}, {{3, 1001, 7}, {3, 1001, 7}}, b_add, 3 * F4 * 21021, 0},
    {"gelu (3200,128)", "unary", 1, {2}, {{3200, 128}}, b_gelu, 2 * F4 * 409600, 0},
    {"scale (3200,128)", "unary", 1, {2}, {{3200, 128}}, b_scale, 2 * F4 * 409600, 0},
    {"scale (3200,64)", "unary", 1, {2}, {{3200, 64}}, b_scale, 2 * F4 * 204800, 0},
    {"gelu backward (3200,128)", "unary_grad", 2, {2, 2}, {{3200, 128}, {3200, 128}}, b_gelu_grad, 3 * F4 * 409600, 1},
    {"contiguous (B,T,H,D)->(B,H,T,D) (64,50,4,16)", "contiguous", 1, {4}, {{64, 50, 4, 16}}, b_bthd_bhtd,
     2 * F4 * 204800, 0},
    {"contiguous (B,H,T,D)->(B,T,H,D) (64,4,50,16)", "contiguous", 1, {4}, {{64, 4, 50, 16}}, b_bthd_bhtd,
     2 * F4 * 204800, 0},
    {"contiguous transpose (64,64,49)->(64,49,64)", "contiguous", 1, {3}, {{64, 64, 49}}, b_patch_t,
     2 * F4 * 200704, 0},
    {"concat (64,1,64)|(64,49,64)", "concat", 2, {3, 3}, {{64, 1, 64}, {64, 49, 64}}, b_concat, 2 * F4 * 204800, 0},
    {"accumulate (8,64) LoRA A gradient", "accumulate", 2, {2, 2}, {{8, 64}, {8, 64}}, b_accumulate, 3 * F4 * 512, 0},
    {"accumulate (128,64)", "accumulate", 2, {2, 2}, {{128, 64}, {128, 64}}, b_accumulate, 3 * F4 * 8192, 0},
    {"fill (3200,64)", "fill", 1, {2}, {{3200, 64}}, b_fill, F4 * 204800, 0},
    {"fill (64,10)", "fill", 1, {2}, {{64, 10}}, b_fill, F4 * 640, 0},
    {"sum_to (3200,64)->(64)", "reduce_sum", 1, {2}, {{3200, 64}}, b_sum_rows, F4 * 204800, 0},
    {"sum_to (3200,128)->(128)", "reduce_sum", 1, {2}, {{3200, 128}}, b_sum_rows, F4 * 409600, 0},
    {"sum_axis (3200,64)->(3200,1)", "reduce_sum", 1, {2}, {{3200, 64}}, b_sum_last, F4 * 204800, 0},
    {"sum (64,50,64)->[1]", "reduce_sum", 1, {3}, {{64, 50, 64}}, b_sum_all, F4 * 204800, 0},
    {"sum_to (64,64,49)->(1,64,1)", "reduce_sum", 1, {3}, {{64, 64, 49}}, b_sum_chan, F4 * 200704, 0},
    {"sum_to (64,10)->(10)", "reduce_sum", 1, {2}, {{64, 10}}, b_sum_rows, F4 * 640, 0},
};

// CPU time of this process (all threads: the lavapipe workers run the kernels), in seconds.
static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec +
         1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int run_case(vkp_ctx *ctx, const bench_case *c, int reps) {
  vkp_graph *g = NULL;
  vkp_buffer *buf[MAX_IN] = {0};
  vkp_tensor *in[MAX_IN];
  int rc = 1;
  if (vkp_graph_new(ctx, &g)) goto done;
  uint64_t seed = 88172645463325252ull;
  for (int i = 0; i < c->n_in; i++) {
    int64_t n = 1;
    for (int d = 0; d < c->ndim[i]; d++) n *= c->shape[i][d];
    float *h = malloc((size_t)n * sizeof *h);
    for (int64_t k = 0; k < n; k++) {
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      h[k] = (float)((double)(seed >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
    }
    vkp_status st = vkp_buffer_new(ctx, (uint64_t)n * 4, &buf[i]);
    if (!st) st = vkp_buffer_write(buf[i], 0, h, (uint64_t)n * 4);
    free(h);
    if (st) goto done;
    in[i] = vkp_tensor_external(g, "x", buf[i], 0, VKP_DTYPE_F32, c->ndim[i], c->shape[i]);
  }
  for (int k = 0; k < (c->copies ? c->copies : COPIES); k++) {
    vkp_tensor *t = c->build(g, in);
    if (!t) break;
    if (!strcmp(c->op, "accumulate")) vkp_graph_expand(g, t);   // in place into an external
    else vkp_graph_output(g, t);
  }
  if (vkp_graph_compile(g) != VKP_OK) {
    fprintf(stderr, "%s: %s %s\n", c->name, vkp_graph_error(g), vkp_ctx_error(ctx));
    goto done;
  }
  double *per = calloc((size_t)reps, sizeof *per);
  int got = 0, nodes = 0;
  double cpu0 = 0;
  for (int r = 0; r < reps + 2; r++) {
    if (r == 2) cpu0 = cpu_seconds();
    if (vkp_graph_run(g)) break;
    vkp_op_time ops[32];
    uint32_t n = vkp_graph_profile(g, ops, 32);
    for (uint32_t k = 0; k < n; k++)
      if (!strcmp(ops[k].op, c->op) && r >= 2) per[got++] = ops[k].ms / ops[k].count, nodes = (int)ops[k].count;
  }
  double cpu = cpu_seconds() - cpu0;
  if (got) {
    qsort(per, (size_t)got, sizeof *per, cmp_double);
    double best = per[0], med = per[got / 2];
    printf("%-46s %-10s min %7.1f us  med %7.1f us %6.2f GB/s  cpu %7.1f us\n", c->name, c->op, best * 1e3,
           med * 1e3, c->bytes / (best * 1e-3) * 1e-9, cpu / (got * nodes) * 1e6);
    rc = 0;
  }
  free(per);
done:
  vkp_graph_free(g);
  for (int i = 0; i < MAX_IN; i++) vkp_buffer_free(buf[i]);
  return rc;
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 20;
  const char *filter = argc > 2 ? argv[2] : NULL;
  vkp_ctx *ctx = NULL;
  vkp_error err = {0};
  vkp_ctx_options o = {.profiling = true};
  if (vkp_ctx_new(&o, &ctx, &err)) {
    fprintf(stderr, "vkp_ctx_new: %s\n", err.msg);
    return 1;
  }
  printf("%s, %d runs per case, up to %d nodes per run\n", vkp_ctx_info(ctx)->name, reps, COPIES);
  int fails = 0;
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
    if (!filter || strstr(cases[k].name, filter)) fails += run_case(ctx, &cases[k], reps);
  vkp_ctx_free(ctx);
  return fails ? 1 : 0;
}
