// test_optim.c — optimizers (AdamW, SGD), gradient accumulation, global-norm clipping, LR
// schedules and optimizer state save/load, against PyTorch fixtures and float64 references.
//
// Tolerances: one AdamW step vs PyTorch: rel. error < 1e-4 per tensor (fixture README). Multi-step
// runs vs the float64 reference: rtol 2e-5, atol 2e-6 (f32 arithmetic over 3 steps of size ~lr).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vkp_optim.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

#define MAXP 16

// 8-bit AdamW: code books vs float64 (1e-6); each step vs a float64 step from the device's own
// state (parameters 1e-5, absmax 1e-5, codes the nearest but at ties); training vs f32 state.

// ---- helpers ----------------------------------------------------------------------------------

static int64_t numel_of(const vkp_param_info *p) {
  int64_t n = 1;
  for (int d = 0; d < p->ndim; d++) n *= p->shape[d];
  return n;
}

// A graph that feeds host gradients (inputs) to vkp_optimizer_append: grads[i] for trainable
// parameters, none for frozen ones.
typedef struct update_graph {
  vkp_graph *g;
  vkp_tensor *grad_in[MAXP];
  vkp_tensor *norm;
} update_graph;

static void update_graph_build(vkp_ctx *ctx, vkp_param_set *ps, vkp_optimizer *opt, update_graph *u) {
  memset(u, 0, sizeof *u);
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &u->g));
  int n = vkp_param_set_count(ps);
  assert_true(n <= MAXP);
  for (int i = 0; i < n; i++) {
    const vkp_param_info *p = vkp_param_set_get(ps, i);
    if (p->trainable) u->grad_in[i] = vkp_tensor_input(u->g, p->name, VKP_DTYPE_F32, p->ndim, p->shape);
  }
  u->norm = vkp_optimizer_append(opt, u->g, u->grad_in);
  if (!u->norm) fail_msg("append: %s", vkp_graph_error(u->g));
  if (vkp_graph_compile(u->g) != VKP_OK) fail_msg("compile: %s", vkp_ctx_error(ctx));
}

// One run: sets the gradients (float arrays per parameter, NULL entries for frozen ones).
static void update_graph_run(vkp_ctx *ctx, update_graph *u, vkp_param_set *ps, vkp_optimizer *opt, float **grads,
                             float lr, bool apply) {
  for (int i = 0; i < vkp_param_set_count(ps); i++)
    if (u->grad_in[i])
      VKP_ASSERT_OK(ctx, vkp_graph_set_input(u->g, u->grad_in[i], grads[i],
                                             (uint64_t)numel_of(vkp_param_set_get(ps, i)) * 4));
  vkp_step_scalars s = {.loss_scale = 1};
  vkp_optimizer_prepare_step(opt, lr, apply, &s);
  VKP_ASSERT_OK(ctx, vkp_graph_set_scalars(u->g, &s));
  VKP_ASSERT_OK(ctx, vkp_graph_run(u->g));
}

static float read_norm(vkp_ctx *ctx, update_graph *u) {
  float v;
  VKP_ASSERT_OK(ctx, vkp_graph_read(u->g, u->norm, &v, 4));
  return v;
}

// float64 reference optimizer state for one parameter.
typedef struct ref_param {
  int64_t n;
  double *p, *m, *v;
} ref_param;

static void ref_alloc(ref_param *r, int64_t n, const float *init) {
  r->n = n;
  r->p = calloc((size_t)n, sizeof(double));
  r->m = calloc((size_t)n, sizeof(double));
  r->v = calloc((size_t)n, sizeof(double));
  for (int64_t k = 0; k < n; k++) r->p[k] = init[k];
}
static void ref_free(ref_param *r) {
  free(r->p);
  free(r->m);
  free(r->v);
}

// Global clip coefficient of torch.nn.utils.clip_grad_norm_ over all gradients.
static double ref_clip(float **g, ref_param *r, int n, double max_norm, double *norm_out) {
  double ss = 0;
  for (int i = 0; i < n; i++)
    if (g[i])
      for (int64_t k = 0; k < r[i].n; k++) ss += (double)g[i][k] * g[i][k];
  *norm_out = sqrt(ss);
  if (max_norm <= 0) return 1;
  double c = max_norm / (*norm_out + 1e-6);
  return c < 1 ? c : 1;
}

static void ref_adamw(ref_param *r, const float *g, double clip, const vkp_optim_config *c, double lr, int t) {
  for (int64_t k = 0; k < r->n; k++) {
    double gk = g[k] * clip;
    r->p[k] *= 1 - lr * c->weight_decay;
    r->m[k] = c->beta1 * r->m[k] + (1 - c->beta1) * gk;
    r->v[k] = c->beta2 * r->v[k] + (1 - c->beta2) * gk * gk;
    double mhat = r->m[k] / (1 - pow(c->beta1, t)), vhat = r->v[k] / (1 - pow(c->beta2, t));
    r->p[k] -= lr * mhat / (sqrt(vhat) + c->eps);
  }
}

// torch.optim.SGD; r->m is the momentum buffer.
static void ref_sgd(ref_param *r, const float *g, double clip, const vkp_optim_config *c, double lr, int t) {
  for (int64_t k = 0; k < r->n; k++) {
    double d = g[k] * clip + c->weight_decay * r->p[k];
    if (c->momentum != 0) {
      r->m[k] = t == 1 ? d : c->momentum * r->m[k] + (1 - c->dampening) * d;
      d = c->nesterov ? d + c->momentum * r->m[k] : r->m[k];
    }
    r->p[k] -= lr * d;
  }
}

static void check_param(vkp_ctx *ctx, vkp_param_set *ps, int i, const double *want, double rtol, double atol) {
  const vkp_param_info *p = vkp_param_set_get(ps, i);
  int64_t n = numel_of(p);
  float *got = malloc((size_t)n * 4);
  VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, i, got, n));
  vkp_assert_close(p->name, got, want, (size_t)n, rtol, atol);
  free(got);
}

static void check_buffer_zero(vkp_buffer *b, int64_t n, const char *what) {
  float *h = malloc((size_t)n * 4);
  assert_int_equal(vkp_buffer_read(b, 0, h, (uint64_t)n * 4), VKP_OK);
  for (int64_t k = 0; k < n; k++)
    if (h[k] != 0) fail_msg("%s: element %lld is %g, expected 0", what, (long long)k, h[k]);
  free(h);
}

// ---- AdamW vs PyTorch (ViT LoRA fixture) ------------------------------------------------------

static const float *st_data(const vkp_safetensors *st, const char *name, int64_t n) {
  const vkp_st_tensor *t = vkp_safetensors_find(st, name);
  if (!t) fail_msg("fixture tensor '%s' missing", name);
  if (t->dtype != VKP_DTYPE_F32 || (int64_t)vkp_st_tensor_numel(t) != n)
    fail_msg("fixture tensor '%s': bad shape", name);
  return t->data;
}

