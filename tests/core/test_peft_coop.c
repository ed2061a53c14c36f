// test_peft_coop.c — CoOp (learned context vectors in CLIP's text tower), on a tiny random CLIP:
// (1) the forward equals the plain text tower fed with a token sequence whose embeddings at the
// context positions are the context vectors (rows of the embedding table set to them), with
// padding; (2) gradients of the contexts by finite differences; (3) ctx_init = "a photo of a"
// starts from the phrase's embeddings and gives the text_embeds of the hand-written template
// "a photo of a {}." (also through the zero-shot classifier's "{}." template); (4) save/load;
// (5) a few training steps on a synthetic contrastive task lower the loss; (6) bad configs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_clip.h"
#include "vkp_clip_eval.h"
#include "vkp_clip_tokenizer.h"
#include "vkp_fileio.h"
#include "vkp_peft.h"
#include "vkp_test.h"

#define POS 24    // max_position_embeddings of the tiny text tower
#define SOS 49406
#define EOS 49407

static vkp_clip *tiny(bool vision) {
  vkp_clip_config cfg;
  vkp_clip_config_default(&cfg);
  cfg.text.hidden_size = 32, cfg.text.intermediate_size = 64, cfg.text.num_hidden_layers = 2;
  cfg.text.num_attention_heads = 4, cfg.text.max_position_embeddings = POS;
  cfg.vision.image_size = 16, cfg.vision.patch_size = 8, cfg.vision.hidden_size = 32;
  cfg.vision.intermediate_size = 64, cfg.vision.num_hidden_layers = 1, cfg.vision.num_attention_heads = 4;
  cfg.projection_dim = 16;
  cfg.has_vision = cfg.has_visual_projection = vision;
  vkp_clip *c = NULL;
  vkp_error err = {0};
  if (vkp_clip_new(vkp_test_ctx(), &cfg, 11, &c, &err)) fail_msg("clip: %s", err.msg);
  return c;
}

static vkp_adapter *attach(vkp_clip *c, const char *json) {
  cJSON *j = cJSON_Parse(json);
  vkp_peft_config pc;
  vkp_error err = {0};
  if (vkp_peft_config_from_entry(j, "test", &pc, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(j);
  vkp_adapter *a = NULL;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_peft_attach(c->model, &pc, 3, &a));
  vkp_peft_config_clear(&pc);
  return a;
}

static vkp_param *ctx_param(vkp_clip *c) {
  vkp_param **tp;
  int n = vkp_model_trainable(c->model, &tp);
  assert_int_equal(n, 1);
  vkp_param *p = tp[0];
  free(tp);
  return p;
}

static float *read_param(vkp_clip *c, const vkp_param *p) {
  float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_param_read_f32(c->model, p, v));
  return v;
}

// A text-side graph: text_embeds and, with w, loss = sum(text_embeds * w) and its gradient with
// respect to the context vectors.
typedef struct text_run {
  vkp_graph *g;
  vkp_clip_inputs in;
  vkp_clip_outputs out;
  vkp_tensor *w, *loss, *grad;
} text_run;

static void text_build(vkp_clip *c, int B, int T, const int32_t *ids, const float *mask, const float *w, text_run *r) {
  vkp_ctx *ctx = vkp_test_ctx();
  memset(r, 0, sizeof *r);
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &r->g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_new(c, r->g, 0, B, T, true, &r->in));
  if (vkp_clip_forward(c, r->g, &r->in, &r->out)) fail_msg("forward: %s", vkp_graph_error(r->g));
  vkp_graph_output(r->g, r->out.text_embeds);
  if (w) {
    r->w = vkp_tensor_input(r->g, "w", VKP_DTYPE_F32, 2, r->out.text_embeds->shape);
    r->loss = vkp_sum(r->g, vkp_mul(r->g, r->out.text_embeds, r->w));
    vkp_graph_output(r->g, r->loss);
    vkp_tensor *pt = vkp_param_tensor(c->model, ctx_param(c));
    VKP_ASSERT_OK(ctx, vkp_graph_backward(r->g, r->loss, &pt, 1, &r->grad));
    vkp_graph_output(r->g, r->grad);
  }
  VKP_ASSERT_OK(ctx, vkp_graph_compile(r->g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_set(c, r->g, &r->in, NULL, ids, mask));
  if (w) VKP_ASSERT_OK(ctx, vkp_graph_set_input(r->g, r->w, w, vkp_tensor_nbytes(r->w)));
  VKP_ASSERT_OK(ctx, vkp_graph_run(r->g));
}

