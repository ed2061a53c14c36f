// vkp_test.h — shared test helpers: device context with validation, deterministic random data,
// tolerance checks, and a forward + finite-difference gradient harness against float64 references.
#ifndef VKP_TEST_H
#define VKP_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// clang-format off
#include <cmocka.h>
// clang-format on

#include "vkp_device.h"
#include "vkp_graph.h"
#include "vkp_ops.h"
#include "vkp_rng.h"

#define VKP_TEST_MAX_INPUTS 8

// The context shared by a test binary (created on first use, validation layer on).
vkp_ctx *vkp_test_ctx(void);
// Whether the shared context records the GPU kernel family (VKPEFT_KERNELS=gpu on lavapipe, or a
// GPU): tests that check which kernel a shape takes check the family's own choice.
bool vkp_test_gpu_kernels(void);
// CMocka group teardown: fails if the validation layer reported anything; frees the context.
int vkp_test_teardown(void **state);

// Deterministic random numbers: the library's one generator (vkp_rng.h: vkp_rng_new,
// vkp_rng_uniform, vkp_rng_normal, vkp_rng_uniform_fill, ...).

// Asserts |got - want| <= atol + rtol * |want| elementwise; prints the worst element on failure.
void vkp_assert_close(const char *what, const float *got, const double *want, size_t n, double rtol, double atol);
void vkp_assert_close_f(const char *what, const float *got, const float *want, size_t n, double rtol, double atol);
// Max relative error (|got-want| / max(|want|, floor)).
double vkp_max_rel_err(const float *got, const double *want, size_t n, double floor);

// Fails the test with the graph/context error when st != VKP_OK.
#define VKP_ASSERT_OK(ctx, expr)                                                              \
  do {                                                                                        \
    vkp_status vkp_st_ = (expr);                                                              \
    if (vkp_st_ != VKP_OK) fail_msg("%s -> %s: %s", #expr, vkp_status_name(vkp_st_), vkp_ctx_error(ctx)); \
  } while (0)

// ---- op check harness ----------------------------------------------------------------------
typedef struct vkp_check_input {
  int ndim;
  int64_t shape[4];
  vkp_dtype dtype;       // F32 or I32 (values given as floats)
  bool trainable;        // gradient checked by finite differences
  float lo, hi;          // random range (ignored when data is given)
  const float *data;     // optional fixed values
} vkp_check_input;

typedef struct vkp_op_check {
  const char *name;
  int n_inputs;
  vkp_check_input in[VKP_TEST_MAX_INPUTS];
  // Builds the op under test from the input tensors.
  vkp_tensor *(*build)(vkp_graph *g, vkp_tensor **in, void *user);
  // float64 reference of the same op; out has `out_n` elements.
  void (*ref)(const double *const *in, double *out, void *user);
  void *user;
  double fwd_rtol, fwd_atol;    // forward tolerance vs the reference
  double grad_rtol, grad_atol;  // backward tolerance vs finite differences
  int fd_samples;               // elements per input checked by finite differences (0 = 48)
  double fd_step;               // finite-difference step (0 = 1e-4)
  uint64_t seed;
} vkp_op_check;

// Runs forward on the device vs the reference, then (if any input is trainable) the gradient of
// L = sum(out * w) (w random) vs central differences of the float64 reference.
void vkp_op_check_run(const vkp_op_check *c);

// A fresh temporary directory per test, as a CMocka setup/teardown pair: *state points to a
// vkp_test_dir; teardown removes the directory and everything in it.
typedef struct vkp_test_dir {
  char dir[64];
} vkp_test_dir;
int vkp_test_dir_setup(void **state);
int vkp_test_dir_teardown(void **state);
// dir/name in buf.
const char *vkp_test_dir_path(void **state, const char *name, char *buf, size_t cap);

// Fixture paths.
const char *vkp_fixture_path(const char *rel);   // static buffer: VKP_FIXTURES_DIR/rel

// Copies file `from` to `to` (atomically); fails the test on any error.
void vkp_test_copy_file(const char *from, const char *to);
// A run directory's metrics.jsonl (vkp_metrics_read; free with vkp_metrics_log_free); fails the test
// when it cannot be read.
struct vkp_metrics_log *vkp_test_metrics_read(const char *run_dir);

#endif
