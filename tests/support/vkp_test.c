// vkp_test.c — implementation of the shared test helpers.
#include "vkp_test.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vkp_fileio.h"
#include "vkp_metrics.h"

static vkp_ctx *g_ctx;

vkp_ctx *vkp_test_ctx(void) {
  if (!g_ctx) {
    vkp_error err = {0};
    vkp_ctx_options o = {.validation = true};
    if (vkp_ctx_new(&o, &g_ctx, &err) != VKP_OK) fail_msg("vkp_ctx_new: %s", err.msg);
  }
  return g_ctx;
}

bool vkp_test_gpu_kernels(void) { return vkp_ctx_kernels(vkp_test_ctx()) == VKP_KERNELS_GPU; }

int vkp_test_teardown(void **state) {
  (void)state;
  if (!g_ctx) return 0;
  uint32_t n = vkp_ctx_validation_messages(g_ctx);
  vkp_ctx_free(g_ctx);
  g_ctx = NULL;
  if (n) {
    fprintf(stderr, "validation layer reported %u messages\n", n);
    return -1;   // fails the group
  }
  return 0;
}

double vkp_max_rel_err(const float *got, const double *want, size_t n, double floor) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs(got[i] - want[i]) / fmax(fabs(want[i]), floor);
    if (!(d <= worst)) worst = d;   // NaN propagates
  }
  return worst;
}

void vkp_assert_close(const char *what, const float *got, const double *want, size_t n, double rtol, double atol) {
  size_t bad = n, count = 0;
  double worst = -1;
  for (size_t i = 0; i < n; i++) {
    double err = fabs((double)got[i] - want[i]);
    double lim = atol + rtol * fabs(want[i]);
    if (!(err <= lim)) {
      count++;
      double excess = isnan(err) ? INFINITY : err / lim;
      if (excess > worst) worst = excess, bad = i;
    }
  }
  if (count)
    fail_msg("%s: %zu of %zu elements out of tolerance (rtol %g, atol %g); worst [%zu]: got %.9g want %.9g", what,
             count, n, rtol, atol, bad, got[bad], want[bad]);
}

void vkp_assert_close_f(const char *what, const float *got, const float *want, size_t n, double rtol, double atol) {
  double *w = malloc(n * sizeof *w);
  for (size_t i = 0; i < n; i++) w[i] = want[i];
  vkp_assert_close(what, got, w, n, rtol, atol);
  free(w);
}

const char *vkp_fixture_path(const char *rel) {
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/%s", VKP_FIXTURES_DIR, rel);
  return buf;
}

void vkp_test_copy_file(const char *from, const char *to) {
  char *text;
  size_t len;
  vkp_error err = {0};
  if (vkp_file_read_all(from, 64 << 20, &text, &len, &err)) fail_msg("%s", err.msg);
  const void *chunks[1] = {text};
  if (vkp_file_write_atomic(to, chunks, &len, 1, &err)) fail_msg("%s", err.msg);
  free(text);
}

vkp_metrics_log *vkp_test_metrics_read(const char *run_dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
  vkp_metrics_log *log = NULL;
  vkp_error err = {0};
  if (vkp_metrics_read(path, &log, &err)) fail_msg("%s", err.msg);
  return log;
}

// ---- op check harness ----------------------------------------------------------------------

static size_t numel_of(const vkp_check_input *in) {
  size_t n = 1;
  for (int d = 0; d < in->ndim; d++) n *= (size_t)in->shape[d];
  return n;
}

