// cmd_bench.c — `vkpeft bench`: micro-benchmarks that print one JSON object each.
//   matmul    C = op(A)·op(B) as a compiled one-node graph vs OpenBLAS cblas_sgemm
//   dispatch  per-dispatch overhead of a recorded graph (a chain of tiny ops)
//   block     a transformer block forward+backward (needs layer_norm/attention/cross_entropy)
//   peft      PEFT methods on a ViT training step (cmd_bench_peft.c)
//   unet, vae Stable Diffusion-sized UNet sampling / LoRA training step, VAE decode (cmd_bench_sd.c)
// Timings are medians over --iters runs of vkp_graph_run (submit + wait); inputs are uploaded
// once before timing, so uploads are excluded.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_peft.h"
#include "bench_sd.h"
#include "bench_time.h"
#include "vkp_device.h"
#include "vkp_dtype.h"
#include "vkp_graph.h"
#include "vkp_ops.h"
#include "vkp_rng.h"
#include "vkpeft_cli.h"

#ifdef VKP_HAVE_CBLAS
#include <cblas.h>
#endif

static void usage(FILE *f) {
  fprintf(f,
          "usage: vkpeft bench matmul [--size S | --m M --n N --k K] [--dtype f32|f16|bf16]\n"
          "                           [--layout nn|nt|tn|tt] [--iters I] [--profile]\n"
          "       vkpeft bench dispatch [--ops K] [--iters I]\n"
          "       vkpeft bench block [--batch 64 --tokens 50 --dim 128 --heads 4] [--iters I] [--profile]\n"
          "       vkpeft bench peft ...   (PEFT methods on a ViT training step: see `bench peft --help`)\n"
          "       vkpeft bench unet ...   (SD UNet sampling step / LoRA training step: `bench unet --help`)\n"
          "       vkpeft bench vae ...    (SD VAE decode: `bench vae --help`)\n"
          "Prints one JSON object. matmul: shader GFLOP/s (median of I runs of a compiled graph\n"
          "holding only the product; uploads excluded) beside OpenBLAS cblas_sgemm on the same\n"
          "shapes with one thread per CPU core. --dtype sets B's storage (f16/bf16: frozen-weight\n"
          "path; BLAS gets the same rounded values in f32). --layout: transposes of A and B.\n"
          "--profile: also device time per op (packing passes, product).\n"
          "dispatch: time per dispatch in a graph of K tiny ops.\n"
          "block: one pre-LN ViT encoder layer + token cross-entropy, forward and backward for every\n"
          "weight: time per step (median), nodes and dispatches (vkp_graph_get_stats).\n");
}

// Parses a positive integer option value; false on junk.
static bool parse_pos(const char *s, int64_t max, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v <= 0 || v > max) return false;
  *out = v;
  return true;
}

// JSON-safe copy (drops quotes and backslashes, which device names do not normally contain).
static const char *json_str(const char *s, char *buf, size_t cap) {
  size_t o = 0;
  for (; *s && o + 1 < cap; s++)
    if (*s != '"' && *s != '\\' && (unsigned char)*s >= 0x20) buf[o++] = *s;
  buf[o] = '\0';
  return buf;
}

static int new_ctx(const char *cmd, vkp_ctx **ctx, bool profiling) {
  vkp_error err = {0};
  vkp_ctx_options o = {.profiling = profiling};   // no validation layer: benchmarks measure the driver alone
  if (vkp_ctx_new(&o, ctx, &err) != VKP_OK) return vkp_cli_fail(cmd, err.status, err.msg);
  return VKP_EXIT_OK;
}

static void print_device(vkp_ctx *ctx) {
  const vkp_device_info *d = vkp_ctx_info(ctx);
  char n[256], dn[256], di[256];
  printf("\"device\": \"%s\", \"driver\": \"%s %s\", \"subgroup_size\": %u, \"kernels\": \"%s\"",
         json_str(d->name, n, sizeof n), json_str(d->driver_name, dn, sizeof dn), json_str(d->driver_info, di, sizeof di),
         d->subgroup_size, vkp_kernel_family_name(vkp_ctx_kernels(ctx)));
}