static void test_adamw_vs_torch(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_safetensors *io = NULL, *adapter = NULL, *model = NULL;
  if (vkp_safetensors_open(vkp_fixture_path("vit/adapters/lora/io.safetensors"), &io, &err) ||
      vkp_safetensors_open(vkp_fixture_path("vit/adapters/lora/adapter_model.safetensors"), &adapter, &err) ||
      vkp_safetensors_open(vkp_fixture_path("vit/model/model.safetensors"), &model, &err))
    fail_msg("fixture: %s", err.msg);
  const double lr = 1e-2, wd = 0.01, eps = 1e-8;
  vkp_param_set *ps;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps));
  // Trainable parameters under peft's in-memory names (".default."), in io's "grad/" order.
  float *grads[MAXP] = {0};
  const float *expect[MAXP] = {0};
  int np = 0, reconstructed = 0;
  for (size_t j = 0; j < vkp_safetensors_count(io); j++) {
    const vkp_st_tensor *gt = vkp_safetensors_at(io, j);
    if (strncmp(gt->name, "grad/", 5) != 0) continue;
    const char *name = gt->name + 5;
    int64_t n = (int64_t)vkp_st_tensor_numel(gt);
    char key[256];
    snprintf(key, sizeof key, "step1/%s", name);
    expect[np] = st_data(io, key, n);
    grads[np] = malloc((size_t)n * 4);
    memcpy(grads[np], gt->data, (size_t)n * 4);
    float *init = malloc((size_t)n * 4);
    const char *cls = strstr(name, "classifier.modules_to_save.default.");
    if (cls) {   // modules_to_save: the initial head is the base model's classifier
      snprintf(key, sizeof key, "classifier.%s", cls + strlen("classifier.modules_to_save.default."));
      memcpy(init, st_data(model, key, n), (size_t)n * 4);
    } else {     // adapter weights: file name = in-memory name without ".default"
      const char *d = strstr(name, ".default.");
      assert_non_null(d);
      snprintf(key, sizeof key, "%.*s%s", (int)(d - name), name, d + strlen(".default"));
      const float *a = st_data(adapter, key, n);
      memcpy(init, a, (size_t)n * 4);
      if (memcmp(a, expect[np], (size_t)n * 4) == 0) {
        // The fixture's adapter_model.safetensors was saved after the optimizer step (its values
        // equal step1/...). Recover the pre-step values by inverting step 1 of AdamW, where
        // mhat = g and sqrt(vhat) = |g|: p1 = p0 (1 - lr wd) - lr g / (|g| + eps).
        for (int64_t k = 0; k < n; k++) {
          double g = grads[np][k];
          init[k] = (float)((expect[np][k] + lr * g / (fabs(g) + eps)) / (1 - lr * wd));
        }
        reconstructed++;
      }
    }
    int64_t shape[VKP_MAX_DIMS];
    for (int d = 0; d < gt->ndim; d++) shape[d] = gt->shape[d];
    VKP_ASSERT_OK(ctx, vkp_param_set_create(ps, name, gt->ndim, shape, true, init, NULL));
    free(init);
    np++;
  }
  assert_int_equal(np, 10);
  // A frozen parameter in the set gets no buffers and is not touched.
  float frozen_init[7] = {1, 2, 3, 4, 5, 6, 7};
  int frozen;
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps, "frozen.weight", 1, (int64_t[]){7}, false, frozen_init, &frozen));

  vkp_optim_config cfg = vkp_adamw_config(wd);
  vkp_optimizer *opt;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps, &cfg, &opt));
  assert_null(vkp_optimizer_grad(opt, frozen));
  assert_null(vkp_optimizer_state(opt, frozen, 0));
  update_graph u;
  update_graph_build(ctx, ps, opt, &u);
  update_graph_run(ctx, &u, ps, opt, grads, (float)lr, true);

  double ss = 0, worst_rel = 0;
  for (int i = 0; i < np; i++) {
    const vkp_param_info *p = vkp_param_set_get(ps, i);
    int64_t n = numel_of(p);
    float *got = malloc((size_t)n * 4);
    VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, i, got, n));
    double worst = 0, scale = 0;
    for (int64_t k = 0; k < n; k++) {
      worst = fmax(worst, fabs((double)got[k] - expect[i][k]));
      scale = fmax(scale, fabs((double)expect[i][k]));
      ss += (double)grads[i][k] * grads[i][k];
    }
    if (!(worst / scale < 1e-4)) fail_msg("%s: rel. error %.3g vs torch AdamW", p->name, worst / scale);
    worst_rel = fmax(worst_rel, worst / scale);
    double *want = malloc((size_t)n * sizeof(double));
    for (int64_t k = 0; k < n; k++) want[k] = expect[i][k];
    vkp_assert_close(p->name, got, want, (size_t)n, 1e-5, 1e-7);   // elementwise too
    // State after one step: m = (1 - b1) g, v = (1 - b2) g^2; the gradient buffer is zeroed.
    float *m = malloc((size_t)n * 4), *v = malloc((size_t)n * 4);
    VKP_ASSERT_OK(ctx, vkp_buffer_read(vkp_optimizer_state(opt, i, 0), 0, m, (uint64_t)n * 4));
    VKP_ASSERT_OK(ctx, vkp_buffer_read(vkp_optimizer_state(opt, i, 1), 0, v, (uint64_t)n * 4));
    for (int64_t k = 0; k < n; k++) {
      want[k] = 0.1 * grads[i][k];
      if (fabs(m[k] - want[k]) > 1e-6 * fabs(want[k]) + 1e-12) fail_msg("%s: exp_avg[%lld]", p->name, (long long)k);
      want[k] = 0.001 * (double)grads[i][k] * grads[i][k];
      if (fabs(v[k] - want[k]) > 1e-5 * fabs(want[k]) + 1e-15) fail_msg("%s: exp_avg_sq[%lld]", p->name, (long long)k);
    }
    check_buffer_zero(vkp_optimizer_grad(opt, i), n, "gradient after update");
    free(m);
    free(v);
    free(want);
    free(got);
  }
  float norm = read_norm(ctx, &u);
  if (fabs(norm - sqrt(ss)) > 1e-5 * sqrt(ss)) fail_msg("grad norm %.9g, want %.9g", norm, sqrt(ss));
  float fz[7];
  VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, frozen, fz, 7));
  assert_memory_equal(fz, frozen_init, sizeof fz);
  assert_int_equal(vkp_optimizer_steps(opt), 1);
  printf("AdamW step vs torch: max rel. error %.2e over %d tensors\n", worst_rel, np);
  if (reconstructed)
    printf("note: %d LoRA initial tensors recovered from step1 (adapter file holds post-step values)\n",
           reconstructed);
  vkp_graph_free(u.g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  for (int i = 0; i < np; i++) free(grads[i]);
  vkp_safetensors_free(io);
  vkp_safetensors_free(adapter);
  vkp_safetensors_free(model);
}

// ---- multi-step runs vs the float64 reference ------------------------------------------------

