// test_clip_eval.c — CLIP evaluation and embeddings (vlm/vkp_clip_eval.h): retrieval metrics on a
// hand-computed case, zero-shot against an independent computation, batched embeddings against
// one single-graph forward of the fixture model (padded last batch included), the linear probe,
// WiSE-FT end points, the gallery PNG and `vkpeft embed` / `vkpeft eval`.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "vkp_clip_eval.h"
#include "vkp_parity.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

#define T_REF 77   // sequence length of the reference forward

static vkp_clip *load_fixture(void) {
  vkp_clip *c = NULL;
  vkp_error err = {0};
  if (vkp_clip_load(vkp_test_ctx(), vkp_fixture_path("clip/model"), NULL, &c, &err)) fail_msg("load: %s", err.msg);
  return c;
}

static vkp_clip_tokenizer *fixture_tokenizer(void) {
  vkp_clip_tokenizer *tok = NULL;
  vkp_error err = {0};
  if (vkp_clip_tokenizer_for_model(vkp_fixture_path("clip/model"), &tok, &err)) fail_msg("tokenizer: %s", err.msg);
  return tok;
}

// The reference: every image and text in one graph (vkp_clip_forward), T = 77, no padding rows.
static void forward_all(vkp_clip *c, const vkp_clip_tokenizer *tok, const float *pixels, int64_t ni,
                        const char *const *texts, int64_t nt, float *img, float *txt) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_clip_inputs in;
  vkp_clip_outputs out;
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_new(c, g, ni, nt, T_REF, true, &in));
  if (vkp_clip_forward(c, g, &in, &out)) fail_msg("forward: %s", vkp_graph_error(g));
  if (ni) vkp_graph_output(g, out.image_embeds);
  if (nt) vkp_graph_output(g, out.text_embeds);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  int32_t *ids = calloc((size_t)(nt * T_REF) + 1, sizeof *ids), *mask = calloc((size_t)(nt * T_REF) + 1, sizeof *mask);
  float *fmask = calloc((size_t)(nt * T_REF) + 1, sizeof *fmask);
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  for (int64_t i = 0; i < nt; i++)
    assert_int_equal(vkp_clip_tokenize(tok, texts[i], T_REF, info.default_pad, ids + i * T_REF, mask + i * T_REF, NULL), 0);
  for (int64_t i = 0; i < nt * T_REF; i++) fmask[i] = (float)mask[i];
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_set(c, g, &in, pixels, nt ? ids : NULL, nt ? fmask : NULL));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  if (ni) VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.image_embeds, img, vkp_tensor_nbytes(out.image_embeds)));
  if (nt) VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.text_embeds, txt, vkp_tensor_nbytes(out.text_embeds)));
  free(ids), free(mask), free(fmask);
  vkp_graph_free(g);
}

static void assert_max_diff(const char *what, const float *a, const float *b, size_t n, double tol) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs((double)a[i] - b[i]) > worst) worst = fabs((double)a[i] - b[i]), at = i;
  printf("  %-40s max |diff| %.3g\n", what, worst);
  if (!(worst <= tol)) fail_msg("%s: element %zu differs by %g (> %g): %g vs %g", what, at, worst, tol, (double)a[at], (double)b[at]);
}

static const char *const TEXTS[] = {"a photo of a cat", "grinning face with big eyes", "",
                                    "a very long caption that keeps going on and on about the picture it describes in words",
                                    "dog"};
#define N_TEXTS 5

// ---- metrics ------------------------------------------------------------------------------------