// Runs g `iters` times (after one warm-up run) and returns the median seconds per run, or < 0;
// *cpu (if given) gets the median process CPU seconds per run.
static double time_graph(vkp_graph *g, int iters, double *cpu) {
  if (vkp_graph_run(g) != VKP_OK) return -1;
  double *t = malloc(2 * (size_t)iters * sizeof *t), *c = t + iters;
  if (!t) return -1;
  for (int i = 0; i < iters; i++) {
    double t0 = now_s(), c0 = cpu_s();
    if (vkp_graph_run(g) != VKP_OK) {
      free(t);
      return -1;
    }
    t[i] = now_s() - t0;
    c[i] = cpu_s() - c0;
  }
  double m = median(t, iters);
  if (cpu) *cpu = median(c, iters);
  free(t);
  return m;
}

// ---- matmul ---------------------------------------------------------------------------------

static int bench_matmul(int argc, char **argv) {
  int64_t M = 0, N = 0, K = 0, size = 0, iters = 10;
  vkp_dtype bdt = VKP_DTYPE_F32;
  bool ta = false, tb = false, profile = false;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = v != NULL;
    if (!strcmp(o, "--profile")) {
      profile = true;
      continue;
    }
    if (!strcmp(o, "--size")) ok = ok && parse_pos(v, 1 << 16, &size);
    else if (!strcmp(o, "--m")) ok = ok && parse_pos(v, 1 << 20, &M);
    else if (!strcmp(o, "--n")) ok = ok && parse_pos(v, 1 << 20, &N);
    else if (!strcmp(o, "--k")) ok = ok && parse_pos(v, 1 << 20, &K);
    else if (!strcmp(o, "--iters")) ok = ok && parse_pos(v, 100000, &iters);
    else if (!strcmp(o, "--dtype")) {
      if (ok && !strcmp(v, "f32")) bdt = VKP_DTYPE_F32;
      else if (ok && !strcmp(v, "f16")) bdt = VKP_DTYPE_F16;
      else if (ok && !strcmp(v, "bf16")) bdt = VKP_DTYPE_BF16;
      else ok = false;
    } else if (!strcmp(o, "--layout")) {
      ok = ok && strlen(v) == 2 && strchr("nt", v[0]) && strchr("nt", v[1]);
      if (ok) ta = v[0] == 't', tb = v[1] == 't';
    } else {
      fprintf(stderr, "vkpeft bench matmul: unknown option '%s'\n", o);
      usage(stderr);
      return VKP_EXIT_BAD_INPUT;
    }
    if (!ok) {
      fprintf(stderr, "vkpeft bench matmul: bad or missing value for %s\n", o);
      usage(stderr);
      return VKP_EXIT_BAD_INPUT;
    }
    i++;
  }
  if (!size && !(M && N && K)) size = 1024;
  if (!M) M = size;
  if (!N) N = size;
  if (!K) K = size;
  if (!M || !N || !K || M * K > (1ll << 28) || K * N > (1ll << 28) || M * N > (1ll << 28)) {
    fprintf(stderr, "vkpeft bench matmul: give --size, or all of --m --n --k (each matrix at most 2^28 elements)\n");
    return VKP_EXIT_BAD_INPUT;
  }

  vkp_ctx *ctx = NULL;
  int rc = new_ctx("bench", &ctx, profile);
  if (rc) return rc;
  size_t na = (size_t)(M * K), nb = (size_t)(K * N), nc = (size_t)(M * N);
  float *ha = malloc(na * 4), *hb = malloc(nb * 4), *hc = malloc(nc * 4), *ref = malloc(nc * 4);
  void *hb16 = malloc(nb * 4);
  vkp_buffer *ba = NULL, *bb = NULL;
  vkp_graph *g = NULL;
  const char *fail = NULL;
  vkp_status st = VKP_OK;
  if (!ha || !hb || !hc || !ref || !hb16) {
    fail = "out of host memory";
    st = VKP_ERR_OOM;
    goto done;
  }
  vkp_rng rng = vkp_rng_new(0);
  vkp_rng_uniform_fill(&rng, ha, na, -1.0f, 1.0f);
  vkp_rng_uniform_fill(&rng, hb, nb, -1.0f, 1.0f);
  if (bdt != VKP_DTYPE_F32) {   // B stored in 16 bits; the reference sees the rounded values
    vkp_convert_from_f32(bdt, hb, hb16, nb);
    vkp_convert_to_f32(bdt, hb16, hb, nb);
  }
  int64_t ash[2] = {ta ? K : M, ta ? M : K}, bsh[2] = {tb ? N : K, tb ? K : N};
  size_t bbytes = nb * vkp_dtype_size(bdt);
  if ((st = vkp_buffer_new(ctx, na * 4, &ba)) || (st = vkp_buffer_new(ctx, (bbytes + 3) & ~(size_t)3, &bb)) ||
      (st = vkp_buffer_write(ba, 0, ha, na * 4)) ||
      (st = vkp_buffer_write(bb, 0, bdt == VKP_DTYPE_F32 ? (void *)hb : hb16, bbytes)) ||
      (st = vkp_graph_new(ctx, &g))) {
    fail = vkp_ctx_error(ctx);
    goto done;
  }
  vkp_tensor *a = vkp_tensor_external(g, "a", ba, 0, VKP_DTYPE_F32, 2, ash);
  vkp_tensor *b = vkp_tensor_external(g, "b", bb, 0, bdt, 2, bsh);
  vkp_tensor *c = vkp_matmul(g, a, b, ta, tb);
  vkp_graph_output(g, c);
  if ((st = vkp_graph_compile(g)) != VKP_OK) {
    fail = vkp_ctx_error(ctx);
    goto done;
  }
  double t_cpu = 0, t_gpu = time_graph(g, (int)iters, &t_cpu);
  if (t_gpu < 0 || (st = vkp_graph_read(g, c, hc, nc * 4)) != VKP_OK) {
    st = st ? st : VKP_ERR_DEVICE;
    fail = vkp_ctx_error(ctx);
    goto done;
  }
  double flop = 2.0 * (double)M * (double)N * (double)K;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  printf("{\"bench\": \"matmul\", \"m\": %lld, \"n\": %lld, \"k\": %lld, \"layout\": \"%c%c\", \"dtype\": \"%s\", "
         "\"iters\": %lld, \"dispatches\": %u, ",
         (long long)M, (long long)N, (long long)K, ta ? 't' : 'n', tb ? 't' : 'n',
         bdt == VKP_DTYPE_F16 ? "f16" : bdt == VKP_DTYPE_BF16 ? "bf16" : "f32",
         (long long)iters, vkp_graph_get_stats(g).dispatches);
  printf("\"shader_ms\": %.4f, \"shader_gflops\": %.2f, \"shader_cpu_ms\": %.4f, ", t_gpu * 1e3,
         flop / t_gpu * 1e-9, t_cpu * 1e3);