// Parameters of odd sizes: one spans several chunks and workgroups (5000 > 2048), one is tiny,
// one is frozen (between trainable ones, so indices of the set and of the optimizer differ).
static const int64_t k_shapes[4][2] = {{37, 5}, {5000, 1}, {3, 1}, {11, 13}};
static const bool k_trainable[4] = {true, true, false, true};

static vkp_param_set *make_params(vkp_ctx *ctx, vkp_rng *rng, ref_param *ref) {
  vkp_param_set *ps;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps));
  for (int i = 0; i < 4; i++) {
    int64_t n = k_shapes[i][0] * k_shapes[i][1];
    float *init = malloc((size_t)n * 4);
    vkp_rng_uniform_fill(rng, init, (size_t)n, -1, 1);
    char name[32];
    snprintf(name, sizeof name, "p%d", i);
    VKP_ASSERT_OK(ctx, vkp_param_set_create(ps, name, 2, k_shapes[i], k_trainable[i], init, NULL));
    if (ref) ref_alloc(&ref[i], n, init);
    free(init);
  }
  return ps;
}

static void run_reference_case(const vkp_optim_config *cfg, uint64_t seed) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_rng rng = vkp_rng_new(seed);
  ref_param ref[4];
  vkp_param_set *ps = make_params(ctx, &rng, ref);
  vkp_optimizer *opt;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps, cfg, &opt));
  update_graph u;
  update_graph_build(ctx, ps, opt, &u);
  const float lrs[3] = {0.05f, 0.02f, 0.01f};
  float *grads[4] = {0};
  for (int i = 0; i < 4; i++)
    if (k_trainable[i]) grads[i] = malloc((size_t)ref[i].n * 4);
  for (int t = 1; t <= 3; t++) {
    for (int i = 0; i < 4; i++)
      if (grads[i]) vkp_rng_uniform_fill(&rng, grads[i], (size_t)ref[i].n, t == 2 ? -3.0f : -1.0f, 1.0f);
    update_graph_run(ctx, &u, ps, opt, grads, lrs[t - 1], true);
    double norm;
    double clip = ref_clip(grads, ref, 4, cfg->max_grad_norm, &norm);
    for (int i = 0; i < 4; i++)
      if (grads[i]) {
        if (cfg->kind == VKP_OPTIM_ADAMW) ref_adamw(&ref[i], grads[i], clip, cfg, lrs[t - 1], t);
        else ref_sgd(&ref[i], grads[i], clip, cfg, lrs[t - 1], t);
      }
    float got_norm = read_norm(ctx, &u);
    if (fabs(got_norm - norm) > 1e-5 * norm) fail_msg("step %d: grad norm %.9g, want %.9g", t, got_norm, norm);
  }
  for (int i = 0; i < 4; i++) check_param(ctx, ps, i, ref[i].p, 2e-5, 2e-6);
  if (cfg->kind == VKP_OPTIM_SGD && cfg->momentum != 0) {   // the momentum buffer, too
    float *h = malloc((size_t)ref[0].n * 4);
    VKP_ASSERT_OK(ctx, vkp_buffer_read(vkp_optimizer_state(opt, 0, 0), 0, h, (uint64_t)ref[0].n * 4));
    vkp_assert_close("momentum_buffer", h, ref[0].m, (size_t)ref[0].n, 2e-5, 2e-6);
    free(h);
  }
  assert_int_equal(vkp_optimizer_steps(opt), 3);
  vkp_graph_free(u.g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  for (int i = 0; i < 4; i++) {
    free(grads[i]);
    ref_free(&ref[i]);
  }
}

static void test_adamw_reference(void **state) {
  (void)state;
  vkp_optim_config c = vkp_adamw_config(0.05);
  c.beta1 = 0.8;
  c.beta2 = 0.99;
  c.eps = 1e-6;
  run_reference_case(&c, 11);
}

static void test_sgd_reference(void **state) {
  (void)state;
  vkp_optim_config nesterov = vkp_sgd_config(0.9, true, 0.01);
  run_reference_case(&nesterov, 21);
  vkp_optim_config damped = vkp_sgd_config(0.8, false, 0.0);
  damped.dampening = 0.25;
  run_reference_case(&damped, 22);
  vkp_optim_config plain = vkp_sgd_config(0.0, false, 0.001);
  run_reference_case(&plain, 23);
}

// ---- clipping ---------------------------------------------------------------------------------

static void test_clipping(void **state) {
  (void)state;
  // Gradients of norm ~ 45: clipped to 1 (SGD with momentum shows the scale directly; AdamW
  // would nearly cancel it), then a bound above the norm: coefficient 1.
  vkp_optim_config c = vkp_sgd_config(0.5, false, 0.0);
  c.max_grad_norm = 1.0;
  run_reference_case(&c, 31);
  c.max_grad_norm = 1000.0;
  run_reference_case(&c, 32);
  vkp_optim_config a = vkp_adamw_config(0.01);
  a.max_grad_norm = 0.5;
  a.eps = 1e-2;   // a large eps makes AdamW sensitive to the gradient scale
  run_reference_case(&a, 33);
}

// ---- gradient accumulation through backward -----------------------------------------------------

// loss = sum(p * x): dL/dp = x. Two micro-batches (apply_update 0 then 1) must equal one step on
// x1 + x2, and the first must leave the parameters alone.
static void test_grad_accumulation(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_rng rng = vkp_rng_new(41);
  const int64_t shape[2] = {17, 301};
  const int64_t n = 17 * 301;
  float *init = malloc(n * 4), *x1 = malloc(n * 4), *x2 = malloc(n * 4), *got = malloc(n * 4);
  vkp_rng_uniform_fill(&rng, init, n, -1, 1);
  vkp_rng_uniform_fill(&rng, x1, n, -1, 1);
  vkp_rng_uniform_fill(&rng, x2, n, -2, 0.5f);
  vkp_param_set *ps;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps));
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps, "w", 2, shape, true, init, NULL));
  vkp_optim_config cfg = vkp_adamw_config(0.1);
  vkp_optimizer *opt;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps, &cfg, &opt));

  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *w = vkp_param_set_tensor(ps, g, 0);
  vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 2, shape);
  vkp_tensor *loss = vkp_sum(g, vkp_mul(g, w, x));
  vkp_graph_output(g, loss);
  vkp_tensor *grads[1];
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, &w, 1, grads));
  assert_non_null(grads[0]);
  vkp_tensor *norm = vkp_optimizer_append(opt, g, grads);
  assert_non_null(norm);
  if (vkp_graph_compile(g) != VKP_OK) fail_msg("compile: %s", vkp_ctx_error(ctx));

  vkp_step_scalars s = {.loss_scale = 1};
  // Micro-batch 1: accumulate only.
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, x, x1, n * 4));
  vkp_optimizer_prepare_step(opt, 0.03f, false, &s);
  assert_true(s.step == 1.0f && s.apply_update == 0);
  VKP_ASSERT_OK(ctx, vkp_graph_set_scalars(g, &s));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, 0, got, n));
  assert_memory_equal(got, init, n * 4);
  VKP_ASSERT_OK(ctx, vkp_buffer_read(vkp_optimizer_grad(opt, 0), 0, got, n * 4));
  vkp_assert_close_f("accumulated gradient", got, x1, n, 0, 0);
  // The loss is computed from the parameters before the update.
  double want_loss = 0;
  for (int64_t k = 0; k < n; k++) want_loss += (double)init[k] * x1[k];
  float l;
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, loss, &l, 4));
  if (fabs(l - want_loss) > 1e-4 * fabs(want_loss) + 1e-3) fail_msg("loss %g want %g", l, want_loss);
  // Micro-batch 2: accumulate and apply.
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, x, x2, n * 4));
  vkp_optimizer_prepare_step(opt, 0.03f, true, &s);
  assert_true(s.step == 1.0f && s.apply_update == 1);
  VKP_ASSERT_OK(ctx, vkp_graph_set_scalars(g, &s));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  check_buffer_zero(vkp_optimizer_grad(opt, 0), n, "gradient after update");

  ref_param r;
  ref_alloc(&r, n, init);
  float *sum = malloc(n * 4);
  double ss = 0;
  for (int64_t k = 0; k < n; k++) sum[k] = x1[k] + x2[k], ss += (double)sum[k] * sum[k];
  ref_adamw(&r, sum, 1.0, &cfg, 0.03f, 1);
  check_param(ctx, ps, 0, r.p, 2e-5, 2e-6);
  float gn;
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, norm, &gn, 4));
  if (fabs(gn - sqrt(ss)) > 1e-5 * sqrt(ss)) fail_msg("norm of the accumulated gradient %g, want %g", gn, sqrt(ss));
  assert_int_equal(vkp_optimizer_steps(opt), 1);

  ref_free(&r);
  free(sum);
  vkp_graph_free(g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  free(init);
  free(x1);
  free(x2);
  free(got);
}

