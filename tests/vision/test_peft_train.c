// test_peft_train.c — every PEFT method (and full fine-tuning, linear probing) trains: on a small
// synthetic 4-class image task (procedural 16x16 patterns), AdamW steps over the adapter's
// trainable parameters only, with the base ViT frozen at random "pretrained" weights, must bring
// the cross-entropy loss well down. Also checks that frozen parameters stay bit-identical and that
// every trainable parameter moves. The classifier head is NOT trained except where the method
// trains it (full, linear_probe, bitfit's bias), so the loss drop is the adapter's own doing.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vkp_optim.h"
#include "vkp_peft.h"
#include "vkp_test.h"
#include "vkp_vit.h"

#define NCLS 4
#define PER_CLASS 8
#define NS (NCLS * PER_CLASS)
#define IMG 16
#define NPIX (NS * 3 * IMG * IMG)

static float g_pixels[NPIX];
static int32_t g_labels[NS];

// Four pattern classes with random period, phase, position and colour, plus noise:
// 0 horizontal stripes, 1 vertical stripes, 2 checkerboard, 3 a bright blob.
static void make_data(void) {
  vkp_rng r = vkp_rng_new(2024);
  for (int s = 0; s < NS; s++) {
    int cls = s % NCLS;
    g_labels[s] = cls;
    double period = 4 + 4 * vkp_rng_uniform(&r), p1 = 6.283 * vkp_rng_uniform(&r), p2 = 6.283 * vkp_rng_uniform(&r);
    double cx = 4 + 8 * vkp_rng_uniform(&r), cy = 4 + 8 * vkp_rng_uniform(&r), sig = 2 + 1.5 * vkp_rng_uniform(&r);
    double gain[3];
    for (int c = 0; c < 3; c++) gain[c] = 0.5 + 0.5 * vkp_rng_uniform(&r);
    for (int y = 0; y < IMG; y++)
      for (int x = 0; x < IMG; x++) {
        double v;
        switch (cls) {
          case 0: v = sin(6.283 * y / period + p1); break;
          case 1: v = sin(6.283 * x / period + p1); break;
          case 2: v = 0.8 * (sin(6.283 * x / period + p1) > 0 ? 1 : -1) * (sin(6.283 * y / period + p2) > 0 ? 1 : -1); break;
          default: v = 2 * exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * sig * sig)) - 0.5; break;
        }
        for (int c = 0; c < 3; c++)
          g_pixels[((s * 3 + c) * IMG + y) * IMG + x] = (float)(gain[c] * v + 0.1 * vkp_rng_normal(&r));
      }
  }
}

// The frozen base: a small ViT with unit-variance random layers (transformers' std 0.02 init
// gives nearly input-independent features), identical for every method.
static vkp_vit *make_base(void) {
  vkp_vit_config c;
  vkp_vit_config_default(&c);
  c.image_size = IMG, c.patch_size = 4, c.hidden_size = 32, c.num_hidden_layers = 2, c.num_attention_heads = 4;
  c.intermediate_size = 64, c.num_labels = NCLS, c.layer_norm_eps = 1e-6f;
  vkp_vit *v;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_vit_new(vkp_test_ctx(), &c, 7, &v));
  vkp_rng r = vkp_rng_new(11);
  vkp_model *m = v->model;
  for (int i = 0; i < m->nparams; i++) {
    vkp_param *p = m->params[i];
    const vkp_module *mod = p->module;
    int64_t n = vkp_param_numel(p);
    float *x = malloc((size_t)n * 4);
    bool norm = mod && mod->kind == VKP_MODULE_LAYER_NORM, bias = mod && p == mod->bias;
    double bound = bias || norm ? 0.1 : mod ? sqrt(3.0 / (double)(n / p->shape[0])) : 0.5;
    for (int64_t k = 0; k < n; k++) x[k] = (float)((norm && !bias ? 1 : 0) + (2 * vkp_rng_uniform(&r) - 1) * bound);
    VKP_ASSERT_OK(m->ctx, vkp_param_write_f32(m, p, x));
    free(x);
  }
  return v;
}