// Images are one-hot, so a text's embedding is its row of scores over the images. Image 3 has no
// caption. Ties count against the right answer.
//            img0  img1  img2  img3   right image
//   T0       0.5   0.5   0.1   0      0   t2i rank 2 (tie with img1)
//   T1       0.9   0.2   0.8   0      0   1
//   T2       0.4   0.3   0.3   0      1   3 (img0 above, img2 ties)
//   T3       0.1   0.2   0.8   0      2   1
//   T4       0.7   0.6   0.6   0      2   3 (img0 above, img1 ties)
// image -> text: img0 best caption T1 (0.9): rank 1; img1 (T2, 0.3): T0 0.5 and T4 0.6 above: 3;
// img2 best T3 (0.8): T1 ties at 0.8: rank 2.
static void test_retrieval_hand_case(void **state) {
  (void)state;
  float img[4 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  float txt[5 * 4] = {0.5f, 0.5f, 0.1f, 0, 0.9f, 0.2f, 0.8f, 0, 0.4f, 0.3f, 0.3f, 0,
                      0.1f, 0.2f, 0.8f, 0, 0.7f, 0.6f, 0.6f, 0};
  int64_t text_image[5] = {0, 0, 1, 2, 2}, ri[4], rt[5];
  vkp_clip_retrieval_result r;
  vkp_error err = {0};
  if (vkp_clip_retrieval(img, 4, txt, 5, text_image, 4, &r, ri, rt, &err)) fail_msg("%s", err.msg);
  int64_t want_ri[4] = {1, 3, 2, 0}, want_rt[5] = {2, 1, 3, 1, 3};
  for (int i = 0; i < 4; i++) assert_int_equal(ri[i], want_ri[i]);
  for (int i = 0; i < 5; i++) assert_int_equal(rt[i], want_rt[i]);
  assert_int_equal(r.n_images, 3);
  assert_int_equal(r.n_texts, 5);
  assert_true(fabs(r.i2t_r1 - 1.0 / 3) < 1e-12 && r.i2t_r5 == 1 && r.i2t_r10 == 1);
  assert_true(fabs(r.i2t_mean_rank - 2.0) < 1e-12 && r.i2t_median_rank == 2.0);
  assert_true(fabs(r.t2i_r1 - 0.4) < 1e-12 && r.t2i_r5 == 1 && r.t2i_r10 == 1);
  assert_true(fabs(r.t2i_mean_rank - 2.0) < 1e-12 && r.t2i_median_rank == 2.0);
  // even count: the median averages the middle two (t2i ranks of T0..T3: 1 1 2 3 -> 1.5)
  if (vkp_clip_retrieval(img, 4, txt, 4, text_image, 4, &r, NULL, NULL, &err)) fail_msg("%s", err.msg);
  assert_true(r.t2i_median_rank == 1.5);
  // bad input
  int64_t bad[5] = {0, 0, 1, 2, 7};
  assert_int_equal(vkp_clip_retrieval(img, 4, txt, 5, bad, 4, &r, NULL, NULL, &err), VKP_ERR_INVALID);
}

typedef struct scored {
  double s;
  int c;
} scored;

static int by_score_desc(const void *a, const void *b) {
  const scored *x = a, *y = b;
  return x->s < y->s ? 1 : x->s > y->s ? -1 : x->c - y->c;
}

// Zero-shot metrics against a sort-based computation on random embeddings.
static void test_zero_shot_metrics(void **state) {
  (void)state;
  enum { N = 200, K = 12, D = 8 };
  static float img[N * D], cls[K * D];
  int32_t labels[N], pred[N];
  vkp_rng rng_ = vkp_rng_new(7), *rng = &rng_;
  vkp_rng_normal_fill(rng, img, N * D, 0, 1);
  vkp_rng_normal_fill(rng, cls, K * D, 0, 1);
  for (int i = 0; i < N; i++) labels[i] = i % 17 == 0 ? -1 : (int32_t)(vkp_rng_u32(rng) % (K - 1));   // class K-1 empty
  double per_class[K];
  vkp_clip_zero_shot_result r;
  vkp_error err = {0};
  if (vkp_clip_zero_shot(img, N, labels, cls, K, D, &r, per_class, pred, &err)) fail_msg("%s", err.msg);
  int n = 0, top1 = 0, top5 = 0, hits[K] = {0}, count[K] = {0};
  for (int i = 0; i < N; i++) {
    scored s[K];
    for (int c = 0; c < K; c++) {
      s[c].c = c, s[c].s = 0;
      for (int j = 0; j < D; j++) s[c].s += (double)img[i * D + j] * cls[c * D + j];
    }
    qsort(s, K, sizeof *s, by_score_desc);
    assert_int_equal(pred[i], s[0].c);
    if (labels[i] < 0) continue;
    int pos = 0;
    while (s[pos].c != labels[i]) pos++;
    n++, top1 += pos == 0, top5 += pos < 5, count[labels[i]]++, hits[labels[i]] += pos == 0;
  }
  assert_int_equal(r.n, n);
  assert_true(fabs(r.top1 - (double)top1 / n) < 1e-12);
  assert_true(fabs(r.top5 - (double)top5 / n) < 1e-12);
  double mean = 0;
  for (int c = 0; c < K - 1; c++) {
    assert_true(fabs(per_class[c] - (double)hits[c] / count[c]) < 1e-12);
    mean += (double)hits[c] / count[c];
  }
  assert_true(isnan(per_class[K - 1]));
  assert_true(fabs(r.mean_per_class - mean / (K - 1)) < 1e-12);
  printf("  zero-shot on random embeddings: top-1 %.3f top-5 %.3f (sort-based reference agrees)\n", r.top1, r.top5);
}

static void test_templates(void **state) {
  char path[300];
  vkp_test_dir_path(state, "t.txt", path, sizeof path);
  FILE *f = fopen(path, "w");
  fputs("# prompts\n  a photo of a {}.  \n\n{}\r\nan emoji of {}\n", f);
  fclose(f);
  char **t;
  int n;
  vkp_error err = {0};
  if (vkp_clip_templates_load(path, &t, &n, &err)) fail_msg("%s", err.msg);
  assert_int_equal(n, 3);
  assert_string_equal(t[0], "a photo of a {}.");
  assert_string_equal(t[1], "{}");
  assert_string_equal(t[2], "an emoji of {}");
  free(t);
  f = fopen(path, "w");
  fputs("a photo of a {}\nno placeholder here\n", f);
  fclose(f);
  assert_int_equal(vkp_clip_templates_load(path, &t, &n, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "t.txt:2"));
  assert_int_equal(vkp_clip_templates_load("/nonexistent/t.txt", &t, &n, &err), VKP_ERR_IO);
  assert_int_equal(vkp_clip_default_template_count(), 5);
}

// preprocessor_config.json (as the CLIP trainer writes it) sets the transform; an adapter's
// folder wins over the model's.
static void test_transform_load(void **state) {
  char dir[300], sub[400], path[500];
  vkp_test_dir_path(state, "", dir, sizeof dir);
  snprintf(sub, sizeof sub, "%s/adapter", dir);
  mkdir(sub, 0755);
  vkp_data_transform t;
  vkp_error err = {0};
  if (vkp_clip_transform_load(dir, NULL, 32, &t, &err)) fail_msg("%s", err.msg);   // no file: CLIP's
  assert_int_equal(t.crop, VKP_CROP_CENTER);
  assert_int_equal(t.resize_short, 32);
  assert_true(t.mean[0] == vkp_clip_mean[0] && t.std[2] == vkp_clip_std[2] && t.out_channels == 3);
  snprintf(path, sizeof path, "%s/preprocessor_config.json", sub);
  FILE *f = fopen(path, "w");
  fputs("{\"do_center_crop\": false, \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.25, 0.25, 0.25],"
        " \"size\": {\"shortest_edge\": 32}, \"crop_size\": {\"height\": 32, \"width\": 32}}", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
  f = fopen(path, "w");
  fputs("{\"do_center_crop\": true, \"crop_size\": 224}", f);
  fclose(f);
  if (vkp_clip_transform_load(dir, sub, 32, &t, &err)) fail_msg("%s", err.msg);
  assert_int_equal(t.crop, VKP_CROP_NONE);
  assert_true(t.mean[1] == 0.5f && t.std[1] == 0.25f && t.out_w == 32 && t.out_h == 32);
  assert_int_equal(vkp_clip_transform_load(dir, NULL, 32, &t, &err), VKP_ERR_INVALID);
  assert_non_null(strstr(err.msg, "crop_size"));
}

// Two Gaussian blobs per class in 6-D, linearly separable: the probe fits them; refitting gives the
// same weights (deterministic).
static void test_linear_probe(void **state) {
  (void)state;
  enum { N = 120, D = 6, K = 3 };
  static float x[N * D];
  int32_t y[N];
  vkp_rng rng_ = vkp_rng_new(3), *rng = &rng_;
  vkp_rng_normal_fill(rng, x, N * D, 0, 0.1f);
  for (int i = 0; i < N; i++) {
    y[i] = i % K;
    x[i * D + y[i]] += 1.0f;
  }
  static double w1[K * (D + 1)], w2[K * (D + 1)];
  vkp_clip_probe_result r, r2;
  vkp_error err = {0};
  // train on the first 90, test on the last 30
  if (vkp_clip_linear_probe(x, y, 90, x + 90 * D, y + 90, 30, D, K, NULL, &r, w1, &err)) fail_msg("%s", err.msg);
  if (vkp_clip_linear_probe(x, y, 90, x + 90 * D, y + 90, 30, D, K, NULL, &r2, w2, &err)) fail_msg("%s", err.msg);
  printf("  probe: train %.3f test %.3f top-5 %.3f loss %.4f after %d iterations\n", r.train_acc, r.test_acc, r.test_top5,
         r.train_loss, r.iterations);
  assert_true(r.train_acc == 1.0 && r.test_acc == 1.0 && r.test_top5 == 1.0);
  assert_memory_equal(w1, w2, sizeof w1);
  // At the optimum the gradient of mean CE + l2/2 |W|^2 (l2 = 1e-3, bias free) vanishes.
  assert_true(r.iterations > 0 && r.train_loss < 0.5);
  double g[K * (D + 1)] = {0}, gmax = 0;
  for (int i = 0; i < 90; i++) {
    double z[K], mx = -INFINITY, sum = 0;
    for (int c = 0; c < K; c++) {
      z[c] = w1[c * (D + 1) + D];
      for (int j = 0; j < D; j++) z[c] += w1[c * (D + 1) + j] * x[i * D + j];
      mx = fmax(mx, z[c]);
    }
    for (int c = 0; c < K; c++) sum += exp(z[c] - mx);
    for (int c = 0; c < K; c++) {
      double d = exp(z[c] - mx) / sum - (c == y[i]);
      for (int j = 0; j < D; j++) g[c * (D + 1) + j] += d * x[i * D + j] / 90;
      g[c * (D + 1) + D] += d / 90;
    }
  }
  for (int c = 0; c < K; c++)
    for (int j = 0; j <= D; j++) gmax = fmax(gmax, fabs(g[c * (D + 1) + j] + (j < D ? 1e-3 * w1[c * (D + 1) + j] : 0)));
  printf("  probe: largest gradient entry at the fit %.2g\n", gmax);
  assert_true(gmax < 1e-6);
  int32_t bad[90];
  memcpy(bad, y, sizeof bad);
  bad[5] = K;
  assert_int_equal(vkp_clip_linear_probe(x, bad, 90, NULL, NULL, 0, D, K, NULL, &r, NULL, &err), VKP_ERR_INVALID);
}

// ---- embeddings ---------------------------------------------------------------------------------

// Batched embeddings (batch 2: the fifth image / text is a padded last batch) equal one forward of
// all five; the embedder's second call reuses its graphs and gives the same values.
static void test_embed_matches_forward(void **state) {
  (void)state;
  vkp_clip *c = load_fixture();
  vkp_clip_tokenizer *tok = fixture_tokenizer();
  enum { N = 5 };
  int64_t P = vkp_clip_embed_dim(c), per = 3 * 32 * 32;
  assert_int_equal(P, 16);
  float *px = malloc(N * per * sizeof *px), *ref_i = malloc(N * P * 4), *ref_t = malloc(N * P * 4), *got = malloc(N * P * 4),
        *again = malloc(N * P * 4);
  vkp_rng rng_ = vkp_rng_new(11), *rng = &rng_;
  vkp_rng_normal_fill(rng, px, (size_t)(N * per), 0, 1);
  forward_all(c, tok, px, N, TEXTS, N_TEXTS, ref_i, ref_t);
  vkp_error err = {0};
  vkp_clip_embedder *e;
  if (vkp_clip_embedder_new(c, 2, &e, &err)) fail_msg("%s", err.msg);
  if (vkp_clip_embedder_images(e, px, N, got, &err)) fail_msg("%s", err.msg);
  assert_max_diff("image_embeds, batch 2 (last padded)", got, ref_i, N * P, 1e-5);
  if (vkp_clip_embedder_images(e, px, N, again, &err)) fail_msg("%s", err.msg);
  assert_memory_equal(got, again, N * P * 4);
  if (vkp_clip_embedder_texts(e, tok, TEXTS, N_TEXTS, got, &err)) fail_msg("%s", err.msg);
  assert_max_diff("text_embeds, batch 2 (T 32, last padded)", got, ref_t, N * P, 1e-5);
  if (vkp_clip_embedder_texts(e, tok, TEXTS, N_TEXTS, again, &err)) fail_msg("%s", err.msg);
  assert_memory_equal(got, again, N * P * 4);
  // one-shot forms, one batch of 8 holding all five (three padding rows)
  if (vkp_clip_embed_images(c, px, N, 8, got, &err)) fail_msg("%s", err.msg);
  assert_max_diff("image_embeds, one padded batch", got, ref_i, N * P, 1e-5);
  if (vkp_clip_embed_texts(c, tok, TEXTS, N_TEXTS, 3, got, &err)) fail_msg("%s", err.msg);
  assert_max_diff("text_embeds, batch 3", got, ref_t, N * P, 1e-5);
  for (int i = 0; i < N; i++) {   // normalised
    double s = 0;
    for (int j = 0; j < P; j++) s += (double)got[i * P + j] * got[i * P + j];
    assert_true(fabs(s - 1) < 1e-5);
  }
  // the zero-shot classifier is the normalised mean of the templates' embeddings
  const char *names[2] = {"cat", "dog"}, *tmpl[2] = {"a photo of a {}.", "{}"};
  const char *filled[4] = {"a photo of a cat.", "cat", "a photo of a dog.", "dog"};
  float cls[2 * 16], ref4[4 * 16];
  if (vkp_clip_zero_shot_classifier(c, e, tok, names, 2, tmpl, 2, cls, &err)) fail_msg("%s", err.msg);
  forward_all(c, tok, NULL, 0, filled, 4, NULL, ref4);
  float want[2 * 16];
  for (int k = 0; k < 2; k++) {
    double nn = 0;
    for (int j = 0; j < P; j++) nn += pow(((double)ref4[(2 * k) * P + j] + ref4[(2 * k + 1) * P + j]) / 2, 2);
    for (int j = 0; j < P; j++) want[k * P + j] = (float)(((double)ref4[(2 * k) * P + j] + ref4[(2 * k + 1) * P + j]) / 2 / sqrt(nn));
  }
  assert_max_diff("zero-shot class embeddings", cls, want, 2 * P, 1e-5);
  vkp_clip_embedder_free(e);
  free(px), free(ref_i), free(ref_t), free(got), free(again);
  vkp_clip_tokenizer_free(tok);
  vkp_clip_free(c);
}

// ---- WiSE-FT -------------------------------------------------------------------------------------

static void embed_both(vkp_clip *c, const vkp_clip_tokenizer *tok, const float *px, float *img, float *txt) {
  vkp_error err = {0};
  if (vkp_clip_embed_images(c, px, 4, 4, img, &err)) fail_msg("%s", err.msg);
  if (vkp_clip_embed_texts(c, tok, TEXTS, N_TEXTS, 8, txt, &err)) fail_msg("%s", err.msg);
}

// The fixture's LoRA merged at scale a: a = 0 is the base model, a = 1 the tuned (unmerged)
// one; a full checkpoint of the tuned model interpolated at 0.5 equals the adapter merged at 0.5.
static void test_wise_ft(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_clip_tokenizer *tok = fixture_tokenizer();
  enum { NI = 4, P = 16 };
  float px[NI * 3 * 32 * 32];
  vkp_rng rng_ = vkp_rng_new(5), *rng = &rng_;
  vkp_rng_normal_fill(rng, px, sizeof px / sizeof *px, 0, 1);
  float base_i[NI * P], base_t[N_TEXTS * P], tuned_i[NI * P], tuned_t[N_TEXTS * P], gi[NI * P], gt[N_TEXTS * P],
      half_i[NI * P], half_t[N_TEXTS * P];
  vkp_clip *c = load_fixture();
  embed_both(c, tok, px, base_i, base_t);
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_load(c->model, vkp_fixture_path("clip/adapters/lora"), &a));
  embed_both(c, tok, px, tuned_i, tuned_t);
  double moved = 0;
  for (int i = 0; i < NI * P; i++) moved = fmax(moved, fabs((double)tuned_i[i] - base_i[i]));
  printf("  the adapter moves image embeddings by up to %.3g\n", moved);
  assert_true(moved > 1e-4);
  vkp_clip_free(c);
  float alphas[3] = {0, 1, 0.5f};
  for (int k = 0; k < 3; k++) {
    c = load_fixture();
    VKP_ASSERT_OK(ctx, vkp_peft_load(c->model, vkp_fixture_path("clip/adapters/lora"), &a));
    vkp_adapter_set_scale(a, alphas[k]);
    VKP_ASSERT_OK(ctx, vkp_adapter_merge(c->model, a));
    embed_both(c, tok, px, gi, gt);
    if (k == 0) assert_max_diff("merged at 0 = base (images)", gi, base_i, NI * P, 1e-6);
    if (k == 0) assert_max_diff("merged at 0 = base (texts)", gt, base_t, N_TEXTS * P, 1e-6);
    if (k == 1) assert_max_diff("merged at 1 = tuned (images)", gi, tuned_i, NI * P, 1e-5);
    if (k == 1) assert_max_diff("merged at 1 = tuned (texts)", gt, tuned_t, N_TEXTS * P, 1e-5);
    if (k == 1) {   // a full fine-tuned checkpoint: the base with the adapter folded in
      char dir[300];
      vkp_test_dir_path(state, "tuned", dir, sizeof dir);
      vkp_error err = {0};
      if (vkp_clip_save(c, dir, &err)) fail_msg("save: %s", err.msg);
    }
    if (k == 2) memcpy(half_i, gi, sizeof gi), memcpy(half_t, gt, sizeof gt);
    vkp_clip_free(c);
  }
  char dir[300];
  vkp_test_dir_path(state, "tuned", dir, sizeof dir);
  for (int k = 0; k < 3; k++) {
    c = load_fixture();
    vkp_error err = {0};
    if (vkp_clip_interpolate_dir(c, dir, alphas[k], &err)) fail_msg("interpolate: %s", err.msg);
    embed_both(c, tok, px, gi, gt);
    const float *wi = k == 0 ? base_i : k == 1 ? tuned_i : half_i, *wt = k == 0 ? base_t : k == 1 ? tuned_t : half_t;
    const char *what[3][2] = {{"checkpoints at 0 = base (images)", "checkpoints at 0 = base (texts)"},
                              {"checkpoints at 1 = tuned (images)", "checkpoints at 1 = tuned (texts)"},
                              {"checkpoints at 0.5 = merged at 0.5 (img)", "checkpoints at 0.5 = merged at 0.5 (txt)"}};
    assert_max_diff(what[k][0], gi, wi, NI * P, 1e-5);
    assert_max_diff(what[k][1], gt, wt, N_TEXTS * P, 1e-5);
    vkp_clip_free(c);
  }
  // a checkpoint of another shape is refused, and c is left as it was
  c = load_fixture();
  vkp_clip_config cfg = c->cfg;
  cfg.projection_dim = 8;
  vkp_clip *other;
  vkp_error err = {0};
  if (vkp_clip_new(ctx, &cfg, 1, &other, &err)) fail_msg("%s", err.msg);
  assert_int_equal(vkp_clip_interpolate(c, other, 0.5f, &err), VKP_ERR_SHAPE);
  embed_both(c, tok, px, gi, gt);
  assert_memory_equal(gi, base_i, sizeof gi);
  vkp_clip_free(other);
  vkp_clip_free(c);
  vkp_clip_tokenizer_free(tok);
}

// ---- data on disk for the gallery and the CLI -----------------------------------------------------

static const char *const COLOURS[] = {"red", "green", "blue", "yellow", "white", "black"};
static const uint8_t RGB[6][3] = {{220, 30, 30}, {30, 200, 30}, {30, 30, 220}, {230, 220, 30}, {250, 250, 250}, {10, 10, 10}};

static void write_png(const char *path, const uint8_t *rgb, int size, int variant) {
  vkp_image *img;
  vkp_error err = {0};
  if (vkp_image_new(size, size, 4, &img, &err)) fail_msg("%s", err.msg);
  for (int y = 0; y < size; y++)
    for (int x = 0; x < size; x++) {
      uint8_t *p = img->data + ((size_t)y * size + x) * 4;
      bool inside = (x - size / 2) * (x - size / 2) + (y - size / 2) * (y - size / 2) < (size / 3 + variant) * (size / 3 + variant);
      for (int k = 0; k < 3; k++) p[k] = rgb[k];
      p[3] = inside ? 255 : 0;   // a disc on transparency
    }
  if (vkp_png_write(path, img, NULL, 0, &err)) fail_msg("%s", err.msg);
  vkp_image_free(img);
}

// dir/cap: six images with captions ("a red disc", ...); dir/cls/<colour>/k.png: a labelled set.
static void make_data(const char *dir) {
  char p[600];
  snprintf(p, sizeof p, "%s/cap", dir);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/cls", dir);
  mkdir(p, 0755);
  for (int i = 0; i < 6; i++) {
    snprintf(p, sizeof p, "%s/cap/%d_%s.png", dir, i, COLOURS[i]);
    write_png(p, RGB[i], 24, 0);
    snprintf(p, sizeof p, "%s/cap/%d_%s.txt", dir, i, COLOURS[i]);
    FILE *f = fopen(p, "w");
    fprintf(f, "a %s disc\n%s\n", COLOURS[i], COLOURS[i]);
    fclose(f);
  }
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/cls/%s", dir, COLOURS[i]);
    mkdir(p, 0755);
    for (int k = 0; k < 4; k++) {
      snprintf(p, sizeof p, "%s/cls/%s/%d.png", dir, COLOURS[i], k);
      write_png(p, RGB[i], 20, k);
    }
  }
}