#ifdef VKP_HAVE_CBLAS
#ifdef OPENBLAS_VERSION
  openblas_set_num_threads((int)ncpu);
  const char *blas_name = "openblas";
#else
  const char *blas_name = "cblas";
#endif
  double *tb_runs = malloc((size_t)(iters + 1) * sizeof *tb_runs);
  for (int64_t i = 0; i <= iters && tb_runs; i++) {   // run 0 warms up
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, 1.0f, ha, (int)ash[1], hb, (int)bsh[1], 0.0f, ref, (int)N);
    tb_runs[i] = now_s() - t0;
  }
  double t_blas = tb_runs ? median(tb_runs + 1, (int)iters) : 0;
  free(tb_runs);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < nc; i++) scale = fmax(scale, fabs(ref[i]));
  for (size_t i = 0; i < nc; i++) worst = fmax(worst, fabs((double)hc[i] - ref[i]));
  printf("\"blas\": \"%s\", \"blas_threads\": %ld, \"blas_ms\": %.4f, \"blas_gflops\": %.2f, \"ratio\": %.3f, "
         "\"max_err_rel_to_max\": %.3g, ",
         blas_name, ncpu, t_blas * 1e3, flop / t_blas * 1e-9, t_blas / t_gpu, worst / (scale > 0 ? scale : 1));
#else
  printf("\"blas\": null, \"cpu_cores\": %ld, ", ncpu);