static void targets(vkp_peft_config *c, const char *a, const char *b, const char *d) {
  const char *t[3] = {a, b, d};
  for (int i = 0; i < 3; i++)
    if (t[i]) c->target_modules[c->n_target_modules++] = strdup(t[i]);
}

// Standard initialisation (LoRA B = 0, (IA)^3 ones, ...): the adapted model starts as the base.
static void make_config(const char *label, vkp_peft_config *c) {
  if (!strcmp(label, "lora") || !strcmp(label, "rslora") || !strcmp(label, "dora")) {
    vkp_peft_config_init(c, VKP_PEFT_LORA);
    c->r = 4, c->alpha = 8;
    c->use_rslora = !strcmp(label, "rslora");
    c->use_dora = !strcmp(label, "dora");
    targets(c, "query", "value", NULL);
  } else if (!strcmp(label, "loha")) {
    vkp_peft_config_init(c, VKP_PEFT_LOHA);
    c->r = 4, c->alpha = 4;
    targets(c, "query", "value", NULL);
  } else if (!strcmp(label, "lokr")) {
    vkp_peft_config_init(c, VKP_PEFT_LOKR);
    c->r = 4, c->alpha = 4;
    targets(c, "query", "value", "fc2");
  } else if (!strcmp(label, "ia3")) {
    vkp_peft_config_init(c, VKP_PEFT_IA3);
    targets(c, "key", "value", "fc2");
    c->feedforward_modules[c->n_feedforward_modules++] = strdup("fc2");
  } else if (!strcmp(label, "vera")) {
    vkp_peft_config_init(c, VKP_PEFT_VERA);
    c->r = 16;
    targets(c, "query", "value", "fc1");
  } else if (!strcmp(label, "houlsby") || !strcmp(label, "pfeiffer")) {
    vkp_peft_config_init(c, VKP_PEFT_BOTTLENECK);
    c->bottleneck = 8;
    c->pfeiffer = !strcmp(label, "pfeiffer");
  } else if (!strcmp(label, "adaptformer")) {
    vkp_peft_config_init(c, VKP_PEFT_ADAPTFORMER);
    c->bottleneck = 8;
  } else if (!strcmp(label, "vpt_shallow") || !strcmp(label, "vpt_deep")) {
    vkp_peft_config_init(c, VKP_PEFT_VPT);
    c->n_tokens = 4;
    c->deep = !strcmp(label, "vpt_deep");
  } else if (!strcmp(label, "prefix")) {
    vkp_peft_config_init(c, VKP_PEFT_PREFIX);
    c->n_tokens = 4;
  } else if (!strcmp(label, "bitfit")) {
    vkp_peft_config_init(c, VKP_PEFT_BITFIT);
  } else if (!strcmp(label, "ln_tuning")) {
    vkp_peft_config_init(c, VKP_PEFT_LN_TUNING);
  } else if (!strcmp(label, "masked_random") || !strcmp(label, "masked_magnitude")) {
    vkp_peft_config_init(c, VKP_PEFT_MASKED);
    c->density = 0.05f;
    c->mask = !strcmp(label, "masked_random") ? VKP_MASK_RANDOM : VKP_MASK_MAGNITUDE;
    targets(c, "query", "value", "fc1");
  } else if (!strcmp(label, "oft")) {
    vkp_peft_config_init(c, VKP_PEFT_OFT);
    c->oft_block_size = 8;
    targets(c, "query", "value", "fc1");
  } else if (!strcmp(label, "full")) {
    vkp_peft_config_init(c, VKP_PEFT_FULL);
  } else if (!strcmp(label, "linear_probe")) {
    vkp_peft_config_init(c, VKP_PEFT_LINEAR_PROBE);
    c->modules_to_save[c->n_modules_to_save++] = strdup("classifier");
  } else {
    fail_msg("unknown method %s", label);
  }
}