// Weight gradients that are matrix products (dW = dY^T·x) are folded into their accumulation:
// the product adds itself into the persistent gradient buffer (no accumulate pass). Two weights
// whose gradients take the skinny (8 rows, stored transposed) and the direct kernels; two
// micro-batches without an update must leave the sum of both gradients, against float64.
static void test_grad_accumulation_folded(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_rng rng = vkp_rng_new(43);
  enum { M = 100, K1 = 64, N1 = 8, K2 = 40, N2 = 48 };
  float *w1 = malloc(N1 * K1 * 4), *w2 = malloc(N2 * K2 * 4), *x1 = malloc(M * K1 * 4), *x2 = malloc(M * K2 * 4);
  float *c1[2], *c2[2], *got = malloc(N2 * K2 * 4);
  vkp_rng_uniform_fill(&rng, w1, N1 * K1, -1, 1);
  vkp_rng_uniform_fill(&rng, w2, N2 * K2, -1, 1);
  vkp_rng_uniform_fill(&rng, x1, M * K1, -1, 1);
  vkp_rng_uniform_fill(&rng, x2, M * K2, -1, 1);
  for (int r = 0; r < 2; r++) {
    c1[r] = malloc(M * N1 * 4), c2[r] = malloc(M * N2 * 4);
    vkp_rng_uniform_fill(&rng, c1[r], M * N1, -1, 1);
    vkp_rng_uniform_fill(&rng, c2[r], M * N2, -1, 1);
  }
  vkp_param_set *ps;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps));
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps, "w1", 2, (int64_t[]){N1, K1}, true, w1, NULL));
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps, "w2", 2, (int64_t[]){N2, K2}, true, w2, NULL));
  vkp_optim_config cfg = vkp_adamw_config(0.1);
  vkp_optimizer *opt;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps, &cfg, &opt));

  // loss = sum(c1 * (x1 W1^T)) + sum(c2 * (x2 W2^T)): dWi = ci^T xi.
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *w[2] = {vkp_param_set_tensor(ps, g, 0), vkp_param_set_tensor(ps, g, 1)};
  vkp_tensor *tx1 = vkp_tensor_input(g, "x1", VKP_DTYPE_F32, 2, (int64_t[]){M, K1});
  vkp_tensor *tx2 = vkp_tensor_input(g, "x2", VKP_DTYPE_F32, 2, (int64_t[]){M, K2});
  vkp_tensor *tc1 = vkp_tensor_input(g, "c1", VKP_DTYPE_F32, 2, (int64_t[]){M, N1});
  vkp_tensor *tc2 = vkp_tensor_input(g, "c2", VKP_DTYPE_F32, 2, (int64_t[]){M, N2});
  vkp_tensor *loss = vkp_add(g, vkp_sum(g, vkp_mul(g, tc1, vkp_matmul(g, tx1, w[0], false, true))),
                             vkp_sum(g, vkp_mul(g, tc2, vkp_matmul(g, tx2, w[1], false, true))));
  vkp_graph_output(g, loss);
  vkp_tensor *grads[2];
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, w, 2, grads));
  assert_non_null(vkp_optimizer_append(opt, g, grads));
  uint64_t adds = vkp_ctx_shader_dispatches(ctx, "binary_add");
  if (vkp_graph_compile(g) != VKP_OK) fail_msg("compile: %s", vkp_ctx_error(ctx));
  // The loss adds its two sums (one binary_add); the gradients add nothing.
  assert_int_equal(vkp_ctx_shader_dispatches(ctx, "binary_add") - adds, 1);

  vkp_step_scalars s = {.loss_scale = 1};
  for (int r = 0; r < 2; r++) {
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, tx1, x1, M * K1 * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, tx2, x2, M * K2 * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, tc1, c1[r], M * N1 * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, tc2, c2[r], M * N2 * 4));
    vkp_optimizer_prepare_step(opt, 0.03f, false, &s);
    VKP_ASSERT_OK(ctx, vkp_graph_set_scalars(g, &s));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  }
  const float *xs[2] = {x1, x2};
  float *const *cs[2] = {c1, c2};
  const int ks[2] = {K1, K2}, ns[2] = {N1, N2};
  for (int i = 0; i < 2; i++) {
    float *want = malloc((size_t)(ns[i] * ks[i]) * 4);
    for (int n = 0; n < ns[i]; n++)
      for (int k = 0; k < ks[i]; k++) {
        double acc = 0;
        for (int r = 0; r < 2; r++)
          for (int m = 0; m < M; m++) acc += (double)cs[i][r][m * ns[i] + n] * xs[i][m * ks[i] + k];
        want[n * ks[i] + k] = (float)acc;
      }
    VKP_ASSERT_OK(ctx, vkp_buffer_read(vkp_optimizer_grad(opt, i), 0, got, (uint64_t)(ns[i] * ks[i]) * 4));
    vkp_assert_close_f(i ? "folded gradient w2" : "folded gradient w1", got, want, ns[i] * ks[i], 1e-5, 1e-4);
    free(want);
  }
  vkp_graph_free(g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  for (int r = 0; r < 2; r++) free(c1[r]), free(c2[r]);
  free(w1), free(w2), free(x1), free(x2), free(got);
}

