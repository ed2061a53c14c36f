// test_device.c — engine checks that guard against driver and platform traps:
//   loop-cap canary (Mesa 22 lavapipe stops loops after 65,535 iterations per invocation),
//   a tensor above maxStorageBufferRange (128 MiB on lavapipe) through a device op,
//   memory planning (reuse with intact outputs), clear errors on bad input, device selection.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_op.h"
#include "vkp_test.h"
#include "../../shaders/push/loop_canary.h"

// ---- (a) loop-cap canary ------------------------------------------------------------------------
// A test-local op: one invocation counts loop iterations (shaders/loop_canary.comp).
// params.i[0] = iterations, i[1] = inner (0 = single loop).

static vkp_status canary_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_loop_canary pc = {0};
  pc.ones = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.iterations = (uint32_t)t->params.i[0];
  pc.inner = (uint32_t)t->params.i[1];
  pc.period = (uint32_t)vkp_tensor_numel(t->src[0]);
  return vkp_rec_dispatch(rec, "loop_canary", &pc, sizeof pc, 1, 1, 1);
}
static const vkp_op_def op_canary = {.name = "loop_canary", .record = canary_record, .backward = NULL};

static uint32_t run_canary(uint32_t iterations, uint32_t inner) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  const int64_t period = 37;
  vkp_tensor *ones = vkp_tensor_input(g, "ones", VKP_DTYPE_I32, 1, &period);
  vkp_tensor *count = vkp_node_new(g, &op_canary, VKP_DTYPE_I32, 1, (int64_t[]){1}, &ones, 1);
  assert_non_null(count);
  count->params.i[0] = (int32_t)iterations;
  count->params.i[1] = (int32_t)inner;
  vkp_graph_output(g, count);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  int32_t one[37];
  for (int i = 0; i < 37; i++) one[i] = 1;
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, ones, one, sizeof one));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  uint32_t got = 0;
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, count, &got, 4));
  vkp_graph_free(g);
  return got;
}

static void test_loop_cap_canary(void **state) {
  (void)state;
  const vkp_device_info *info = vkp_ctx_info(vkp_test_ctx());
  uint32_t single = run_canary(100000, 0);
  uint32_t nested = run_canary(400, 250);   // 100,000 iterations in total, no loop above 400
  if (single != 100000 || nested != 100000)
    fail_msg("driver '%s' (%s) stops long shader loops: 100000 iterations gave %u (single loop) and %u "
             "(nested); Mesa 22 lavapipe caps loops at 65535 — install Mesa >= 23 (bookworm-backports)",
             info->name, info->driver_info, single, nested);
  assert_int_equal(run_canary(7, 0), 7);   // the count is not a constant
}

// ---- (b) a tensor above 128 MiB ---------------------------------------------------------------

static void test_large_tensor(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  const int64_t n = 150000000 / 4;   // 150 MB of f32: past lavapipe's 128 MiB storage range
  assert_true((uint64_t)n * 4 > (128ull << 20));
  float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
  assert_non_null(x);
  assert_non_null(y);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(i & 0xFFFFF) - 4096.0f;   // exact in f32
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *in = vkp_tensor_input(g, "big", VKP_DTYPE_F32, 2, (int64_t[]){n / 1500, 1500});
  vkp_tensor *out = vkp_affine(g, in, 2.0f, 1.0f);
  vkp_graph_output(g, out);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, in, x, (uint64_t)n * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, out, y, (uint64_t)n * 4));
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++)
    if (y[i] != 2.0f * x[i] + 1.0f) {
      if (first < 0) first = i;
      bad++;
    }
  if (bad)
    fail_msg("%lld of %lld elements wrong, first at %lld (byte %lld): got %g want %g", (long long)bad, (long long)n,
             (long long)first, (long long)first * 4, y[first], 2.0 * x[first] + 1);
  vkp_graph_free(g);
  free(x);
  free(y);
}

// ---- (c) memory planning ------------------------------------------------------------------------