typedef struct train_case {
  const char *labels[3];   // adapters on the model (a hybrid has several)
  float lr;
  int steps;
  double max_ratio;        // final loss must be below max_ratio x initial loss
} train_case;

static void train(const train_case *tc) {
  vkp_ctx *ctx = vkp_test_ctx();
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  vkp_vit *v = make_base();
  vkp_model *m = v->model;
  char name[64] = "";
  for (int i = 0; i < 3 && tc->labels[i]; i++) {
    vkp_peft_config c;
    make_config(tc->labels[i], &c);
    snprintf(c.name, sizeof c.name, "a%d", i);
    vkp_adapter *a;
    VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 31 + (uint64_t)i, &a));
    vkp_peft_config_clear(&c);
    if (i) strcat(name, "+");
    strncat(name, tc->labels[i], sizeof name - strlen(name) - 1);
  }
  // Host copies of everything, to check what training touched.
  int np = m->nparams;
  float **before = calloc((size_t)np, sizeof *before);
  for (int i = 0; i < np; i++) {
    before[i] = malloc((size_t)vkp_param_numel(m->params[i]) * 4);
    VKP_ASSERT_OK(ctx, vkp_buffer_read(m->params[i]->buf, 0, before[i], (uint64_t)vkp_param_numel(m->params[i]) * 4));
  }
  vkp_param **tp;
  int nt = vkp_model_trainable(m, &tp);
  if (nt == 0) fail_msg("%s: nothing trainable", name);
  int64_t ntrain = vkp_model_count_params(m, true);
  // One recorded graph: forward, cross-entropy, backward, AdamW over the trainable parameters.
  vkp_param_set *ps;
  VKP_ASSERT_OK(ctx, vkp_param_set_new(ctx, &ps));
  for (int i = 0; i < nt; i++)
    VKP_ASSERT_OK(ctx, vkp_param_set_add(ps, tp[i]->name, tp[i]->buf, 0, tp[i]->dtype, tp[i]->ndim, tp[i]->shape, true, NULL));
  vkp_optim_config oc = vkp_adamw_config(0.0);
  vkp_optimizer *opt;
  VKP_ASSERT_OK(ctx, vkp_optimizer_new(ps, &oc, &opt));
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){NS, 3, IMG, IMG});
  vkp_tensor *lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){NS});
  vkp_vit_outputs out;
  if (vkp_vit_forward(v, g, px, &out)) fail_msg("%s: forward: %s", name, vkp_graph_error(g));
  vkp_tensor *loss = vkp_cross_entropy(g, out.logits, lab);
  vkp_graph_output(g, loss);
  vkp_tensor **pt = calloc((size_t)nt, sizeof *pt), **grads = calloc((size_t)nt, sizeof *grads);
  for (int i = 0; i < nt; i++) pt[i] = vkp_param_tensor(m, tp[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, pt, nt, grads));
  for (int i = 0; i < nt; i++)
    if (!grads[i]) fail_msg("%s: no gradient reaches %s", name, tp[i]->name);
  if (!vkp_optimizer_append(opt, g, grads)) fail_msg("%s: optimizer: %s", name, vkp_graph_error(g));
  if (vkp_graph_compile(g)) fail_msg("%s: compile: %s / %s", name, vkp_graph_error(g), vkp_ctx_error(ctx));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, px, g_pixels, sizeof g_pixels));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, lab, g_labels, sizeof g_labels));
  float first = 0, last = 0;
  for (int step = 0; step < tc->steps; step++) {
    vkp_step_scalars s = {.loss_scale = 1};
    vkp_optimizer_prepare_step(opt, tc->lr, true, &s);
    VKP_ASSERT_OK(ctx, vkp_graph_set_scalars(g, &s));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, loss, &last, 4));   // loss before this step's update
    if (!isfinite(last)) fail_msg("%s: loss %g at step %d", name, (double)last, step);
    if (step == 0) first = last;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  printf("  %-22s trainable %6lld  loss %.3f -> %.3f (x%.2f, limit x%.2f)  %3d steps lr %.0e  %.2f s\n", name,
         (long long)ntrain, (double)first, (double)last, (double)(last / first), tc->max_ratio, tc->steps,
         (double)tc->lr, secs);
  if (!(last < tc->max_ratio * first))
    fail_msg("%s: loss %.4f -> %.4f does not fall below %.2f x the initial loss", name, (double)first, (double)last,
             tc->max_ratio);
  // Frozen parameters are bit-identical; every trainable one moved.
  for (int i = 0; i < np; i++) {
    vkp_param *p = m->params[i];
    int64_t n = vkp_param_numel(p);
    float *now = malloc((size_t)n * 4);
    VKP_ASSERT_OK(ctx, vkp_buffer_read(p->buf, 0, now, (uint64_t)n * 4));
    bool same = !memcmp(now, before[i], (size_t)n * 4);
    if (!p->trainable && !same) fail_msg("%s: frozen parameter %s changed", name, p->name);
    if (p->trainable && same) fail_msg("%s: trainable parameter %s did not change", name, p->name);
    free(now);
    free(before[i]);
  }
  free(before);
  vkp_graph_free(g);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  free(pt), free(grads), free(tp);
  vkp_vit_free(v);
}