// ---- LR schedules -------------------------------------------------------------------------------

static void expect_lr(const vkp_lr_schedule *s, int64_t step, double want) {
  float got = vkp_lr_at(s, step);
  if (fabs(got - want) > 1e-6 * fabs(want) + 1e-9)
    fail_msg("%s schedule at step %lld: %.9g, want %.9g", vkp_lr_kind_name(s->kind), (long long)step, got, want);
}

static void test_lr_schedules(void **state) {
  (void)state;
  // Values worked out by hand from transformers' lambdas (W = 10, N = 110).
  vkp_lr_schedule lin = vkp_lr_linear(2e-3f, 10, 110);
  expect_lr(&lin, 0, 0);
  expect_lr(&lin, 1, 2e-4);
  expect_lr(&lin, 5, 1e-3);
  expect_lr(&lin, 10, 2e-3);
  expect_lr(&lin, 60, 1e-3);
  expect_lr(&lin, 85, 5e-4);
  expect_lr(&lin, 110, 0);
  expect_lr(&lin, 500, 0);
  vkp_lr_schedule cosv = vkp_lr_cosine(1.0f, 10, 110);
  expect_lr(&cosv, 3, 0.3);
  expect_lr(&cosv, 10, 1);
  expect_lr(&cosv, 35, 0.85355339059327373);   // (1 + cos(pi/4)) / 2
  expect_lr(&cosv, 60, 0.5);
  expect_lr(&cosv, 85, 0.14644660940672624);   // (1 - cos(pi/4)) / 2
  expect_lr(&cosv, 110, 0);
  expect_lr(&cosv, 200, 0.97552825814757682);  // HF does not clamp progress: (1 + cos(1.9 pi)) / 2
  cosv.num_cycles = 1.0f;                      // a full period: back to the base at the end
  expect_lr(&cosv, 60, 0);
  expect_lr(&cosv, 110, 1);
  vkp_lr_schedule con = vkp_lr_constant(5e-4f, 4);
  expect_lr(&con, 0, 0);
  expect_lr(&con, 2, 2.5e-4);
  expect_lr(&con, 4, 5e-4);
  expect_lr(&con, 100000, 5e-4);
  vkp_lr_schedule nowarm = vkp_lr_linear(1.0f, 0, 4);
  expect_lr(&nowarm, 0, 1);
  expect_lr(&nowarm, 1, 0.75);
  expect_lr(&nowarm, 3, 0.25);
  vkp_lr_kind k;
  assert_int_equal(vkp_lr_kind_parse("cosine", &k), VKP_OK);
  assert_int_equal(k, VKP_LR_COSINE);
  assert_int_equal(vkp_lr_kind_parse("constant_with_warmup", &k), VKP_OK);
  assert_int_equal(k, VKP_LR_CONSTANT);
  assert_int_equal(vkp_lr_kind_parse("exponential", &k), VKP_ERR_INVALID);
}

// ---- save / load ------------------------------------------------------------------------------

static void test_save_load(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  char dir[] = "/tmp/vkp_optim_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], bad[256];
  snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
  vkp_rng rng = vkp_rng_new(51);
  vkp_param_set *ps = make_params(ctx, &rng, NULL);
  vkp_optim_config cfg = vkp_adamw_config(0.02);
  cfg.beta2 = 0.95;
  cfg.max_grad_norm = 2.5;
  vkp_optimizer *a;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps, &cfg, &a));
  update_graph ua;
  update_graph_build(ctx, ps, a, &ua);
  float *grads[4] = {0};
  for (int i = 0; i < 4; i++)
    if (k_trainable[i]) grads[i] = malloc((size_t)(k_shapes[i][0] * k_shapes[i][1]) * 4);
  for (int t = 0; t < 2; t++) {
    for (int i = 0; i < 4; i++)
      if (grads[i]) vkp_rng_uniform_fill(&rng, grads[i], (size_t)(k_shapes[i][0] * k_shapes[i][1]), -1, 1);
    update_graph_run(ctx, &ua, ps, a, grads, 0.01f, true);
  }
  VKP_ASSERT_OK(ctx, vkp_optimizer_save(a, path));

  // A second optimizer over a copy of the parameters, restored from the file.
  vkp_param_set *ps2;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps2));
  for (int i = 0; i < 4; i++) {
    const vkp_param_info *p = vkp_param_set_get(ps, i);
    int64_t n = numel_of(p);
    float *h = malloc((size_t)n * 4);
    VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, i, h, n));
    VKP_ASSERT_OK(ctx, vkp_param_set_create(ps2, p->name, p->ndim, p->shape, p->trainable, h, NULL));
    free(h);
  }
  vkp_optim_config other = vkp_adamw_config(0.5);
  vkp_optimizer *b;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps2, &other, &b));
  VKP_ASSERT_OK(ctx, vkp_optimizer_load(b, path));
  assert_int_equal(vkp_optimizer_steps(b), 2);
  const vkp_optim_config *lc = vkp_optimizer_config(b);
  assert_true(lc->weight_decay == cfg.weight_decay && lc->beta1 == cfg.beta1 && lc->beta2 == cfg.beta2 &&
              lc->eps == cfg.eps && lc->max_grad_norm == cfg.max_grad_norm);
  for (int i = 0; i < 4; i++)
    for (int w = 0; w < 2; w++) {
      vkp_buffer *sa = vkp_optimizer_state(a, i, w), *sb = vkp_optimizer_state(b, i, w);
      assert_true((sa == NULL) == (sb == NULL));
      if (!sa) continue;
      uint64_t bytes = vkp_buffer_size(sa);
      void *ha = malloc(bytes), *hb = malloc(bytes);
      VKP_ASSERT_OK(ctx, vkp_buffer_read(sa, 0, ha, bytes));
      VKP_ASSERT_OK(ctx, vkp_buffer_read(sb, 0, hb, bytes));
      assert_memory_equal(ha, hb, bytes);
      free(ha);
      free(hb);
    }
  // One more step on both: identical parameters (state, step count and config all restored).
  update_graph ub;
  update_graph_build(ctx, ps2, b, &ub);
  for (int i = 0; i < 4; i++)
    if (grads[i]) vkp_rng_uniform_fill(&rng, grads[i], (size_t)(k_shapes[i][0] * k_shapes[i][1]), -1, 1);
  update_graph_run(ctx, &ua, ps, a, grads, 0.01f, true);
  update_graph_run(ctx, &ub, ps2, b, grads, 0.01f, true);
  for (int i = 0; i < 4; i++) {
    int64_t n = numel_of(vkp_param_set_get(ps, i));
    float *ha = malloc((size_t)n * 4), *hb = malloc((size_t)n * 4);
    VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, i, ha, n));
    VKP_ASSERT_OK(ctx, vkp_param_set_read(ps2, i, hb, n));
    assert_memory_equal(ha, hb, (size_t)n * 4);
    free(ha);
    free(hb);
  }

  // Errors: wrong optimizer kind, a parameter of another shape, a missing parameter, a stray one.
  vkp_optim_config sgd = vkp_sgd_config(0.9, false, 0);
  vkp_optimizer *c;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps2, &sgd, &c));
  assert_int_equal(vkp_optimizer_load(c, path), VKP_ERR_INVALID);
  assert_non_null(strstr(vkp_ctx_error(ctx), "adamw"));
  vkp_optimizer_free(c);

  vkp_param_set *ps3;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps3));
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps3, "p0", 2, (int64_t[]){5, 37}, true, NULL, NULL));
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps3, &cfg, &c));
  assert_int_equal(vkp_optimizer_load(c, path), VKP_ERR_SHAPE);
  assert_non_null(strstr(vkp_ctx_error(ctx), "p0.exp_avg"));
  vkp_optimizer_free(c);
  vkp_param_set_free(ps3);

  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps3));
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps3, "p0", 2, k_shapes[0], true, NULL, NULL));
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps3, &cfg, &c));
  assert_int_equal(vkp_optimizer_load(c, path), VKP_ERR_INVALID);   // p1, p3 have no parameter here
  assert_non_null(strstr(vkp_ctx_error(ctx), "belongs to no trainable parameter"));
  assert_int_equal(vkp_optimizer_steps(c), 0);                      // unchanged
  vkp_optimizer_free(c);
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps3, "extra", 1, (int64_t[]){3}, true, NULL, NULL));
  // (the optimizer only sees parameters present at its creation)
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps3, "p1", 2, k_shapes[1], true, NULL, NULL));
  VKP_ASSERT_OK(ctx, vkp_param_set_create(ps3, "p3", 2, k_shapes[3], true, NULL, NULL));
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps3, &cfg, &c));
  assert_int_equal(vkp_optimizer_load(c, path), VKP_ERR_NOT_FOUND);
  assert_non_null(strstr(vkp_ctx_error(ctx), "extra"));
  vkp_optimizer_free(c);
  vkp_param_set_free(ps3);

  snprintf(bad, sizeof bad, "%s/missing.safetensors", dir);
  assert_int_equal(vkp_optimizer_load(b, bad), VKP_ERR_IO);
  assert_int_equal(vkp_optimizer_steps(b), 3);

  // Bad hyper-parameters and kinds are refused.
  vkp_optim_config badc = vkp_adamw_config(0.01);
  badc.beta1 = 1.0;
  assert_int_equal(vkp_optimizer_new(ps, &badc, &c), VKP_ERR_INVALID);
  assert_null(c);
  badc = vkp_sgd_config(0.0, true, 0);
  assert_int_equal(vkp_optimizer_new(ps, &badc, &c), VKP_ERR_INVALID);
  assert_int_equal(vkp_optimizer_set_config(b, &sgd), VKP_ERR_INVALID);

  vkp_graph_free(ua.g);
  vkp_graph_free(ub.g);
  vkp_optimizer_free(a);
  vkp_optimizer_free(b);
  vkp_param_set_free(ps);
  vkp_param_set_free(ps2);
  for (int i = 0; i < 4; i++) free(grads[i]);
  unlink(path);
  rmdir(dir);
}