static float *read_t(vkp_graph *g, const vkp_tensor *t) {
  size_t n = (size_t)vkp_tensor_numel(t);
  float *v = malloc(n * sizeof *v);
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_read(g, t, v, n * 4));
  return v;
}

static float *embeds(vkp_clip *c, int B, int T, const int32_t *ids, const float *mask) {
  text_run r;
  text_build(c, B, T, ids, mask, NULL, &r);
  float *e = read_t(r.g, r.out.text_embeds);
  vkp_graph_free(r.g);
  return e;
}

static double rel_err(const float *a, const float *b, size_t n) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), m = fmax(m, fabs((double)b[i]));
  return d / m;
}

// Two texts of T = 8 tokens: [SOS, 5 tokens, EOS, pad] (mask 1 x 7) and [SOS, 2 tokens, EOS, pad x 4].
#define T1 8
static const int32_t texts1[2 * T1] = {SOS, 1001, 1002, 1003, 1004, 1005, EOS, 0,
                                       SOS, 2001, 2002, EOS, 0, 0, 0, 0};
static const float mask1[2 * T1] = {1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0};

// (1) CoOp == the plain tower on [SOS, r_1..r_n, tokens...] with table rows r_i = ctx_i.
static void test_forward_equals_embedding_override(void **state) {
  (void)state;
  vkp_clip *c = tiny(false);
  vkp_adapter *a = attach(c, "{\"method\": \"coop\", \"n_ctx\": 3}");
  assert_string_equal(vkp_adapter_slot_module(a, 0)->name, "text_model.encoder.layers.0");   // default target
  assert_null(vkp_adapter_slot_module(a, 1));
  const int n = 3, D = 32;
  float *got = embeds(c, 2, T1, texts1, mask1);
  // The reference: CoOp disabled, context ids 500.. whose embedding rows are the contexts.
  vkp_param *table = c->text.token_embedding->weight, *p = ctx_param(c);
  float *tab = read_param(c, table), *ctxv = read_param(c, p);
  float *tab2 = malloc((size_t)vkp_param_numel(table) * sizeof *tab2);
  memcpy(tab2, tab, (size_t)vkp_param_numel(table) * sizeof *tab2);
  for (int i = 0; i < n; i++) memcpy(tab2 + (500 + i) * D, ctxv + i * D, D * sizeof *tab2);
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_param_write_f32(c->model, table, tab2));
  int32_t ids[2 * (T1 + n)];
  float mask[2 * (T1 + n)];
  for (int b = 0; b < 2; b++)
    for (int t = 0; t < T1 + n; t++) {
      int src = t == 0 ? 0 : t <= n ? -1 : t - n;
      ids[b * (T1 + n) + t] = src < 0 ? 500 + t - 1 : texts1[b * T1 + src];
      mask[b * (T1 + n) + t] = src < 0 ? 1.0f : mask1[b * T1 + src];
    }
  vkp_adapter_set_enabled(a, false);
  float *want = embeds(c, 2, T1 + n, ids, mask);
  float *plain = embeds(c, 2, T1, texts1, mask1);
  vkp_adapter_set_enabled(a, true);
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_param_write_f32(c->model, table, tab));
  double e = rel_err(got, want, 2 * 16);
  printf("  text_embeds, CoOp vs embedding override: rel %.3g; vs no contexts: %.3g\n", e, rel_err(plain, want, 2 * 16));
  assert_true(e < 1e-5);
  assert_true(rel_err(plain, want, 2 * 16) > 1e-2);   // the contexts matter
  free(got), free(want), free(plain), free(tab), free(tab2), free(ctxv);
  vkp_clip_free(c);
}

// (2) d loss / d ctx against central differences.
static void test_gradients(void **state) {
  (void)state;
  vkp_clip *c = tiny(false);
  attach(c, "{\"method\": \"coop\", \"n_ctx\": 2}");
  vkp_param *p = ctx_param(c);
  float w[2 * 16];
  for (int i = 0; i < 32; i++) w[i] = (float)sin(1.7 * i + 0.3);
  text_run r;
  text_build(c, 2, T1, texts1, mask1, w, &r);
  float *grad = read_t(r.g, r.grad), *v = read_param(c, p);
  const int idx[] = {0, 5, 17, 31, 32, 40, 50, 63};
  const double h = 1e-3;
  double maxd = 0, maxg = 0;
  for (size_t k = 0; k < sizeof idx / sizeof *idx; k++) {
    float keep = v[idx[k]], lp, lm;
    v[idx[k]] = keep + (float)h;
    VKP_ASSERT_OK(vkp_test_ctx(), vkp_param_write_f32(c->model, p, v));
    VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_run(r.g));
    VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_read(r.g, r.loss, &lp, 4));
    v[idx[k]] = keep - (float)h;
    VKP_ASSERT_OK(vkp_test_ctx(), vkp_param_write_f32(c->model, p, v));
    VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_run(r.g));
    VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_read(r.g, r.loss, &lm, 4));
    v[idx[k]] = keep;
    double fd = ((double)lp - lm) / (2 * h);
    maxd = fmax(maxd, fabs(fd - grad[idx[k]]));
    maxg = fmax(maxg, fabs(grad[idx[k]]));
  }
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_param_write_f32(c->model, p, v));
  printf("  d loss / d coop_ctx vs finite differences: max abs %.3g, max |grad| %.3g, rel %.3g\n", maxd, maxg, maxd / maxg);
  assert_true(maxg > 0 && maxd / maxg < 1e-2);
  free(grad), free(v);
  vkp_graph_free(r.g);
  vkp_clip_free(c);
}