#endif
  if (profile) {   // device time per op of the last run (timestamps around each node)
    vkp_op_time ops[16];
    uint32_t n = vkp_graph_profile(g, ops, 16);
    printf("\"profile_ms\": {");
    for (uint32_t i = 0; i < n && i < 16; i++) printf("%s\"%s\": %.4f", i ? ", " : "", ops[i].op, ops[i].ms);
    printf("}, ");
  }
  print_device(ctx);
  printf("}\n");
done:
  vkp_graph_free(g);
  vkp_buffer_free(ba);
  vkp_buffer_free(bb);
  vkp_ctx_free(ctx);
  free(ha), free(hb), free(hc), free(ref), free(hb16);
  return fail ? vkp_cli_fail("bench", st, fail) : VKP_EXIT_OK;
}

// ---- dispatch overhead ----------------------------------------------------------------------

// Median seconds per run of a graph of `ops` chained scale ops on 256 floats.
static double time_chain(vkp_ctx *ctx, int ops, int iters, uint32_t *dispatches) {
  vkp_graph *g = NULL;
  if (vkp_graph_new(ctx, &g) != VKP_OK) return -1;
  vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 1, (int64_t[]){256});
  vkp_tensor *y = x;
  for (int i = 0; i < ops; i++) y = vkp_scale(g, y, 1.0001f);
  vkp_graph_output(g, y);
  float data[256] = {0};
  double t = -1;
  if (vkp_graph_compile(g) == VKP_OK && vkp_graph_set_input(g, x, data, sizeof data) == VKP_OK) {
    t = time_graph(g, iters, NULL);
    *dispatches = vkp_graph_get_stats(g).dispatches;
  }
  vkp_graph_free(g);
  return t;
}

static int bench_dispatch(int argc, char **argv) {
  int64_t ops = 200, iters = 20;
  for (int i = 1; i < argc; i += 2) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = v && ((!strcmp(o, "--ops") && parse_pos(v, 100000, &ops)) ||
                    (!strcmp(o, "--iters") && parse_pos(v, 100000, &iters)));
    if (!ok || ops < 2) {
      fprintf(stderr, "vkpeft bench dispatch: bad option '%s'\n", o);
      usage(stderr);
      return VKP_EXIT_BAD_INPUT;
    }
  }
  vkp_ctx *ctx = NULL;
  int rc = new_ctx("bench", &ctx, false);
  if (rc) return rc;
  uint32_t d1 = 0, dk = 0;
  double t1 = time_chain(ctx, 1, (int)iters, &d1), tk = time_chain(ctx, (int)ops, (int)iters, &dk);
  if (t1 < 0 || tk < 0) {
    rc = vkp_cli_fail("bench", VKP_ERR_DEVICE, vkp_ctx_error(ctx));
  } else {
    printf("{\"bench\": \"dispatch\", \"ops\": %lld, \"dispatches\": %u, \"iters\": %lld, \"run_1_op_us\": %.1f, "
           "\"run_ms\": %.3f, \"per_dispatch_us\": %.2f, ",
           (long long)ops, dk, (long long)iters, t1 * 1e6, tk * 1e3, (tk - t1) / (double)(dk - d1) * 1e6);
    print_device(ctx);
    printf("}\n");
  }
  vkp_ctx_free(ctx);
  return rc;
}

// ---- transformer block ----------------------------------------------------------------------
// One pre-LN ViT encoder layer (as vision/vit.c builds it) + a token-level cross-entropy, forward
// and backward for every weight (full fine-tuning: the heaviest case), compiled once and replayed.

typedef struct block_param {
  const char *name;
  int ndim;
  int64_t shape[2];
  float lo, hi;   // init range (LayerNorm weights near 1)
} block_param;