#define CASE(fn, l0, l1, l2, lr_, steps_, ratio)                                   \
  static void fn(void **s) {                                                       \
    (void)s;                                                                       \
    const train_case tc = {{l0, l1, l2}, lr_, steps_, ratio};                      \
    train(&tc);                                                                    \
  }

// Learning rates are AdamW's, tuned per method family; 60 full-batch steps. The limits hold with
// a wide margin (the measured ratios are 0.01-0.1 for most methods, ~0.4-0.5 for the prompt methods).
CASE(test_lora, "lora", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_rslora, "rslora", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_dora, "dora", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_loha, "loha", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_lokr, "lokr", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_ia3, "ia3", NULL, NULL, 1e-1f, 60, 0.25)
CASE(test_vera, "vera", NULL, NULL, 1e-1f, 60, 0.25)
CASE(test_houlsby, "houlsby", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_pfeiffer, "pfeiffer", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_adaptformer, "adaptformer", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_vpt_shallow, "vpt_shallow", NULL, NULL, 1e-1f, 60, 0.7)
CASE(test_vpt_deep, "vpt_deep", NULL, NULL, 1e-1f, 60, 0.7)
CASE(test_prefix, "prefix", NULL, NULL, 1e-1f, 60, 0.5)
CASE(test_bitfit, "bitfit", NULL, NULL, 3e-2f, 60, 0.5)
CASE(test_ln_tuning, "ln_tuning", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_masked_random, "masked_random", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_masked_magnitude, "masked_magnitude", NULL, NULL, 3e-2f, 60, 0.25)
CASE(test_hybrid, "lora", "bitfit", "vpt_deep", 3e-2f, 60, 0.25)
CASE(test_full, "full", NULL, NULL, 1e-2f, 60, 0.25)
CASE(test_linear_probe, "linear_probe", NULL, NULL, 1e-1f, 60, 0.25)
CASE(test_oft, "oft", NULL, NULL, 3e-2f, 60, 0.25)

// ---- gradients vs finite differences on the ViT ---------------------------------------------------
// For each trainable tensor: the entry with the largest gradient and a random one, each checked
// against central differences of the device loss (a forward-only graph replayed with the
// parameter buffer moved by ±h). Adapters start non-zero so every gradient is informative.

static double graph_loss(vkp_graph *g, vkp_tensor *loss) {
  float l;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_run(g));
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_read(g, loss, &l, 4));
  return l;
}

#define NG 8   // images in the gradient check (two of each class)