// (3) ctx_init: the phrase's embedding rows, then the hand-written template's text_embeds.
static void test_ctx_init(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_clip *c = tiny(false);
  vkp_clip_tokenizer *tok = NULL;
  vkp_error err = {0};
  if (vkp_clip_tokenizer_load(NULL, &tok, &err)) fail_msg("%s", err.msg);
  cJSON *j = cJSON_Parse("{\"method\": \"coop\", \"ctx_init\": \"a photo of a\"}");
  vkp_peft_config pc;
  if (vkp_peft_config_from_entry(j, "test", &pc, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(j);
  if (vkp_clip_coop_resolve(tok, &pc, "test", &err)) fail_msg("%s", err.msg);
  assert_int_equal(pc.n_ctx, 4);
  assert_int_equal(pc.n_ctx_init_ids, 4);
  int32_t phrase[8];
  int np = 0;
  VKP_ASSERT_OK(ctx, vkp_clip_encode(tok, "a photo of a", phrase, 8, &np));
  assert_int_equal(np, 4);
  for (int i = 0; i < 4; i++) assert_int_equal(pc.ctx_init_ids[i], phrase[i]);
  vkp_adapter *a = NULL;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(c->model, &pc, 3, &a));
  vkp_peft_config_clear(&pc);
  // The contexts are the phrase's embedding rows, bit for bit.
  vkp_param *table = c->text.token_embedding->weight;
  float *tab = read_param(c, table), *cv = read_param(c, ctx_param(c));
  for (int i = 0; i < 4; i++) assert_memory_equal(cv + i * 32, tab + (int64_t)phrase[i] * 32, 32 * sizeof(float));
  // text_embeds: "{}." with CoOp vs "a photo of a {}." without.
  const char *names[] = {"cat", "red apple", "traffic light"};
  int32_t ids_c[3 * 12], ids_t[3 * 16], mi[3 * 16];
  float mk_c[3 * 12], mk_t[3 * 16];
  for (int k = 0; k < 3; k++) {
    char s[64];
    snprintf(s, sizeof s, "%s.", names[k]);
    VKP_ASSERT_OK(ctx, vkp_clip_tokenize(tok, s, 12, VKP_CLIP_PAD_HF, ids_c + k * 12, mi, NULL));
    for (int t = 0; t < 12; t++) mk_c[k * 12 + t] = (float)mi[t];
    snprintf(s, sizeof s, "a photo of a %s.", names[k]);
    VKP_ASSERT_OK(ctx, vkp_clip_tokenize(tok, s, 16, VKP_CLIP_PAD_HF, ids_t + k * 16, mi, NULL));
    for (int t = 0; t < 16; t++) mk_t[k * 16 + t] = (float)mi[t];
  }
  float *coop = embeds(c, 3, 12, ids_c, mk_c);
  vkp_adapter_set_enabled(a, false);
  float *tmpl = embeds(c, 3, 16, ids_t, mk_t);
  vkp_adapter_set_enabled(a, true);
  double e = rel_err(coop, tmpl, 3 * 16);
  printf("  ctx_init \"a photo of a\" + \"{}.\" vs \"a photo of a {}.\": text_embeds rel %.3g\n", e);
  assert_true(e < 1e-6);   // rounding of the position re-assignment only
  // The zero-shot classifier picks "{}." with CoOp attached.
  int nt = 0;
  const char *const *tp = vkp_clip_zero_shot_templates(c, &nt);
  assert_int_equal(nt, 1);
  assert_string_equal(tp[0], "{}.");
  float cls_coop[3 * 16], cls_tmpl[3 * 16];
  if (vkp_clip_zero_shot_classifier(c, NULL, tok, names, 3, NULL, 0, cls_coop, &err)) fail_msg("%s", err.msg);
  vkp_adapter_set_enabled(a, false);
  const char *hand[] = {"a photo of a {}."};
  if (vkp_clip_zero_shot_classifier(c, NULL, tok, names, 3, hand, 1, cls_tmpl, &err)) fail_msg("%s", err.msg);
  vkp_adapter_set_enabled(a, true);
  e = rel_err(cls_coop, cls_tmpl, 3 * 16);
  printf("  zero-shot class embeddings, CoOp (\"{}.\") vs the hand-written template: rel %.3g\n", e);
  assert_true(e < 1e-6);
  free(tab), free(cv), free(coop), free(tmpl);
  vkp_clip_tokenizer_free(tok);
  vkp_clip_free(c);
}

// (4) save / load: HF PEFT folder with peft_type VKPEFT_COOP and base_model.model.<block>.coop_ctx.
static void test_save_load(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_clip *c = tiny(false);
  vkp_adapter *a = attach(c, "{\"method\": \"coop\", \"n_ctx\": 5, \"ctx_init_ids\": [320, 1125, 539, 320, 1929]}");
  char dir[256], path[320];
  vkp_test_dir_path(state, "coop", dir, sizeof dir);
  VKP_ASSERT_OK(ctx, vkp_peft_save(c->model, a, dir));
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  char *text = NULL;
  size_t len = 0;
  vkp_error err = {0};
  if (vkp_file_read_all(path, 1 << 24, &text, &len, &err)) fail_msg("%s", err.msg);
  cJSON *j = cJSON_Parse(text);
  assert_string_equal(cJSON_GetObjectItem(j, "peft_type")->valuestring, "VKPEFT_COOP");
  assert_int_equal(cJSON_GetObjectItem(j, "n_ctx")->valueint, 5);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ctx_init_ids")), 5);
  printf("  adapter_config.json: %s\n", text);
  cJSON_Delete(j), free(text);
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
  if (vkp_file_read_all(path, 1 << 24, &text, &len, &err)) fail_msg("%s", err.msg);
  const char *key = "base_model.model.text_model.encoder.layers.0.coop_ctx";
  assert_non_null(memmem(text, len, key, strlen(key)));
  free(text);
  float *e1 = embeds(c, 2, T1, texts1, mask1);
  vkp_clip *c2 = tiny(false);
  vkp_adapter *a2 = NULL;
  VKP_ASSERT_OK(ctx, vkp_peft_load(c2->model, dir, &a2));
  assert_int_equal(vkp_adapter_config(a2)->method, VKP_PEFT_COOP);
  float *v1 = read_param(c, ctx_param(c)), *v2 = read_param(c2, ctx_param(c2));
  assert_memory_equal(v1, v2, 5 * 32 * sizeof(float));
  float *e2 = embeds(c2, 2, T1, texts1, mask1);
  assert_memory_equal(e1, e2, 2 * 16 * sizeof(float));
  // Merging does not apply.
  assert_int_not_equal(vkp_adapter_merge(c2->model, a2), VKP_OK);
  printf("  merge: %s\n", vkp_ctx_error(ctx));
  free(e1), free(e2), free(v1), free(v2);
  vkp_clip_free(c2);
  vkp_clip_free(c);
}

// (5) Contrastive training of the contexts only: 4 classes, an image pattern and a one-token name
// each ("{}." captions); plain gradient steps lower the symmetric InfoNCE loss.
static void test_training_lowers_loss(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_clip *c = tiny(true);
  attach(c, "{\"method\": \"coop\", \"n_ctx\": 4}");
  vkp_param *p = ctx_param(c);
  enum { B = 4, T = 6 };
  float px[B * 3 * 16 * 16];
  for (int i = 0; i < B * 3 * 256; i++) px[i] = (float)sin(0.37 * i * (1 + i / 768));
  int32_t ids[B * T];
  float mask[B * T];
  for (int b = 0; b < B; b++) {
    int32_t row[T] = {SOS, 3000 + 17 * b, 269, EOS, 0, 0};   // name, ".", end
    for (int t = 0; t < T; t++) ids[b * T + t] = row[t], mask[b * T + t] = t < 4;
  }
  vkp_graph *g;
  vkp_clip_inputs in;
  vkp_clip_outputs out;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_new(c, g, B, B, T, true, &in));
  if (vkp_clip_forward(c, g, &in, &out)) fail_msg("%s", vkp_graph_error(g));
  vkp_graph_output(g, out.loss);
  vkp_tensor *pt = vkp_param_tensor(c->model, p), *grad = NULL;
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, out.loss, &pt, 1, &grad));
  vkp_graph_output(g, grad);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_set(c, g, &in, px, ids, mask));
  float *v = read_param(c, p), gv[4 * 32], loss0 = 0, loss = 0;
  for (int step = 0; step <= 30; step++) {
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, out.loss, &loss, 4));
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, grad, gv, sizeof gv));
    if (step == 0) loss0 = loss;
    double gmax = 0;
    for (int i = 0; i < 128; i++) gmax = fmax(gmax, fabs(gv[i]));
    for (int i = 0; i < 128; i++) v[i] -= (float)(0.02 * gv[i] / (gmax + 1e-12));   // normalised steps
    VKP_ASSERT_OK(ctx, vkp_param_write_f32(c->model, p, v));
  }
  printf("  contrastive loss, contexts only: %.4f -> %.4f after 30 steps (ln 4 = %.4f)\n", loss0, loss, log(4.0));
  assert_true(loss < loss0 - 0.01f);
  free(v);
  vkp_graph_free(g);
  vkp_clip_free(c);
}