static int bench_block(int argc, char **argv) {
  int64_t B = 64, T = 50, C = 128, H = 4, iters = 10;
  bool profile = false;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok;
    if (!strcmp(o, "--profile")) {
      profile = true;
      continue;
    }
    if (!strcmp(o, "--batch")) ok = v && parse_pos(v, 4096, &B);
    else if (!strcmp(o, "--tokens")) ok = v && parse_pos(v, 4096, &T);
    else if (!strcmp(o, "--dim")) ok = v && parse_pos(v, 8192, &C);
    else if (!strcmp(o, "--heads")) ok = v && parse_pos(v, 256, &H);
    else if (!strcmp(o, "--iters")) ok = v && parse_pos(v, 100000, &iters);
    else ok = false;
    if (!ok || C % H) {
      fprintf(stderr, "vkpeft bench block: bad option '%s' (or --dim not a multiple of --heads)\n", o);
      usage(stderr);
      return VKP_EXIT_BAD_INPUT;
    }
    i++;
  }
  int64_t D = C / H, F = 4 * C;
  const block_param specs[] = {
      {"ln1.w", 1, {C}, 0.9f, 1.1f}, {"ln1.b", 1, {C}, -0.1f, 0.1f}, {"q.w", 2, {C, C}, -0.1f, 0.1f},
      {"q.b", 1, {C}, -0.1f, 0.1f},  {"k.w", 2, {C, C}, -0.1f, 0.1f},  {"k.b", 1, {C}, -0.1f, 0.1f},
      {"v.w", 2, {C, C}, -0.1f, 0.1f}, {"v.b", 1, {C}, -0.1f, 0.1f},  {"o.w", 2, {C, C}, -0.1f, 0.1f},
      {"o.b", 1, {C}, -0.1f, 0.1f},  {"ln2.w", 1, {C}, 0.9f, 1.1f}, {"ln2.b", 1, {C}, -0.1f, 0.1f},
      {"fc1.w", 2, {F, C}, -0.1f, 0.1f}, {"fc1.b", 1, {F}, -0.1f, 0.1f}, {"fc2.w", 2, {C, F}, -0.05f, 0.05f},
      {"fc2.b", 1, {C}, -0.1f, 0.1f},
  };
  enum { NP = sizeof specs / sizeof *specs };
  vkp_ctx *ctx = NULL;
  int rc = new_ctx("bench", &ctx, profile);
  if (rc) return rc;
  vkp_buffer *bufs[NP] = {0};
  vkp_graph *g = NULL;
  float *host = NULL, *xin = NULL;
  int32_t *labels = NULL;
  vkp_status st = VKP_OK;
  vkp_rng rng = vkp_rng_new(0);
  host = malloc((size_t)(F * C) * 4);
  xin = malloc((size_t)(B * T * C) * 4);
  labels = malloc((size_t)(B * T) * 4);
  if (!host || !xin || !labels) {
    st = VKP_ERR_OOM;
    goto done;
  }
  if ((st = vkp_graph_new(ctx, &g))) goto done;
  vkp_tensor *p[NP];
  for (int i = 0; i < NP; i++) {
    int64_t n = specs[i].shape[0] * (specs[i].ndim > 1 ? specs[i].shape[1] : 1);
    vkp_rng_uniform_fill(&rng, host, (size_t)n, specs[i].lo, specs[i].hi);
    if ((st = vkp_buffer_new(ctx, (uint64_t)n * 4, &bufs[i])) ||
        (st = vkp_buffer_write(bufs[i], 0, host, (uint64_t)n * 4)))
      goto done;
    p[i] = vkp_tensor_external(g, specs[i].name, bufs[i], 0, VKP_DTYPE_F32, specs[i].ndim, specs[i].shape);
  }
  vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 3, (int64_t[]){B, T, C});
  vkp_tensor *lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){B * T});
  vkp_tensor *h = vkp_layer_norm(g, x, p[0], p[1], 1e-6f);
  vkp_tensor *qkv[3];
  for (int j = 0; j < 3; j++)
    qkv[j] = vkp_permute(g, vkp_reshape(g, vkp_linear(g, h, p[2 + 2 * j], p[3 + 2 * j]), 4, (int64_t[]){B, T, H, D}),
                         (int[]){0, 2, 1, 3});
  vkp_tensor *a = vkp_attention(g, qkv[0], qkv[1], qkv[2], NULL, false, 0.0f);
  a = vkp_reshape(g, vkp_permute(g, a, (int[]){0, 2, 1, 3}), 3, (int64_t[]){B, T, C});
  vkp_tensor *y = vkp_add(g, x, vkp_linear(g, a, p[8], p[9]));
  h = vkp_layer_norm(g, y, p[10], p[11], 1e-6f);
  vkp_tensor *f = vkp_linear(g, vkp_gelu(g, vkp_linear(g, h, p[12], p[13])), p[14], p[15]);
  y = vkp_add(g, y, f);
  vkp_tensor *loss = vkp_cross_entropy(g, vkp_reshape(g, y, 2, (int64_t[]){B * T, C}), lab);
  vkp_graph_output(g, loss);
  vkp_tensor *grads[NP];
  if ((st = vkp_graph_backward(g, loss, p, NP, grads))) goto done;
  for (int i = 0; i < NP; i++) vkp_graph_output(g, grads[i]);
  if ((st = vkp_graph_compile(g))) goto done;
  vkp_rng_uniform_fill(&rng, xin, (size_t)(B * T * C), -1.0f, 1.0f);
  for (int64_t k = 0; k < B * T; k++) labels[k] = (int32_t)vkp_rng_int(&rng, 0, C);
  if ((st = vkp_graph_set_input(g, x, xin, (uint64_t)(B * T * C) * 4)) ||
      (st = vkp_graph_set_input(g, lab, labels, (uint64_t)(B * T) * 4)))
    goto done;
  double t = time_graph(g, (int)iters, NULL);
  if (t < 0) {
    st = VKP_ERR_DEVICE;
    goto done;
  }
  float lv = 0;
  if ((st = vkp_graph_read(g, loss, &lv, 4))) goto done;
  // Multiply-adds of the products: 4 C x C + 2 C x 4C linears, Q K^T and P V; backward twice that.
  double macs = (double)B * T * (4.0 * C * C + 8.0 * C * C) + 2.0 * B * H * T * T * D;
  vkp_graph_stats gs = vkp_graph_get_stats(g);
  printf("{\"bench\": \"block\", \"batch\": %lld, \"tokens\": %lld, \"dim\": %lld, \"heads\": %lld, \"iters\": %lld, "
         "\"step_ms\": %.3f, \"nodes\": %u, \"dispatches\": %u, \"arena_mb\": %.1f, \"loss\": %.4f, "
         "\"matmul_gflop\": %.3f, \"gflops\": %.2f, ",
         (long long)B, (long long)T, (long long)C, (long long)H, (long long)iters, t * 1e3, gs.nodes, gs.dispatches,
         gs.arena_bytes / 1048576.0, lv, 6 * macs * 1e-9, 6 * macs / t * 1e-9);
  if (profile) {
    vkp_op_time ops[32];
    uint32_t n = vkp_graph_profile(g, ops, 32);
    printf("\"profile_ms\": {");
    for (uint32_t i = 0; i < n && i < 32; i++)
      printf("%s\"%s\": [%u, %.3f]", i ? ", " : "", ops[i].op, ops[i].count, ops[i].ms);
    printf("}, ");
  }
  print_device(ctx);
  printf("}\n");