// ---- parameter sets ---------------------------------------------------------------------------

static void test_param_set(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_param_set *ps;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps));
  vkp_buffer *buf;
  VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, 1024, &buf));
  int i;
  VKP_ASSERT_OK(ctx, vkp_param_set_add(ps, "a", buf, 256, VKP_DTYPE_F32, 2, (int64_t[]){4, 8}, true, &i));
  assert_int_equal(i, 0);
  VKP_ASSERT_OK(ctx, vkp_param_set_add(ps, "b16", buf, 0, VKP_DTYPE_F16, 1, (int64_t[]){64}, false, &i));
  assert_int_equal(vkp_param_set_add(ps, "a", buf, 0, VKP_DTYPE_F32, 1, (int64_t[]){4}, true, NULL), VKP_ERR_INVALID);
  assert_int_equal(vkp_param_set_add(ps, "c", buf, 0, VKP_DTYPE_F16, 1, (int64_t[]){4}, true, NULL), VKP_ERR_INVALID);
  assert_int_equal(vkp_param_set_add(ps, "d", buf, 1000, VKP_DTYPE_F32, 1, (int64_t[]){8}, false, NULL),
                   VKP_ERR_INVALID);
  assert_non_null(strstr(vkp_ctx_error(ctx), "'d'"));
  assert_int_equal(vkp_param_set_count(ps), 2);
  assert_int_equal(vkp_param_set_find(ps, "b16"), 1);
  assert_int_equal(vkp_param_set_find(ps, "zz"), -1);
  assert_null(vkp_param_set_get(ps, 2));
  float v[32], r[32];
  for (int k = 0; k < 32; k++) v[k] = (float)k;
  VKP_ASSERT_OK(ctx, vkp_param_set_write(ps, 0, v, 32));
  VKP_ASSERT_OK(ctx, vkp_buffer_read(buf, 256, r, sizeof r));   // lands at the registered offset
  assert_memory_equal(v, r, sizeof v);
  assert_int_equal(vkp_param_set_write(ps, 0, v, 31), VKP_ERR_SHAPE);
  // Gradient of the wrong shape given to the optimizer: a graph error, no crash.
  vkp_optim_config cfg = vkp_adamw_config(0);
  vkp_optimizer *opt;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps, &cfg, &opt));
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *grads[2] = {vkp_tensor_input(g, "g", VKP_DTYPE_F32, 2, (int64_t[]){8, 4}), NULL};
  assert_null(vkp_optimizer_append(opt, g, grads));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  assert_non_null(strstr(vkp_graph_error(g), "'a'"));
  vkp_graph_free(g);
  // No gradient at all: the norm is a constant 0 and nothing changes.
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  grads[0] = NULL;
  vkp_tensor *norm = vkp_optimizer_append(opt, g, grads);
  assert_non_null(norm);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  float nv = -1;
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, norm, &nv, 4));
  assert_true(nv == 0.0f);
  VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, 0, r, 32));
  assert_memory_equal(v, r, sizeof v);
  vkp_graph_free(g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  vkp_buffer_free(buf);
}

// ---- 8-bit AdamW (block-wise quantised state) ------------------------------------------------

// bitsandbytes' create_dynamic_map in float64 (the reference for vkp_optim_qmaps, which rounds
// torch's float32 computation): 256 ascending values per map.
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void ref_dynamic_map(bool is_signed, double *out) {
  int n = 0;
  for (int i = 0; i < 7; i++) {
    int items = is_signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;
    for (int k = 0; k + 1 < items; k++) {
      double b0 = 0.1 + 0.9 * k / (items - 1), b1 = 0.1 + 0.9 * (k + 1) / (items - 1);
      double v = pow(10.0, i - 6) * (b0 + b1) / 2;
      out[n++] = v;
      if (is_signed) out[n++] = -v;
    }
  }
  out[n++] = 0;
  out[n++] = 1;
  assert_int_equal(n, 256);
  qsort(out, 256, sizeof *out, cmp_double);
}