static void test_gallery(void **state) {
  char dir[300], png[400];
  vkp_test_dir_path(state, "", dir, sizeof dir);
  make_data(dir);
  snprintf(png, sizeof png, "%s/cap", dir);
  vkp_pairs *p;
  vkp_error err = {0};
  if (vkp_pairs_load_folder(png, NULL, &(vkp_pairs_opts){.channels = 3}, &p, &err)) fail_msg("%s", err.msg);
  assert_int_equal(vkp_pairs_count(p), 6);
  vkp_clip *c = load_fixture();
  vkp_clip_tokenizer *tok = fixture_tokenizer();
  vkp_test_dir_path(state, "gallery.png", png, sizeof png);
  vkp_clip_eval_result r;
  vkp_clip_eval_opts o = {.batch = 4, .zero_shot = true, .gallery_path = png, .gallery_queries = 3};
  if (vkp_clip_eval_pairs(c, tok, p, NULL, 0, &o, &r, &err)) fail_msg("%s", err.msg);
  assert_int_equal(r.retrieval.n_images, 6);
  assert_int_equal(r.retrieval.n_texts, 12);
  assert_false(r.has_zero_shot);   // a flat caption folder has no names
  printf("  6 discs: t2i R@1 %.3f, i2t R@1 %.3f\n", r.retrieval.t2i_r1, r.retrieval.i2t_r1);
  vkp_image *img;
  if (vkp_png_read(png, &img, NULL, NULL, &err)) fail_msg("%s", err.msg);
  // 5 images + the right one per row, 64 px cells: 24 + 6 * 70 + 4 * 8 + 24 wide, 39 + 3 * 114 high
  assert_int_equal(img->width, 24 + 6 * 70 + 4 * 8 + 24);
  assert_int_equal(img->height, 39 + 3 * (64 + 50));
  vkp_image_free(img);
  vkp_clip_tokenizer_free(tok);
  vkp_clip_free(c);
  vkp_pairs_free(p);
}