static vkp_graph *loss_graph(vkp_vit *v, vkp_tensor **loss_out, vkp_tensor **px, vkp_tensor **lab) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  *px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){NG, 3, IMG, IMG});
  *lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){NG});
  vkp_vit_outputs out;
  if (vkp_vit_forward(v, g, *px, &out)) fail_msg("forward: %s", vkp_graph_error(g));
  *loss_out = vkp_cross_entropy(g, out.logits, *lab);
  vkp_graph_output(g, *loss_out);
  return g;
}

static void compile_with_data(vkp_graph *g, vkp_tensor *px, vkp_tensor *lab) {
  vkp_ctx *ctx = vkp_test_ctx();
  if (vkp_graph_compile(g)) fail_msg("compile: %s / %s", vkp_graph_error(g), vkp_ctx_error(ctx));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, px, g_pixels, sizeof g_pixels / NS * NG));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, lab, g_labels, sizeof g_labels / NS * NG));
  vkp_step_scalars sc = {.loss_scale = 1};
  VKP_ASSERT_OK(ctx, vkp_graph_set_scalars(g, &sc));
}

static void grad_check(const char *const *labels, int n) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *v = make_base();
  vkp_model *m = v->model;
  char name[64] = "";
  for (int i = 0; i < n; i++) {
    vkp_peft_config c;
    make_config(labels[i], &c);
    c.init_weights = false;
    snprintf(c.name, sizeof c.name, "a%d", i);
    vkp_adapter *a;
    VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 41 + (uint64_t)i, &a));
    vkp_peft_config_clear(&c);
    if (i) strcat(name, "+");
    strncat(name, labels[i], sizeof name - strlen(name) - 1);
  }
  vkp_param **tp;
  int nt = vkp_model_trainable(m, &tp);
  if (nt < 1 || nt > 64) fail_msg("%s: %d trainable tensors", name, nt);
  size_t ntz = (size_t)nt;
  vkp_rng r = vkp_rng_new(5);
  for (int i = 0; i < nt; i++) {   // move everything off its initial value (VeRA's d = 0.1, ...)
    int64_t k = vkp_param_numel(tp[i]);
    float *x = malloc((size_t)k * 4);
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, tp[i], x));
    for (int64_t j = 0; j < k; j++) x[j] += (float)(0.05 * (2 * vkp_rng_uniform(&r) - 1));
    VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, tp[i], x));
    free(x);
  }
  // Device gradients.
  vkp_tensor *loss, *px, *lab, **pt = calloc(ntz, sizeof *pt), **grads = calloc(ntz, sizeof *grads);
  vkp_graph *gb = loss_graph(v, &loss, &px, &lab);
  for (int i = 0; i < nt; i++) pt[i] = vkp_param_tensor(m, tp[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_backward(gb, loss, pt, nt, grads));
  for (int i = 0; i < nt; i++) {
    if (!grads[i]) fail_msg("%s: no gradient for %s", name, tp[i]->name);
    vkp_graph_output(gb, grads[i]);
  }
  compile_with_data(gb, px, lab);
  VKP_ASSERT_OK(ctx, vkp_graph_run(gb));
  float **gv = calloc(ntz, sizeof *gv);
  for (int i = 0; i < nt; i++) {
    gv[i] = malloc((size_t)vkp_param_numel(tp[i]) * 4);
    VKP_ASSERT_OK(ctx, vkp_graph_read(gb, grads[i], gv[i], (uint64_t)vkp_param_numel(tp[i]) * 4));
  }
  vkp_graph_free(gb);
  // Finite differences of the device loss.
  vkp_tensor *loss_f;
  vkp_graph *gf = loss_graph(v, &loss_f, &px, &lab);
  compile_with_data(gf, px, lab);
  const double h = 2e-3;
  double worst = 0;
  const char *worst_name = "";
  int checked = 0;
  int every = (nt + 11) / 12;   // at most 12 tensors per case, spread over the model
  for (int i = 0; i < nt; i++) {
    if (i % every) {
      free(gv[i]);
      continue;
    }
    int64_t k = vkp_param_numel(tp[i]);
    float *x = malloc((size_t)k * 4);
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, tp[i], x));
    int64_t pick[2] = {0, (int64_t)(vkp_rng_uniform(&r) * (double)k)};
    for (int64_t j = 0; j < k; j++)   // the largest |gradient| entry, and a random one
      if (fabsf(gv[i][j]) > fabsf(gv[i][pick[0]])) pick[0] = j;
    for (int q = 0; q < 2; q++) {
      int64_t j = pick[q];
      float keep = x[j];
      x[j] = (float)(keep + h);
      VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, tp[i], x));
      double lp = graph_loss(gf, loss_f);
      x[j] = (float)(keep - h);
      VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, tp[i], x));
      double lm = graph_loss(gf, loss_f);
      x[j] = keep;
      VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, tp[i], x));
      // Tolerance: f32 loss differences over 2h carry ~1e-5 of noise, hence the absolute part.
      double fd = (lp - lm) / (2 * h), got = gv[i][j], used = fabs(got - fd) / (3e-4 + 1e-2 * fabs(fd));
      if (!(used <= 1))
        fail_msg("%s: d loss / d %s[%lld] = %.6g, finite differences %.6g", name, tp[i]->name, (long long)j, got, fd);
      if (used > worst) worst = used, worst_name = tp[i]->name;
      checked++;
    }
    free(x);
    free(gv[i]);
  }
  printf("  %-22s %2d tensors, %2d entries vs finite differences: %3.0f%% of tolerance at worst (%s)\n", name, nt,
         checked, 100 * worst, worst_name);
  vkp_graph_free(gf);
  free(gv), free(pt), free(grads), free(tp);
  vkp_vit_free(v);
}