static void test_qmaps(void **state) {
  (void)state;
  float got[512];
  double want[512];
  vkp_optim_qmaps(got);
  ref_dynamic_map(true, want);
  ref_dynamic_map(false, want + 256);
  double worst = 0;
  for (int i = 0; i < 512; i++) {
    double e = fabs(got[i] - want[i]) / (fabs(want[i]) + 1e-30);
    if (want[i] == 0) assert_true(got[i] == 0.0f);
    else if (e > worst) worst = e;
    if (i % 256) assert_true(got[i] > got[i - 1]);   // strictly ascending: nearest-code search
  }
  printf("  code books vs float64 create_dynamic_map: worst rel err %.2e\n", worst);
  assert_true(worst < 1e-6);
  assert_true(got[0] < -0.99f && got[255] == 1.0f && got[256] == 0.0f && got[511] == 1.0f);
}

// Host copy of an 8-bit parameter's state: codes and absmax per state.
typedef struct q8_state {
  int64_t n, blocks;
  uint8_t *code[2];
  float *absmax[2];
} q8_state;

static void q8_read(vkp_ctx *ctx, vkp_optimizer *opt, int i, int64_t n, q8_state *q) {
  q->n = n;
  q->blocks = (n + VKP_OPTIM_8BIT_BLOCK - 1) / VKP_OPTIM_8BIT_BLOCK;
  for (int w = 0; w < 2; w++) {
    q->code[w] = malloc((size_t)n);
    q->absmax[w] = malloc((size_t)q->blocks * 4);
    assert_non_null(vkp_optimizer_absmax(opt, i, w));
    VKP_ASSERT_OK(ctx, vkp_buffer_read(vkp_optimizer_state(opt, i, w), 0, q->code[w], (uint64_t)n));
    VKP_ASSERT_OK(ctx, vkp_buffer_read(vkp_optimizer_absmax(opt, i, w), 0, q->absmax[w], (uint64_t)q->blocks * 4));
  }
}

static void q8_free(q8_state *q) {
  for (int w = 0; w < 2; w++) free(q->code[w]), free(q->absmax[w]);
}

// One 8-bit AdamW step in float64 from the device's state `before` (re-synchronised every step,
// so that a code that rounds the other way at a tie does not make the runs drift apart), checked
// against the device's parameters and state `after`: parameters within rtol 1e-5; absmax within
// 1e-5; each code the nearest to value/absmax, where a different code is accepted only at a tie
// (the value within 1e-5 of the midpoint between the two codes). Returns the count of such ties.
static int q8_check_step(const float *codes, const q8_state *before, const q8_state *after, const float *p_before,
                         const float *p_after, const float *g, const vkp_optim_config *c, double lr, int t) {
  int ties = 0;
  int64_t n = before->n;
  double *m = malloc((size_t)n * 8), *v = malloc((size_t)n * 8);
  double worst_p = 0;
  for (int64_t k = 0; k < n; k++) {
    int64_t b = k / VKP_OPTIM_8BIT_BLOCK;
    double mk = codes[before->code[0][k]] * (double)before->absmax[0][b];
    double vk = codes[256 + before->code[1][k]] * (double)before->absmax[1][b];
    mk = c->beta1 * mk + (1 - c->beta1) * g[k];
    vk = c->beta2 * vk + (1 - c->beta2) * (double)g[k] * g[k];
    double pk = p_before[k] * (1 - lr * c->weight_decay);
    pk -= lr / (1 - pow(c->beta1, t)) * mk / (sqrt(vk) / sqrt(1 - pow(c->beta2, t)) + c->eps);
    double e = fabs(pk - p_after[k]) / (fabs(pk) + 1e-3);
    if (e > worst_p) worst_p = e;
    m[k] = mk, v[k] = vk;
  }
  assert_true(worst_p < 1e-5);
  for (int64_t b = 0; b < before->blocks; b++) {
    double am[2] = {0, 0};
    for (int64_t k = b * VKP_OPTIM_8BIT_BLOCK; k < n && k < (b + 1) * VKP_OPTIM_8BIT_BLOCK; k++) {
      if (fabs(m[k]) > am[0]) am[0] = fabs(m[k]);
      if (v[k] > am[1]) am[1] = v[k];
    }
    for (int w = 0; w < 2; w++) {
      assert_true(fabs(after->absmax[w][b] - am[w]) <= 1e-5 * am[w]);
      for (int64_t k = b * VKP_OPTIM_8BIT_BLOCK; k < n && k < (b + 1) * VKP_OPTIM_8BIT_BLOCK; k++) {
        double x = am[w] > 0 ? (w ? v[k] : m[k]) / am[w] : 0;
        const float *cb = codes + 256 * w;
        int best = 0;
        for (int i = 1; i < 256; i++)
          if (fabs(cb[i] - x) < fabs(cb[best] - x)) best = i;
        int gotc = after->code[w][k];
        if (gotc != best) {
          double mid = 0.5 * ((double)cb[gotc] + cb[best]);
          if (abs(gotc - best) != 1 || fabs(x - mid) > 1e-5)
            fail_msg("state %d element %lld: code %d, nearest is %d (x = %.9g)", w + 1, (long long)k, gotc, best, x);
          ties++;
        }
      }
    }
  }
  free(m), free(v);
  return ties;
}