// ---- the command line ---------------------------------------------------------------------------

static char cli_out[1 << 16];

// `vkpeft <args>` with stdout and stderr in cli_out; fails on validation messages; returns the status.
static int vkpeft(void **state, const char *args) {
  char log[400], cmd[8192];
  vkp_test_dir_path(state, "cli.txt", log, sizeof log);
  snprintf(cmd, sizeof cmd, "%s/vkpeft %s > %s 2>&1", VKP_BINARY_DIR, args, log);
  int rc = system(cmd);
  FILE *f = fopen(log, "r");
  cli_out[f ? fread(cli_out, 1, sizeof cli_out - 1, f) : 0] = '\0';
  if (f) fclose(f);
  if (strstr(cli_out, "vkpeft: validation")) fail_msg("vkpeft %s: validation messages:\n%s", args, cli_out);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// Runs vkpeft with printf-style arguments; the status must be `status` and the output hold `needle`.
static void expect_v(void **state, int status, const char *needle, const char *fmt, ...) {
  char a[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a, sizeof a, fmt, ap);
  va_end(ap);
  int rc = vkpeft(state, a);
  if (rc != status || (needle && !strstr(cli_out, needle)))
    fail_msg("vkpeft %s\n  exit %d (want %d), output:\n%s\n  (want '%s')", a, rc, status, cli_out, needle ? needle : "");
}
#define EXPECT(status, needle, ...) expect_v(state, status, needle, __VA_ARGS__)

static void test_cli_embed(void **state) {
  char dir[300], out[400];
  vkp_test_dir_path(state, "", dir, sizeof dir);
  make_data(dir);
  vkp_test_dir_path(state, "emb.safetensors", out, sizeof out);
  const char *model = vkp_fixture_path("clip/model");
  char m[600];
  snprintf(m, sizeof m, "%s", model);
  EXPECT(0, NULL, "embed --model %s --images %s/cap --text 'a red disc' dog --output %s --batch 4", m, dir, out);
  vkp_safetensors *st;
  vkp_error err = {0};
  if (vkp_safetensors_open(out, &st, &err)) fail_msg("%s", err.msg);
  const vkp_st_tensor *ti = vkp_safetensors_find(st, "image_embeds"), *tt = vkp_safetensors_find(st, "text_embeds");
  assert_non_null(ti);
  assert_non_null(tt);
  assert_int_equal(ti->shape[0], 6);
  assert_int_equal(ti->shape[1], 16);
  assert_int_equal(tt->shape[0], 2);
  assert_string_equal(vkp_safetensors_metadata(st, "texts"), "[\"a red disc\",\"dog\"]");
  assert_non_null(strstr(vkp_safetensors_metadata(st, "images"), "0_red.png"));
  // the texts equal the library's embeddings
  vkp_clip *c = load_fixture();
  vkp_clip_tokenizer *tok = fixture_tokenizer();
  const char *two[2] = {"a red disc", "dog"};
  float want[2 * 16];
  if (vkp_clip_embed_texts(c, tok, two, 2, 8, want, &err)) fail_msg("%s", err.msg);
  size_t n;
  float *got = vkp_fixture_tensor(st, "text_embeds", &n);
  assert_int_equal(n, 32);
  assert_max_diff("vkpeft embed text_embeds", got, want, 32, 1e-6);
  free(got);
  vkp_safetensors_free(st);
  vkp_clip_tokenizer_free(tok);
  vkp_clip_free(c);
  // a texts file; bad inputs exit 2 naming the file, and the earlier output stays
  char texts[400];
  vkp_test_dir_path(state, "texts.txt", texts, sizeof texts);
  FILE *f = fopen(texts, "w");
  fputs("a cat\n\na dog\n", f);
  fclose(f);
  EXPECT(0, NULL, "embed --model %s --texts %s --output %s", m, texts, out);
  if (vkp_safetensors_open(out, &st, &err)) fail_msg("%s", err.msg);
  assert_null(vkp_safetensors_find(st, "image_embeds"));
  assert_string_equal(vkp_safetensors_metadata(st, "texts"), "[\"a cat\",\"a dog\"]");
  vkp_safetensors_free(st);
  struct stat before, after;
  stat(out, &before);
  EXPECT(2, "/nonexistent/texts.txt", "embed --model %s --texts /nonexistent/texts.txt --output %s", m, out);
  EXPECT(2, "/nonexistent/dir/e.safetensors", "embed --model %s --text cat --output /nonexistent/dir/e.safetensors", m);
  EXPECT(2, "/nonexistent/images", "embed --model %s --images /nonexistent/images --output %s", m, out);
  EXPECT(2, "/nonexistent/model", "embed --model /nonexistent/model --text cat --output %s", out);
  EXPECT(2, "usage", "embed --model %s --output %s", m, out);
  EXPECT(2, "needs a CLIP model", "embed --model %s --text cat --output %s", vkp_fixture_path("vit/model"), out);
  stat(out, &after);
  assert_int_equal(before.st_size, after.st_size);
  assert_int_equal(before.st_mtime, after.st_mtime);
}

static void test_cli_eval(void **state) {
  char dir[300], png[400], m[600], lora[600];
  vkp_test_dir_path(state, "", dir, sizeof dir);
  make_data(dir);
  vkp_test_dir_path(state, "g.png", png, sizeof png);
  snprintf(m, sizeof m, "%s", vkp_fixture_path("clip/model"));
  snprintf(lora, sizeof lora, "%s", vkp_fixture_path("clip/adapters/lora"));
  EXPECT(0, "\"retrieval\"", "eval --model %s --data %s/cap --json --gallery %s --batch 4", m, dir, png);
  assert_non_null(strstr(cli_out, "\"text_to_image\""));
  struct stat sb;
  assert_int_equal(stat(png, &sb), 0);
  EXPECT(0, "text -> image", "eval --model %s --data %s/cap", m, dir);
  // labelled images: zero-shot over the class names, the linear probe on a stratified half
  EXPECT(0, "\"linear_probe\"", "eval --model %s --data %s/cls --json --probe", m, dir);
  assert_non_null(strstr(cli_out, "\"zero_shot\""));
  assert_non_null(strstr(cli_out, "\"classes\":3"));
  char tmpl[400];
  vkp_test_dir_path(state, "templates.txt", tmpl, sizeof tmpl);
  FILE *f = fopen(tmpl, "w");
  fputs("a {} disc\n", f);
  fclose(f);
  EXPECT(0, "zero-shot (3 classes, 1 templates)", "eval --model %s --data %s/cls --templates %s", m, dir, tmpl);
  // WiSE-FT with an adapter (merged at scale A) and with a full checkpoint
  EXPECT(0, "\"interpolate\":0.5", "eval --model %s --adapter %s --interpolate 0.5 --data %s/cap --json", m, lora, dir);
  // the end points: A = 0 evaluates the base model, A = 1 the adapter's
  char base[2048], tuned[2048];
  EXPECT(0, "\"retrieval\"", "eval --model %s --data %s/cap --json --batch 5", m, dir);
  snprintf(base, sizeof base, "%s", strstr(cli_out, "\"retrieval\""));
  EXPECT(0, "\"retrieval\"", "eval --model %s --adapter %s --data %s/cap --json", m, lora, dir);
  snprintf(tuned, sizeof tuned, "%s", strstr(cli_out, "\"retrieval\""));
  EXPECT(0, base, "eval --model %s --adapter %s --interpolate 0 --data %s/cap --json", m, lora, dir);
  EXPECT(0, tuned, "eval --model %s --adapter %s --interpolate 1 --data %s/cap --json", m, lora, dir);
  printf("  base:  %s  tuned: %s", base, tuned);
  if (!strcmp(base, tuned)) fail_msg("the adapter does not change the retrieval results: %s", base);
  EXPECT(0, "WiSE-FT", "eval --model %s --tuned %s --interpolate 0.25 --data %s/cap", m, m, dir);
  // errors: exit 2, one line naming the culprit
  EXPECT(2, "--interpolate needs", "eval --model %s --interpolate 0.5 --data %s/cap", m, dir);
  EXPECT(2, "not a number", "eval --model %s --adapter %s --interpolate abc --data %s/cap", m, lora, dir);
  EXPECT(2, "/nonexistent/t.txt", "eval --model %s --data %s/cap --templates /nonexistent/t.txt", m, dir);
  EXPECT(2, "/nonexistent/data", "eval --model %s --data /nonexistent/data", m);
  EXPECT(2, "unknown split", "eval --model %s --data %s/cap:sideways", m, dir);
  EXPECT(2, "/nonexistent/tuned", "eval --model %s --tuned /nonexistent/tuned --interpolate 0.5 --data %s/cap", m, dir);
  EXPECT(2, "linear probe", "eval --model %s --data %s/cap --probe", m, dir);
  // a split of a caption folder by key
  EXPECT(0, "\"images\":", "eval --model %s --data %s/cap:val:0.5:1 --json", m, dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retrieval_hand_case),
      cmocka_unit_test(test_zero_shot_metrics),
      cmocka_unit_test_setup_teardown(test_templates, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_linear_probe),
      cmocka_unit_test_setup_teardown(test_transform_load, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_embed_matches_forward),
      cmocka_unit_test_setup_teardown(test_wise_ft, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_gallery, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_cli_embed, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_cli_eval, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