static void test_gradients(void **s) {
  (void)s;
  // DoRA is left out: peft (and vkpeft) detach ||W + ΔW||, so its gradients are deliberately not
  // the derivative of the loss (test_vit_parity checks them against peft instead).
  const char *one[] = {"lora", "loha", "lokr", "ia3", "vera", "houlsby", "pfeiffer", "adaptformer",
                       "vpt_shallow", "vpt_deep", "prefix", "bitfit", "ln_tuning", "masked_random", "linear_probe"};
  for (size_t i = 0; i < sizeof one / sizeof *one; i++) grad_check(&one[i], 1);
  const char *hybrid[] = {"lora", "bitfit", "vpt_deep"};
  grad_check(hybrid, 3);
}

static int setup(void **s) {
  (void)s;
  make_data();
  return 0;
}

// ---- frozen base in f16 / bf16 (vkp_model_set_base_dtype) --------------------------------------
// Every method with non-zero adapters: logits and adapter gradients with the base weights stored
// as f16 and bf16 against the same model in f32. Stated tolerances (measured worst 7.4e-4 / 1.6e-3
// with f16, 6.3e-3 / 1.5e-2 with bf16): f16 logits 3e-3, gradients 1e-2; bf16 logits 2e-2,
// gradients 5e-2 (relative, max-norm for
// logits, L2 per gradient tensor, floored at 1% of the largest tensor's norm). The methods that modify the weight itself (DoRA, OFT, LoHa,
// LoKr) read the half weight as f32 and are held to the same bounds.

typedef struct run_out {
  float logits[NG * NCLS];
  float **grads;
  int nt;
} run_out;