static void test_adamw8bit_reference(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_rng rng = vkp_rng_new(88);
  // 10000 elements: 8-bit state over 40 blocks, the last partial; 300: below the 8-bit minimum.
  const int64_t shapes[2][2] = {{100, 100}, {3, 100}};
  vkp_param_set *ps;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps));
  float *p0[2], *g[2];
  for (int i = 0; i < 2; i++) {
    int64_t n = shapes[i][0] * shapes[i][1];
    p0[i] = malloc((size_t)n * 4);
    g[i] = malloc((size_t)n * 4);
    vkp_rng_uniform_fill(&rng, p0[i], (size_t)n, -1, 1);
    char name[16];
    snprintf(name, sizeof name, "w%d", i);
    VKP_ASSERT_OK(ctx, vkp_param_set_create(ps, name, 2, shapes[i], true, p0[i], NULL));
  }
  vkp_optim_config cfg = vkp_adamw_config(0.01);
  VKP_ASSERT_OK(ctx, vkp_optim_name_parse("adamw8bit", &cfg));
  assert_string_equal(vkp_optim_config_name(&cfg), "adamw8bit");
  vkp_optimizer *opt;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps, &cfg, &opt));
  assert_non_null(vkp_optimizer_absmax(opt, 0, 0));
  assert_null(vkp_optimizer_absmax(opt, 1, 0));   // small parameter: f32 state
  update_graph u;
  update_graph_build(ctx, ps, opt, &u);
  float codes[512];
  vkp_optim_qmaps(codes);
  const int64_t n0 = 10000;
  float *pb = malloc(n0 * 4), *pa = malloc(n0 * 4);
  ref_param small;
  ref_alloc(&small, 300, p0[1]);
  int ties = 0;
  for (int t = 1; t <= 6; t++) {
    // Gradients of changing scale (outlier blocks included): block-wise absmax has to follow.
    for (int i = 0; i < 2; i++) vkp_rng_uniform_fill(&rng, g[i], (size_t)(shapes[i][0] * shapes[i][1]), -1, 1);
    for (int64_t k = 0; k < n0; k++) g[0][k] *= (k / 256) % 5 == 0 ? 30.0f : 1e-3f * t;
    q8_state before, after;
    q8_read(ctx, opt, 0, n0, &before);
    VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, 0, pb, n0));
    update_graph_run(ctx, &u, ps, opt, g, 0.01f, true);
    VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, 0, pa, n0));
    q8_read(ctx, opt, 0, n0, &after);
    ties += q8_check_step(codes, &before, &after, pb, pa, g[0], &cfg, 0.01, t);
    q8_free(&before), q8_free(&after);
    ref_adamw(&small, g[1], 1.0, &cfg, 0.01, t);
  }
  float got[300];
  VKP_ASSERT_OK(ctx, vkp_param_set_read(ps, 1, got, 300));
  vkp_assert_close("f32-state parameter", got, small.p, 300, 2e-5, 2e-6);
  printf("  6 steps, 10000 elements of 8-bit state: every code the nearest (%d ties within 1e-5)\n", ties);
  assert_true(ties < 20);
  // Memory: codes (1 byte) + absmax (4 bytes / 256) per element and state, vs 4 bytes.
  uint64_t bytes = vkp_optimizer_state_bytes(opt);
  uint64_t f32_bytes = (uint64_t)(n0 + 300) * 8;
  printf("  state bytes: %llu (8-bit) vs %llu (f32): %.3f\n", (unsigned long long)bytes, (unsigned long long)f32_bytes,
         (double)bytes / f32_bytes);
  assert_true(bytes == 2 * (n0 + 40 * 4) + 300 * 8);
  ref_free(&small);
  free(pb), free(pa);
  vkp_graph_free(u.g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  for (int i = 0; i < 2; i++) free(p0[i]), free(g[i]);
}

// 8-bit state follows the f32 optimizer on a least-squares problem (bitsandbytes' claim), saves
// and resumes exactly, and refuses to load into a 32-bit optimizer.
static void test_adamw8bit_training(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  const int64_t n = 8192;
  float *target = malloc(n * 4), *init = malloc(n * 4), *g = malloc(n * 4), *pa = malloc(n * 4), *pb = malloc(n * 4);
  vkp_rng rng = vkp_rng_new(5);
  vkp_rng_uniform_fill(&rng, target, n, -1, 1);
  vkp_rng_uniform_fill(&rng, init, n, -1, 1);
  vkp_param_set *ps[3];
  vkp_optimizer *opt[3];
  update_graph u[3];
  for (int r = 0; r < 3; r++) {   // 0: f32 state, 1: 8-bit, 2: 8-bit resumed from 1's checkpoint
    VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps[r]));
    VKP_ASSERT_OK(ctx, vkp_param_set_create(ps[r], "w", 1, &n, true, init, NULL));
    vkp_optim_config cfg = vkp_adamw_config(0.0);
    VKP_ASSERT_OK(ctx, vkp_optim_name_parse(r ? "adamw8bit" : "adamw", &cfg));
    VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps[r], &cfg, &opt[r]));
    update_graph_build(ctx, ps[r], opt[r], &u[r]);
  }
  char dir[] = "/tmp/vkp_optim8_XXXXXX", path[256];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
  double loss0 = 0, loss[2] = {0, 0};
  for (int64_t k = 0; k < n; k++) loss0 += 0.5 * (init[k] - target[k]) * (init[k] - target[k]);
  for (int t = 0; t < 150; t++) {
    for (int r = 0; r < 2; r++) {
      VKP_ASSERT_OK(ctx, vkp_param_set_read(ps[r], 0, pa, n));
      for (int64_t k = 0; k < n; k++) g[k] = pa[k] - target[k];   // d/dw of 0.5 (w - target)^2
      update_graph_run(ctx, &u[r], ps[r], opt[r], (float *[]){g}, 0.02f, true);
    }
    if (t == 99) {
      VKP_ASSERT_OK(ctx, vkp_optimizer_save(opt[1], path));
      VKP_ASSERT_OK(ctx, vkp_param_set_read(ps[1], 0, pa, n));
      VKP_ASSERT_OK(ctx, vkp_param_set_write(ps[2], 0, pa, n));
      VKP_ASSERT_OK(ctx, vkp_optimizer_load(opt[2], path));
      assert_true(vkp_optimizer_load(opt[0], path) != VKP_OK);   // 8-bit state, 32-bit optimizer
      assert_non_null(strstr(vkp_ctx_error(ctx), "8-bit"));
    }
    if (t >= 100) {
      VKP_ASSERT_OK(ctx, vkp_param_set_read(ps[2], 0, pa, n));
      for (int64_t k = 0; k < n; k++) g[k] = pa[k] - target[k];
      update_graph_run(ctx, &u[2], ps[2], opt[2], (float *[]){g}, 0.02f, true);
    }
  }
  for (int r = 0; r < 2; r++) {
    VKP_ASSERT_OK(ctx, vkp_param_set_read(ps[r], 0, pa, n));
    for (int64_t k = 0; k < n; k++) loss[r] += 0.5 * (pa[k] - target[k]) * (pa[k] - target[k]);
  }
  VKP_ASSERT_OK(ctx, vkp_param_set_read(ps[1], 0, pa, n));
  VKP_ASSERT_OK(ctx, vkp_param_set_read(ps[2], 0, pb, n));
  assert_memory_equal(pa, pb, n * 4);   // resumed from the checkpoint: bit-identical
  printf("  least squares, 150 steps: loss %.4g -> %.4g (f32 state), %.4g (8-bit state)\n", loss0, loss[0], loss[1]);
  assert_true(loss[0] < 0.05 * loss0);
  assert_true(loss[1] < 0.05 * loss0 && fabs(loss[1] - loss[0]) < 0.25 * loss[0] + 1e-3 * loss0);
  for (int r = 0; r < 3; r++) {
    vkp_graph_free(u[r].g);
    vkp_optimizer_free(opt[r]);
    vkp_param_set_free(ps[r]);
  }
  unlink(path);
  rmdir(dir);
  free(target), free(init), free(g), free(pa), free(pb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adamw_vs_torch),    cmocka_unit_test(test_adamw_reference),
      cmocka_unit_test(test_sgd_reference),     cmocka_unit_test(test_clipping),
      cmocka_unit_test(test_grad_accumulation), cmocka_unit_test(test_grad_accumulation_folded),
      cmocka_unit_test(test_lr_schedules),
      cmocka_unit_test(test_save_load),         cmocka_unit_test(test_param_set),
      cmocka_unit_test(test_qmaps),             cmocka_unit_test(test_adamw8bit_reference),
      cmocka_unit_test(test_adamw8bit_training),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