// (6) Bad configs: errors name the key.
static void parse_fails(const char *json, const char *key) {
  cJSON *j = cJSON_Parse(json);
  vkp_peft_config pc;
  vkp_error err = {0};
  vkp_status st = vkp_peft_config_from_entry(j, "cfg peft[0]", &pc, &err);
  cJSON_Delete(j);
  if (!st) fail_msg("%s parsed", json);
  printf("  %s -> %s\n", json, err.msg);
  if (!strstr(err.msg, key)) fail_msg("'%s' not named in: %s", key, err.msg);
}

static void attach_fails(vkp_clip *c, const char *json, const char *key) {
  cJSON *j = cJSON_Parse(json);
  vkp_peft_config pc;
  vkp_error err = {0};
  if (vkp_peft_config_from_entry(j, "cfg", &pc, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(j);
  vkp_adapter *a = NULL;
  vkp_status st = vkp_peft_attach(c->model, &pc, 1, &a);
  vkp_peft_config_clear(&pc);
  if (!st) fail_msg("%s attached", json);
  const char *msg = vkp_ctx_error(c->model->ctx);
  printf("  attach %s -> %s\n", json, msg);
  if (!strstr(msg, key)) fail_msg("'%s' not named in: %s", key, msg);
}

static void test_bad_config(void **state) {
  (void)state;
  parse_fails("{\"method\": \"coop\", \"n_ctx\": 0}", "'n_ctx'");
  parse_fails("{\"method\": \"coop\", \"n_ctx\": \"4\"}", "'n_ctx'");
  parse_fails("{\"method\": \"coop\", \"csc\": true}", "'csc'");
  parse_fails("{\"method\": \"coop\", \"n_ctx\": 3, \"ctx_init_ids\": [1, 2]}", "'n_ctx'");
  parse_fails("{\"method\": \"coop\", \"ctx_init_ids\": [1, -2]}", "'ctx_init_ids'");
  parse_fails("{\"method\": \"coop\", \"num_tokens\": 4}", "'num_tokens'");
  vkp_clip *c = tiny(false);
  attach_fails(c, "{\"method\": \"coop\", \"n_ctx\": 23}", "'n_ctx'");   // + start + end > 24 positions
  attach_fails(c, "{\"method\": \"coop\", \"ctx_init\": \"a photo of a\"}", "'ctx_init'");   // ids not filled
  attach_fails(c, "{\"method\": \"coop\", \"position_embedding\": \"nope\"}", "'position_embedding'");
  attach_fails(c, "{\"method\": \"coop\", \"ctx_init_ids\": [1, 99999999]}", "'ctx_init_ids'");
  // n_ctx + the text longer than the positions: the forward fails naming n_ctx.
  attach(c, "{\"method\": \"coop\", \"n_ctx\": 10}");
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  vkp_clip_inputs in;
  vkp_clip_outputs out;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_new(c, g, 0, 1, 16, false, &in));
  assert_int_not_equal(vkp_clip_forward(c, g, &in, &out), VKP_OK);
  printf("  forward of 16 tokens with n_ctx 10 -> %s\n", vkp_graph_error(g));
  assert_non_null(strstr(vkp_graph_error(g), "'n_ctx'"));
  vkp_graph_free(g);
  // The embedder leaves room for the contexts (24 - 10 positions for the text).
  assert_int_equal(vkp_clip_coop_tokens(c), 10);
  vkp_clip_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_equals_embedding_override),
      cmocka_unit_test(test_gradients),
      cmocka_unit_test(test_ctx_init),
      cmocka_unit_test_setup_teardown(test_save_load, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_training_lowers_loss),
      cmocka_unit_test(test_bad_config),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