static void test_memory_planner(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  const int64_t n = 10007;   // odd: not a multiple of the 256-byte alignment
  const uint64_t sz = (n * 4 + 255) / 256 * 256;
  float *x = malloc(n * 4), *got = malloc(n * 4);
  double *mid = malloc(n * sizeof(double)), *want = malloc(n * sizeof(double));
  vkp_rng rng = vkp_rng_new(7);
  vkp_rng_uniform_fill(&rng, x, n, -1, 1);
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *in = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 1, &n);
  // A chain of 8 ops; one intermediate result is an output too and must survive the rest.
  vkp_tensor *t = vkp_affine(g, in, 2.0f, 0.5f);    // 2x + 0.5
  t = vkp_sqr(g, t);                                // (2x + 0.5)^2
  vkp_tensor *kept = vkp_scale(g, t, 0.25f);        // (2x + 0.5)^2 / 4
  vkp_graph_output(g, kept);
  t = vkp_add(g, kept, in);                         // + x
  t = vkp_tanh(g, t);
  t = vkp_mul(g, t, in);                            // * x
  t = vkp_affine(g, t, -1.0f, 3.0f);                // 3 - .
  t = vkp_sqrt(g, t);
  vkp_graph_output(g, t);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  vkp_graph_stats st = vkp_graph_get_stats(g);
  printf("planner: %u nodes, arena %llu bytes, %llu without reuse (tensor %llu)\n", st.nodes,
         (unsigned long long)st.arena_bytes, (unsigned long long)st.unplanned_bytes, (unsigned long long)sz);
  assert_int_equal(st.nodes, 8);
  assert_true(st.unplanned_bytes >= 8 * sz);
  // input + kept output + final output + at most two live temporaries
  if (!(st.arena_bytes < st.unplanned_bytes && st.arena_bytes <= 5 * sz))
    fail_msg("no memory reuse: arena %llu bytes, unplanned %llu", (unsigned long long)st.arena_bytes,
             (unsigned long long)st.unplanned_bytes);
  for (int rep = 0; rep < 2; rep++) {   // replaying gives the same results
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, in, x, n * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
    for (int64_t i = 0; i < n; i++) {
      double a = 2.0 * x[i] + 0.5;
      mid[i] = a * a / 4;
      want[i] = sqrt(3 - tanh(mid[i] + x[i]) * x[i]);
    }
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, kept, got, n * 4));
    vkp_assert_close("kept intermediate output", got, mid, n, 1e-6, 1e-7);
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, t, got, n * 4));
    vkp_assert_close("chain output", got, want, n, 1e-6, 1e-6);
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, in, got, n * 4));   // inputs are never overwritten
    assert_memory_equal(got, x, n * 4);
  }
  vkp_graph_free(g);
  free(x);
  free(got);
  free(mid);
  free(want);
}

// ---- (d) bad inputs: clear errors, no crash -----------------------------------------------------

static void expect_error(vkp_status got, vkp_status want, const char *msg, const char *needle) {
  if (got != want) fail_msg("status %s, want %s (%s)", vkp_status_name(got), vkp_status_name(want), msg);
  if (!strstr(msg, needle)) fail_msg("message '%s' does not mention '%s'", msg, needle);
}

static void test_bad_inputs(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *a = vkp_tensor_input(g, "alpha", VKP_DTYPE_F32, 2, (int64_t[]){3, 4});
  vkp_tensor *b = vkp_tensor_input(g, "beta", VKP_DTYPE_F32, 2, (int64_t[]){3, 4});
  vkp_buffer *wbuf;
  VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, 48, &wbuf));
  vkp_tensor *w = vkp_tensor_external(g, "weight", wbuf, 0, VKP_DTYPE_F32, 2, (int64_t[]){3, 4});
  vkp_tensor *hidden = vkp_mul(g, a, b);
  vkp_tensor *out = vkp_add(g, hidden, w);
  vkp_graph_output(g, out);
  expect_error(vkp_graph_run(g), VKP_ERR_INVALID, vkp_ctx_error(ctx), "before vkp_graph_compile");
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  float data[13] = {0};
  expect_error(vkp_graph_set_input(g, a, data, 13 * 4), VKP_ERR_SHAPE, vkp_ctx_error(ctx), "alpha");
  assert_non_null(strstr(vkp_ctx_error(ctx), "52"));
  assert_non_null(strstr(vkp_ctx_error(ctx), "48"));
  expect_error(vkp_graph_set_input(g, w, data, 48), VKP_ERR_INVALID, vkp_ctx_error(ctx), "weight");
  expect_error(vkp_graph_read(g, hidden, data, 48), VKP_ERR_INVALID, vkp_ctx_error(ctx), "not a graph output");
  expect_error(vkp_graph_read(g, out, data, 52), VKP_ERR_SHAPE, vkp_ctx_error(ctx), "52");
  // Building after compile is refused.
  assert_null(vkp_scale(g, out, 2.0f));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_INVALID);
  // The graph still runs correctly.
  float av[12], bv[12], wv[12], ov[12];
  for (int i = 0; i < 12; i++) av[i] = (float)i, bv[i] = 0.5f * (float)i, wv[i] = 1;
  VKP_ASSERT_OK(ctx, vkp_buffer_write(wbuf, 0, wv, 48));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, a, av, 48));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, b, bv, 48));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, out, ov, 48));
  for (int i = 0; i < 12; i++) assert_true(ov[i] == av[i] * bv[i] + 1);
  vkp_graph_free(g);

  // Shape mismatch in builders: NULL, first error kept, NULL passes through, compile reports it.
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  a = vkp_tensor_input(g, "left", VKP_DTYPE_F32, 2, (int64_t[]){3, 4});
  b = vkp_tensor_input(g, "right", VKP_DTYPE_F32, 2, (int64_t[]){5, 4});
  vkp_tensor *bad = vkp_add(g, a, b);
  assert_null(bad);
  expect_error(vkp_graph_status(g), VKP_ERR_SHAPE, vkp_graph_error(g), "'left'");
  assert_non_null(strstr(vkp_graph_error(g), "'right'"));
  assert_null(vkp_gelu(g, vkp_scale(g, bad, 2.0f)));
  assert_null(vkp_reshape(g, a, 2, (int64_t[]){5, 5}));    // a second error does not replace the first
  assert_non_null(strstr(vkp_graph_error(g), "'right'"));
  vkp_graph_output(g, bad);
  expect_error(vkp_graph_compile(g), VKP_ERR_SHAPE, vkp_ctx_error(ctx), "'left'");
  vkp_graph_free(g);

  // Other builder errors.
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  a = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 2, (int64_t[]){3, 4});
  assert_null(vkp_accumulate(g, a, a));   // not an external tensor
  expect_error(vkp_graph_status(g), VKP_ERR_SHAPE, vkp_graph_error(g), "'x'");
  vkp_graph_free(g);
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  uint64_t past = vkp_buffer_size(wbuf) - 8;   // 48 bytes from here do not fit
  assert_null(vkp_tensor_external(g, "too_big", wbuf, past, VKP_DTYPE_F32, 1, (int64_t[]){12}));
  expect_error(vkp_graph_status(g), VKP_ERR_SHAPE, vkp_graph_error(g), "too_big");
  vkp_graph_free(g);
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  assert_null(vkp_tensor_input(g, "neg", VKP_DTYPE_F32, 2, (int64_t[]){3, -1}));
  expect_error(vkp_graph_status(g), VKP_ERR_SHAPE, vkp_graph_error(g), "neg");
  vkp_graph_free(g);
  vkp_buffer_free(wbuf);
}