static void run_forward_backward(vkp_vit *v, run_out *o) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m = v->model;
  vkp_param **tp;
  o->nt = vkp_model_trainable(m, &tp);
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *px = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){NG, 3, IMG, IMG});
  vkp_tensor *lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){NG});
  vkp_vit_outputs out;
  if (vkp_vit_forward(v, g, px, &out)) fail_msg("forward: %s", vkp_graph_error(g));
  vkp_tensor *loss = vkp_cross_entropy(g, out.logits, lab);
  vkp_graph_output(g, loss);
  vkp_graph_output(g, out.logits);
  vkp_tensor **pt = calloc((size_t)o->nt, sizeof *pt), **gr = calloc((size_t)o->nt, sizeof *gr);
  for (int i = 0; i < o->nt; i++) pt[i] = vkp_param_tensor(m, tp[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, pt, o->nt, gr));
  for (int i = 0; i < o->nt; i++) vkp_graph_output(g, gr[i]);
  compile_with_data(g, px, lab);
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.logits, o->logits, sizeof o->logits));
  o->grads = calloc((size_t)o->nt, sizeof *o->grads);
  for (int i = 0; i < o->nt; i++) {
    size_t n = (size_t)vkp_param_numel(tp[i]);
    o->grads[i] = malloc(n * 4);
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, gr[i], o->grads[i], n * 4));
  }
  vkp_graph_free(g);
  free(pt), free(gr), free(tp);
}

static void run_out_free(run_out *o) {
  for (int i = 0; i < o->nt; i++) free(o->grads[i]);
  free(o->grads);
}

static void base_dtype_case(const char *label, double *worst_logits, double *worst_grad) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_vit *v = make_base();
  vkp_model *m = v->model;
  vkp_peft_config c;
  make_config(label, &c);
  c.init_weights = false;
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 77, &a));
  vkp_peft_config_clear(&c);
  run_out ref;
  run_forward_backward(v, &ref);
  const vkp_dtype dts[2] = {VKP_DTYPE_F16, VKP_DTYPE_BF16};
  for (int d = 0; d < 2; d++) {
    int64_t saved;
    VKP_ASSERT_OK(ctx, vkp_model_set_base_dtype(m, dts[d], &saved));
    if (d == 0 && saved <= 0) fail_msg("%s: nothing converted", label);
    run_out got;
    run_forward_backward(v, &got);
    double lmax = 0, ldiff = 0;
    for (int k = 0; k < NG * NCLS; k++) {
      lmax = fmax(lmax, fabs(ref.logits[k]));
      ldiff = fmax(ldiff, fabs((double)got.logits[k] - ref.logits[k]));
    }
    double el = ldiff / lmax, eg = 0, gmax = 0;
    vkp_param **tp;
    vkp_model_trainable(m, &tp);
    double *num = calloc((size_t)ref.nt, sizeof *num), *den = calloc((size_t)ref.nt, sizeof *den);
    for (int i = 0; i < ref.nt; i++) {
      for (int64_t k = 0; k < vkp_param_numel(tp[i]); k++) {
        double x = ref.grads[i][k], y = got.grads[i][k];
        num[i] += (x - y) * (x - y), den[i] += x * x;
      }
      gmax = fmax(gmax, sqrt(den[i]));
    }
    // Per tensor, relative to its norm floored at 1% of the largest: a gradient that is zero in
    // exact arithmetic (the key bias: softmax ignores a constant per query) has no relative error.
    for (int i = 0; i < ref.nt; i++) eg = fmax(eg, sqrt(num[i]) / fmax(sqrt(den[i]), 1e-2 * gmax));
    free(num), free(den);
    free(tp);
    worst_logits[d] = fmax(worst_logits[d], el);
    worst_grad[d] = fmax(worst_grad[d], eg);
    printf("  %-14s base %-4s logits %.1e  grads %.1e\n", label, vkp_dtype_name(dts[d]), el, eg);
    const double tol_l = d ? 2e-2 : 3e-3, tol_g = d ? 5e-2 : 1e-2;
    if (el > tol_l || eg > tol_g) fail_msg("%s with a %s base: logits %.2e (limit %.0e), gradients %.2e (limit %.0e)", label,
                                           vkp_dtype_name(dts[d]), el, tol_l, eg, tol_g);
    run_out_free(&got);
  }
  run_out_free(&ref);
  vkp_vit_free(v);
}