void vkp_op_check_run(const vkp_op_check *c) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_rng rng = vkp_rng_new(c->seed ? c->seed : 42);
  int n = c->n_inputs;
  float *host[VKP_TEST_MAX_INPUTS] = {0};
  double *dref[VKP_TEST_MAX_INPUTS] = {0};
  vkp_buffer *buf[VKP_TEST_MAX_INPUTS] = {0};
  vkp_buffer *grad_buf[VKP_TEST_MAX_INPUTS] = {0};
  vkp_graph *g = NULL;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *t[VKP_TEST_MAX_INPUTS];
  for (int i = 0; i < n; i++) {
    const vkp_check_input *in = &c->in[i];
    size_t ne = numel_of(in);
    host[i] = malloc(ne * sizeof(float));
    dref[i] = malloc(ne * sizeof(double));
    if (in->data) memcpy(host[i], in->data, ne * sizeof(float));
    else vkp_rng_uniform_fill(&rng, host[i], ne, in->lo, in->hi);
    if (in->dtype == VKP_DTYPE_I32)
      for (size_t k = 0; k < ne; k++) host[i][k] = floorf(host[i][k]);
    for (size_t k = 0; k < ne; k++) dref[i][k] = host[i][k];
    VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, ne * 4, &buf[i]));
    if (in->dtype == VKP_DTYPE_I32) {
      int32_t *iv = malloc(ne * 4);
      for (size_t k = 0; k < ne; k++) iv[k] = (int32_t)host[i][k];
      VKP_ASSERT_OK(ctx, vkp_buffer_write(buf[i], 0, iv, ne * 4));
      free(iv);
    } else {
      VKP_ASSERT_OK(ctx, vkp_buffer_write(buf[i], 0, host[i], ne * 4));
    }
    t[i] = vkp_tensor_external(g, "input", buf[i], 0, in->dtype, in->ndim, in->shape);
  }
  vkp_tensor *out = c->build(g, t, c->user);
  if (!out) fail_msg("%s: build failed: %s", c->name, vkp_graph_error(g));
  // An op may return a view (vkp_attention: a head permute of its stored layout): read a copy.
  if (!vkp_tensor_is_contiguous(out)) out = vkp_contiguous(g, out);
  size_t out_n = (size_t)vkp_tensor_numel(out);
  vkp_graph_output(g, out);

  // L = sum(out * w): the weight is an input so the seed gradient differs per element.
  bool any_trainable = false;
  for (int i = 0; i < n; i++) any_trainable |= c->in[i].trainable;
  float *w = malloc(out_n * sizeof(float));
  vkp_rng_uniform_fill(&rng, w, out_n, -1.0f, 1.0f);
  vkp_tensor *wt = NULL, *grads[VKP_TEST_MAX_INPUTS] = {0};
  vkp_tensor *params[VKP_TEST_MAX_INPUTS] = {0};
  if (any_trainable) {
    wt = vkp_tensor_input(g, "w", VKP_DTYPE_F32, out->ndim, out->shape);
    vkp_tensor *loss = vkp_sum(g, vkp_mul(g, out, wt));
    for (int i = 0; i < n; i++) params[i] = c->in[i].trainable ? t[i] : NULL;
    VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, params, n, grads));
    for (int i = 0; i < n; i++)
      if (params[i]) {
        if (!grads[i]) fail_msg("%s: no gradient for input %d", c->name, i);
        vkp_graph_output(g, grads[i]);
      }
  }
  if (vkp_graph_compile(g) != VKP_OK) fail_msg("%s: compile: %s", c->name, vkp_ctx_error(ctx));
  if (wt) VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, wt, w, out_n * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));

  // Forward vs reference.
  float *got = malloc(out_n * sizeof(float));
  double *want = malloc(out_n * sizeof(double));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, out, got, out_n * 4));
  c->ref((const double *const *)dref, want, c->user);
  char what[256];
  snprintf(what, sizeof what, "%s forward", c->name);
  vkp_assert_close(what, got, want, out_n, c->fwd_rtol, c->fwd_atol);

  // Gradients vs central differences of L on the float64 reference.
  double h = c->fd_step > 0 ? c->fd_step : 1e-4;
  for (int i = 0; i < n && any_trainable; i++) {
    if (!params[i]) continue;
    size_t ne = numel_of(&c->in[i]);
    float *gd = malloc(ne * sizeof(float));
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, grads[i], gd, ne * 4));
    int samples = c->fd_samples ? c->fd_samples : 48;
    size_t count = (size_t)samples < ne ? (size_t)samples : ne;
    float *sel_got = malloc(count * sizeof(float));
    double *sel_want = malloc(count * sizeof(double));
    for (size_t s = 0; s < count; s++) {
      size_t k = count == ne ? s : (size_t)(vkp_rng_uniform(&rng) * (double)ne);
      double keep = dref[i][k], lp = 0, lm = 0;
      dref[i][k] = keep + h;
      c->ref((const double *const *)dref, want, c->user);
      for (size_t o = 0; o < out_n; o++) lp += want[o] * w[o];
      dref[i][k] = keep - h;
      c->ref((const double *const *)dref, want, c->user);
      for (size_t o = 0; o < out_n; o++) lm += want[o] * w[o];
      dref[i][k] = keep;
      sel_want[s] = (lp - lm) / (2 * h);
      sel_got[s] = gd[k];
    }
    snprintf(what, sizeof what, "%s gradient of input %d", c->name, i);
    vkp_assert_close(what, sel_got, sel_want, count, c->grad_rtol, c->grad_atol);
    free(sel_got);
    free(sel_want);
    free(gd);
  }
  free(got);
  free(want);
  free(w);
  vkp_graph_free(g);
  for (int i = 0; i < n; i++) {
    vkp_buffer_free(buf[i]);
    vkp_buffer_free(grad_buf[i]);
    free(host[i]);
    free(dref[i]);
  }
}

int vkp_test_dir_setup(void **state) {
  vkp_test_dir *env = calloc(1, sizeof *env);
  if (!env) return -1;
  const char *base = getenv("TMPDIR");
  snprintf(env->dir, sizeof env->dir, "%s/vkp_test_XXXXXX", base && strlen(base) < 40 ? base : "/tmp");
  if (!mkdtemp(env->dir)) {
    free(env);
    return -1;
  }
  *state = env;
  return 0;
}

// Removes dir and everything below it.
static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      if (unlink(p) != 0) remove_tree(p);
    }
    closedir(d);
  }
  rmdir(dir);
}

int vkp_test_dir_teardown(void **state) {
  vkp_test_dir *env = *state;
  remove_tree(env->dir);
  free(env);
  return 0;
}

const char *vkp_test_dir_path(void **state, const char *name, char *buf, size_t cap) {
  vkp_test_dir *env = *state;
  snprintf(buf, cap, "%s/%s", env->dir, name);
  return buf;
}