done:
  if (st) rc = vkp_cli_fail("bench", st, g && vkp_graph_status(g) ? vkp_graph_error(g) : vkp_ctx_error(ctx));
  vkp_graph_free(g);
  for (int i = 0; i < NP; i++) vkp_buffer_free(bufs[i]);
  vkp_ctx_free(ctx);
  free(host), free(xin), free(labels);
  return rc;
}

int cmd_bench(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return VKP_EXIT_BAD_INPUT;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(stdout);
    return VKP_EXIT_OK;
  }
  if (!strcmp(argv[1], "matmul")) return bench_matmul(argc - 1, argv + 1);
  if (!strcmp(argv[1], "dispatch")) return bench_dispatch(argc - 1, argv + 1);
  if (!strcmp(argv[1], "block")) return bench_block(argc - 1, argv + 1);
  if (!strcmp(argv[1], "peft")) return vkp_bench_peft(argc - 1, argv + 1);
  if (!strcmp(argv[1], "unet")) return vkp_bench_unet(argc - 1, argv + 1);
  if (!strcmp(argv[1], "vae")) return vkp_bench_vae(argc - 1, argv + 1);
  fprintf(stderr, "vkpeft bench: unknown benchmark '%s'\n", argv[1]);
  usage(stderr);
  return VKP_EXIT_BAD_INPUT;
}