// Activation checkpointing on the ViT (every layer a segment) with each kind of method inside the
// layers: logits and every adapter gradient bit-identical to the run that keeps activations.
static void test_checkpointing(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  const char *labels[] = {"lora", "dora", "loha", "ia3", "vera", "houlsby", "vpt_deep", "prefix", "masked_random", "oft"};
  for (size_t i = 0; i < sizeof labels / sizeof *labels; i++) {
    vkp_vit *v = make_base();
    vkp_peft_config c;
    make_config(labels[i], &c);
    c.init_weights = false;
    vkp_adapter *a;
    VKP_ASSERT_OK(ctx, vkp_peft_attach(v->model, &c, 78, &a));
    vkp_peft_config_clear(&c);
    run_out plain, ck;
    run_forward_backward(v, &plain);
    v->model->gradient_checkpointing = true;
    run_forward_backward(v, &ck);
    assert_memory_equal(plain.logits, ck.logits, sizeof plain.logits);
    vkp_param **tp;
    vkp_model_trainable(v->model, &tp);
    for (int k = 0; k < plain.nt; k++)
      if (memcmp(plain.grads[k], ck.grads[k], (size_t)vkp_param_numel(tp[k]) * 4))
        fail_msg("%s: gradient of %s differs with activation checkpointing", labels[i], tp[k]->name);
    printf("  %-14s checkpointed: logits and %d gradients bit-identical\n", labels[i], plain.nt);
    free(tp);
    run_out_free(&plain);
    run_out_free(&ck);
    vkp_vit_free(v);
  }
}

static void test_base_half(void **state) {
  (void)state;
  const char *labels[] = {"lora", "rslora", "dora", "loha", "lokr", "ia3", "vera", "houlsby", "adaptformer",
                          "vpt_deep", "prefix", "bitfit", "ln_tuning", "masked_random", "oft", "linear_probe"};
  double wl[2] = {0, 0}, wg[2] = {0, 0};
  for (size_t i = 0; i < sizeof labels / sizeof *labels; i++) base_dtype_case(labels[i], wl, wg);
  printf("  worst: f16 logits %.1e grads %.1e; bf16 logits %.1e grads %.1e\n", wl[0], wg[0], wl[1], wg[1]);
  // The switch itself: unknown names and dtypes are refused.
  vkp_dtype dt;
  assert_int_equal(vkp_base_dtype_parse("bf16", &dt), VKP_OK);
  assert_int_equal(dt, VKP_DTYPE_BF16);
  assert_int_not_equal(vkp_base_dtype_parse("int8", &dt), VKP_OK);
  vkp_vit *v = make_base();
  assert_int_not_equal(vkp_model_set_base_dtype(v->model, VKP_DTYPE_I32, NULL), VKP_OK);
  vkp_vit_free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lora),          cmocka_unit_test(test_rslora),      cmocka_unit_test(test_dora),
      cmocka_unit_test(test_loha),          cmocka_unit_test(test_lokr),        cmocka_unit_test(test_ia3),
      cmocka_unit_test(test_vera),          cmocka_unit_test(test_houlsby),     cmocka_unit_test(test_pfeiffer),
      cmocka_unit_test(test_adaptformer),   cmocka_unit_test(test_vpt_shallow), cmocka_unit_test(test_vpt_deep),
      cmocka_unit_test(test_prefix),        cmocka_unit_test(test_bitfit),      cmocka_unit_test(test_ln_tuning),
      cmocka_unit_test(test_masked_random), cmocka_unit_test(test_masked_magnitude), cmocka_unit_test(test_hybrid),
      cmocka_unit_test(test_full),          cmocka_unit_test(test_linear_probe),  cmocka_unit_test(test_oft),
      cmocka_unit_test(test_gradients),     cmocka_unit_test(test_base_half),
      cmocka_unit_test(test_checkpointing),
  };
  return cmocka_run_group_tests(tests, setup, vkp_test_teardown);
}