// ---- (e) device selection -----------------------------------------------------------------------

static void test_device_not_found(void **state) {
  (void)state;
  const char *prev = getenv("VKPEFT_DEVICE");
  char *saved = prev ? strdup(prev) : NULL;
  const char *bad[] = {"no-such-gpu-xyz", "99"};
  for (int k = 0; k < 2; k++) {
    for (int via_env = 0; via_env < 2; via_env++) {
      vkp_error err = {0};
      vkp_ctx *ctx = (vkp_ctx *)&err;   // must be reset to NULL
      vkp_ctx_options o = {.validation = true};
      if (via_env) setenv("VKPEFT_DEVICE", bad[k], 1);
      else o.device = bad[k];
      vkp_status st = vkp_ctx_new(&o, &ctx, &err);
      if (st == VKP_OK) vkp_ctx_free(ctx);
      if (st != VKP_ERR_NOT_FOUND) fail_msg("device '%s': status %s, want not-found", bad[k], vkp_status_name(st));
      assert_null(ctx);
      assert_int_equal(err.status, VKP_ERR_NOT_FOUND);
      if (!strstr(err.msg, bad[k])) fail_msg("message '%s' does not name '%s'", err.msg, bad[k]);
    }
  }
  // The explicit option wins over the environment.
  setenv("VKPEFT_DEVICE", "no-such-gpu-xyz", 1);
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  vkp_ctx_options o = {.device = "0"};
  vkp_status st = vkp_ctx_new(&o, &ctx, &err);
  if (saved) setenv("VKPEFT_DEVICE", saved, 1);
  else unsetenv("VKPEFT_DEVICE");
  free(saved);
  if (st != VKP_OK) fail_msg("device '0': %s", err.msg);
  vkp_ctx_free(ctx);
}

// A graph whose arena is larger than one allocation is split into segments (forced small here):
// every tensor lies inside one segment, results are unchanged, and a tensor larger than a
// segment is a clear error.
static void test_arena_segments(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  setenv("VKPEFT_ARENA_SEGMENT", "65536", 1);
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  enum { N = 5000 };   // 20 000 bytes per tensor: 3 fit in a segment, never 4
  vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 1, (int64_t[]){N});
  vkp_tensor *keep[12], *t = x;
  for (int i = 0; i < 12; i++) {   // kept outputs: all live at once, 240 kB > 3 segments
    t = vkp_affine(g, t, 1.0f, 1.0f);
    keep[i] = t;
    vkp_graph_output(g, t);
  }
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  vkp_graph_stats st = vkp_graph_get_stats(g);
  assert_true(st.arena_bytes > 3 * 65536);
  static float in[N], out[N];
  for (int i = 0; i < N; i++) in[i] = (float)i;
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, x, in, sizeof in));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  for (int k = 0; k < 12; k++) {
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, keep[k], out, sizeof out));
    for (int i = 0; i < N; i += 97) assert_float_equal(out[i], (float)(i + k + 1), 0);
  }
  vkp_graph_free(g);
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *big = vkp_tensor_input(g, "big", VKP_DTYPE_F32, 1, (int64_t[]){20000});
  vkp_graph_output(g, vkp_scale(g, big, 2.0f));
  assert_int_equal(vkp_graph_compile(g), VKP_ERR_OOM);
  assert_non_null(strstr(vkp_ctx_error(ctx), "largest allocation"));
  vkp_graph_free(g);
  unsetenv("VKPEFT_ARENA_SEGMENT");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_cap_canary), cmocka_unit_test(test_large_tensor),
      cmocka_unit_test(test_memory_planner),  cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_device_not_found), cmocka_unit_test(test_arena_segments),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
