// test_clip_parity.c — CLIP against transformers + peft (../shared/fixtures/clip): embeddings,
// logits and loss of the base model; LoRA logits, loss, gradients and one AdamW step; and the
// loading semantics (text-only folders, 16-bit weights, legacy pooling, config errors, save).
// Error measure: max |got - want| / max |want| over the tensor ("relative error" below).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "vkp_clip.h"
#include "vkp_fileio.h"
#include "vkp_optim.h"
#include "vkp_parity.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

#define B 4    // fixture batch (texts = images)
#define T 77   // fixture sequence length

// The fixture's inputs: pixel_values, input_ids (stored as float32) and attention_mask.
typedef struct inputs {
  vkp_safetensors *io;
  float *pixels, *mask;
  int32_t ids[B * T];
} inputs;

static void inputs_open(inputs *in) {
  vkp_error err = {0};
  if (vkp_safetensors_open(vkp_fixture_path("clip/io.safetensors"), &in->io, &err)) fail_msg("%s", err.msg);
  size_t n;
  in->pixels = vkp_fixture_tensor(in->io, "pixel_values", &n);
  assert_int_equal(n, B * 3 * 32 * 32);
  in->mask = vkp_fixture_tensor(in->io, "attention_mask", &n);
  assert_int_equal(n, B * T);
  float *ids = vkp_fixture_tensor(in->io, "input_ids", &n);
  assert_int_equal(n, B * T);
  for (size_t i = 0; i < n; i++) in->ids[i] = (int32_t)ids[i];
  free(ids);
}

static void inputs_close(inputs *in) {
  free(in->pixels), free(in->mask);
  vkp_safetensors_free(in->io);
}

static vkp_clip *load(const char *dir, vkp_clip_towers towers) {
  vkp_clip *c = NULL;
  vkp_error err = {0};
  vkp_clip_load_opts o = {.towers = towers};
  if (vkp_clip_load(vkp_test_ctx(), dir, &o, &c, &err)) fail_msg("load %s: %s", dir, err.msg);
  return c;
}

// A forward graph on the fixture's batch (either side may be left out); compiled and run.
typedef struct run {
  vkp_graph *g;
  vkp_clip_inputs in;
  vkp_clip_outputs out;
} run;

static void forward(vkp_clip *c, const inputs *x, bool images, bool texts, const int32_t *ids, run *r) {
  vkp_ctx *ctx = vkp_test_ctx();
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &r->g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_new(c, r->g, images ? B : 0, texts ? B : 0, T, true, &r->in));
  if (vkp_clip_forward(c, r->g, &r->in, &r->out)) fail_msg("forward: %s", vkp_graph_error(r->g));
  vkp_tensor *outs[] = {r->out.text_embeds, r->out.image_embeds, r->out.logits_per_image, r->out.loss,
                        r->out.text_last_hidden, r->out.text_pooled};
  for (size_t i = 0; i < sizeof outs / sizeof *outs; i++)
    if (outs[i]) vkp_graph_output(r->g, outs[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(r->g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_set(c, r->g, &r->in, x->pixels, ids ? ids : x->ids, x->mask));
  VKP_ASSERT_OK(ctx, vkp_graph_run(r->g));
}

// A training graph on the fixture's batch: forward, the contrastive loss (an output) and the
// gradient of every trainable tensor (outputs; each must exist). Not compiled yet.
typedef struct train {
  vkp_graph *g;
  vkp_clip_inputs in;
  vkp_clip_outputs out;
  vkp_param **tp;      // trainable parameters (owned)
  vkp_tensor **grads;  // their gradients (owned)
  int nt;
} train;

static void train_build(vkp_clip *c, train *t) {
  vkp_ctx *ctx = vkp_test_ctx();
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &t->g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_new(c, t->g, B, B, T, true, &t->in));
  if (vkp_clip_forward(c, t->g, &t->in, &t->out)) fail_msg("forward: %s", vkp_graph_error(t->g));
  vkp_graph_output(t->g, t->out.loss);
  t->nt = vkp_model_trainable(c->model, &t->tp);
  vkp_tensor **pt = calloc((size_t)t->nt, sizeof *pt);
  t->grads = calloc((size_t)t->nt, sizeof *t->grads);
  for (int i = 0; i < t->nt; i++) pt[i] = vkp_param_tensor(c->model, t->tp[i]);
  VKP_ASSERT_OK(ctx, vkp_graph_backward(t->g, t->out.loss, pt, t->nt, t->grads));
  for (int i = 0; i < t->nt; i++) {
    if (!t->grads[i]) fail_msg("no gradient for %s", t->tp[i]->name);
    vkp_graph_output(t->g, t->grads[i]);
  }
  free(pt);
}

static void train_free(train *t) {
  free(t->tp), free(t->grads);
  vkp_graph_free(t->g);
}

// The pooled text output is exactly row (pooled position + shift) of last_hidden_state.
static void check_pooled_at_eos(vkp_clip *c, vkp_graph *g, const vkp_clip_outputs *out, const int32_t *ids, int64_t shift) {
  float *last = vkp_parity_read(g, out->text_last_hidden), *pooled = vkp_parity_read(g, out->text_pooled);
  int64_t C = c->cfg.text.hidden_size, Tl = out->text_last_hidden->shape[1];
  for (int b = 0; b < B; b++) {
    int64_t at = vkp_clip_pool_index(&c->cfg.text, ids + b * T, T) + shift;
    for (int64_t k = 0; k < C; k++)
      if (fabsf(pooled[b * C + k] - last[(b * Tl + at) * C + k]) > 1e-6f)
        fail_msg("row %d: the pooled output is not last_hidden_state[%lld]", b, (long long)at);
  }
  free(last), free(pooled);
}

// ---- 1. the base model --------------------------------------------------------------------------

static void test_base_forward(void **state) {
  (void)state;
  vkp_clip *c = load(vkp_fixture_path("clip/model"), VKP_CLIP_TOWERS_ALL);
  assert_true(c->cfg.has_text && c->cfg.has_vision && c->text_projection && c->visual_projection && c->logit_scale);
  assert_int_equal(c->cfg.text.hidden_act, VKP_CLIP_ACT_QUICK_GELU);
  inputs x;
  inputs_open(&x);
  run r;
  forward(c, &x, true, true, NULL, &r);
  printf("[base]\n");
  vkp_check_output(r.g, r.out.text_embeds, x.io, "", "text_embeds", 1e-4);
  vkp_check_output(r.g, r.out.image_embeds, x.io, "", "image_embeds", 1e-4);
  vkp_check_output(r.g, r.out.logits_per_image, x.io, "", "logits_per_image", 1e-4);
  vkp_check_output(r.g, r.out.loss, x.io, "", "loss", 1e-4);
  vkp_graph_free(r.g);
  inputs_close(&x);
  vkp_clip_free(c);
}

// ---- 2. LoRA on both towers: logits, loss, gradients, one AdamW step ----------------------------

static void test_lora(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_clip *c = load(vkp_fixture_path("clip/model"), VKP_CLIP_TOWERS_ALL);
  vkp_model *m = c->model;
  vkp_adapter *a = NULL;
  VKP_ASSERT_OK(ctx, vkp_peft_load(m, vkp_fixture_path("clip/adapters/lora"), &a));
  // The adapter config has "modules_to_save": null: only the 16 LoRA matrices train (q_proj and
  // v_proj of 2 layers of both towers); logit_scale and the projections stay frozen.
  const vkp_peft_config *pc = vkp_adapter_config(a);
  assert_int_equal(pc->method, VKP_PEFT_LORA);
  assert_int_equal(pc->n_modules_to_save, 0);
  assert_int_equal(pc->r, 4);
  vkp_safetensors *io;
  vkp_error err = {0};
  char path[600];
  snprintf(path, sizeof path, "%s/io.safetensors", vkp_fixture_path("clip/adapters/lora"));
  if (vkp_safetensors_open(path, &io, &err)) fail_msg("%s", err.msg);
  vkp_undo_adamw_step(m, io, 1e-2, 0.01, 1e-8);
  inputs x;
  inputs_open(&x);

  train t;
  train_build(c, &t);
  vkp_graph *g = t.g;
  vkp_param **tp = t.tp;
  vkp_tensor **grads = t.grads;
  int nt = t.nt;
  assert_int_equal(nt, 16);
  for (int i = 0; i < nt; i++) assert_true(tp[i]->adapter);
  vkp_graph_output(g, t.out.logits_per_image);
  // One torch.optim.AdamW step (lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight decay 0.01).
  vkp_param_set *ps;
  vkp_optimizer *opt = vkp_parity_adamw_step(g, tp, nt, grads, &ps);
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_set(c, g, &t.in, x.pixels, x.ids, x.mask));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  printf("[lora]\n");
  vkp_check_output(g, t.out.logits_per_image, io, "", "logits_per_image", 1e-4);
  vkp_check_output(g, t.out.loss, io, "", "loss", 1e-4);
  for (int i = 0; i < nt; i++) {
    char peft_name[512], key[600];
    vkp_peft_param_peft_name(m, tp[i], peft_name, sizeof peft_name);
    snprintf(key, sizeof key, "grad/%s", peft_name);
    vkp_check_output(g, grads[i], io, "", key, 1e-3);
  }
  for (int i = 0; i < nt; i++) {   // the parameters after the step
    char peft_name[512], key[600];
    vkp_peft_param_peft_name(m, tp[i], peft_name, sizeof peft_name);
    snprintf(key, sizeof key, "step1/%s", peft_name);
    size_t n;
    float *want = vkp_fixture_tensor(io, key, &n), *p1 = malloc(n * 4);
    assert_int_equal(n, vkp_param_numel(tp[i]));
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, tp[i], p1));
    vkp_check_rel(key, p1, want, n, 1e-4);
    free(p1), free(want);
  }
  int in_fixture = 0;   // every gradient of the fixture was checked
  for (size_t i = 0; i < vkp_safetensors_count(io); i++) in_fixture += !strncmp(vkp_safetensors_at(io, i)->name, "grad/", 5);
  assert_int_equal(nt, in_fixture);
  train_free(&t);
  vkp_optimizer_free(opt);
  vkp_param_set_free(ps);
  vkp_safetensors_free(io);
  inputs_close(&x);
  vkp_clip_free(c);
}

// ---- 3. loading semantics -----------------------------------------------------------------------

// A CLIPModel folder loaded text-only (Stable Diffusion's use): no vision parameters, the same
// text embeddings.
static void test_text_only(void **state) {
  (void)state;
  vkp_clip *c = load(vkp_fixture_path("clip/model"), VKP_CLIP_TEXT_ONLY);
  assert_true(c->cfg.has_text && !c->cfg.has_vision && !c->logit_scale && !c->visual_projection && c->text_projection);
  for (int i = 0; i < c->model->nparams; i++)
    if (strncmp(c->model->params[i]->name, "text_", 5)) fail_msg("text-only model has '%s'", c->model->params[i]->name);
  inputs x;
  inputs_open(&x);
  run r;
  forward(c, &x, false, true, NULL, &r);
  assert_null(r.out.image_embeds);
  assert_null(r.out.logits_per_image);
  printf("[text only]\n");
  vkp_check_output(r.g, r.out.text_embeds, x.io, "", "text_embeds", 1e-4);
  vkp_graph_free(r.g);
  // An image batch is refused with a message.
  vkp_graph *g;
  vkp_clip_inputs in;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_new(vkp_test_ctx(), &g));
  assert_int_equal(vkp_clip_inputs_new(c, g, 2, 0, T, false, &in), VKP_ERR_INVALID);
  assert_non_null(strstr(vkp_ctx_error(vkp_test_ctx()), "vision"));
  vkp_graph_free(g);
  inputs_close(&x);
  vkp_clip_free(c);

  // Vision-only: the same image embeddings.
  c = load(vkp_fixture_path("clip/model"), VKP_CLIP_VISION_ONLY);
  assert_true(!c->cfg.has_text && c->cfg.has_vision && c->visual_projection && !c->text_projection);
  inputs_open(&x);
  forward(c, &x, true, false, NULL, &r);
  printf("[vision only]\n");
  vkp_check_output(r.g, r.out.image_embeds, x.io, "", "image_embeds", 1e-4);
  vkp_graph_free(r.g);
  inputs_close(&x);
  vkp_clip_free(c);
}

// The fixture checkpoint converted to f16 / bf16 (as 16-bit hub checkpoints are): matrices stay
// 16-bit on the device, vectors are f32, and the embeddings stay within ~1e-2.
static void run_16bit(void **state, vkp_dtype dt) {
  vkp_error err = {0};
  char path[512], dir[256];
  snprintf(dir, sizeof dir, "%s", vkp_test_dir_path(state, vkp_dtype_name(dt), path, sizeof path));
  if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
  vkp_safetensors *src;
  if (vkp_safetensors_open(vkp_fixture_path("clip/model/model.safetensors"), &src, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer *w;
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < vkp_safetensors_count(src); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(src, i);
    size_t n = vkp_st_tensor_numel(t);
    float *v = malloc(n * 4);
    vkp_convert_to_f32(t->dtype, t->data, v, n);
    if (vkp_safetensors_writer_add_f32(w, t->name, dt, t->ndim, t->shape, v, &err)) fail_msg("%s", err.msg);
    free(v);
  }
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_safetensors_free(src);
  snprintf(path, sizeof path, "%s/config.json", dir);
  vkp_test_copy_file(vkp_fixture_path("clip/model/config.json"), path);

  vkp_clip *c = load(dir, VKP_CLIP_TOWERS_ALL);
  const char *matrices[] = {"text_model.embeddings.token_embedding.weight", "text_model.encoder.layers.0.self_attn.q_proj.weight",
                       "vision_model.embeddings.patch_embedding.weight", "vision_model.encoder.layers.1.mlp.fc2.weight",
                       "text_projection.weight", "visual_projection.weight", "vision_model.embeddings.position_embedding.weight"};
  for (size_t i = 0; i < sizeof matrices / sizeof *matrices; i++) {
    vkp_param *p = vkp_model_find_param(c->model, matrices[i]);
    assert_non_null(p);
    if (p->dtype != dt) fail_msg("%s is stored as %s, not %s", matrices[i], vkp_dtype_name(p->dtype), vkp_dtype_name(dt));
  }
  const char *vectors[] = {"text_model.encoder.layers.0.self_attn.q_proj.bias", "vision_model.pre_layrnorm.weight",
                       "vision_model.embeddings.class_embedding", "logit_scale"};
  for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++)
    assert_int_equal(vkp_model_find_param(c->model, vectors[i])->dtype, VKP_DTYPE_F32);
  inputs x;
  inputs_open(&x);
  run r;
  forward(c, &x, true, true, NULL, &r);
  printf("[%s weights]\n", vkp_dtype_name(dt));
  vkp_check_output(r.g, r.out.text_embeds, x.io, "", "text_embeds", 1e-2);
  vkp_check_output(r.g, r.out.image_embeds, x.io, "", "image_embeds", 1e-2);
  vkp_check_output(r.g, r.out.logits_per_image, x.io, "", "logits_per_image", 1e-2);
  vkp_graph_free(r.g);
  inputs_close(&x);
  vkp_clip_free(c);
  // With f32 requested, nothing stays 16-bit.
  vkp_clip_load_opts o = {.f32 = true};
  if (vkp_clip_load(vkp_test_ctx(), dir, &o, &c, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < c->model->nparams; i++) assert_int_equal(c->model->params[i]->dtype, VKP_DTYPE_F32);
  vkp_clip_free(c);
}

static void test_f16(void **state) { run_16bit(state, VKP_DTYPE_F16); }
static void test_bf16(void **state) { run_16bit(state, VKP_DTYPE_BF16); }

// Writes the fixture config with `edit` applied into dir/config.json (and links the weights).
static void edited_folder(const char *dir, void (*edit)(cJSON *j)) {
  vkp_error err = {0};
  if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
  char *text, path[512];
  size_t len;
  if (vkp_file_read_all(vkp_fixture_path("clip/model/config.json"), 1 << 20, &text, &len, &err)) fail_msg("%s", err.msg);
  cJSON *j = cJSON_Parse(text);
  free(text);
  edit(j);
  text = cJSON_Print(j);
  cJSON_Delete(j);
  snprintf(path, sizeof path, "%s/config.json", dir);
  const void *chunks[1] = {text};
  len = strlen(text);
  if (vkp_file_write_atomic(path, chunks, &len, 1, &err)) fail_msg("%s", err.msg);
  free(text);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (symlink(vkp_fixture_path("clip/model/model.safetensors"), path)) fail_msg("symlink %s failed", path);
}

static void set_legacy_eos(cJSON *j) {
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "text_config"), "eos_token_id", cJSON_CreateNumber(2));
}

// eos_token_id 2 (configs from before transformers PR #24773): pooling at argmax(input_ids).
static void test_legacy_pooling(void **state) {
  vkp_clip_text_config tc;
  vkp_clip_text_config_default(&tc);
  int32_t row[8] = {49406, 2, 320, 49407, 49407, 49407, 49407, 49407};
  assert_int_equal(vkp_clip_pool_index(&tc, row, 8), 3);   // first eos 49407
  tc.eos_token_id = 2;
  assert_int_equal(vkp_clip_pool_index(&tc, row, 8), 3);   // argmax, not the id-2 token at 1
  int32_t big[4] = {49406, 5, 60000, 49407};                 // an added token above eos
  assert_int_equal(vkp_clip_pool_index(&tc, big, 4), 2);
  tc.eos_token_id = 49407;
  assert_int_equal(vkp_clip_pool_index(&tc, big, 4), 3);
  int32_t none[3] = {49406, 5, 6};
  assert_int_equal(vkp_clip_pool_index(&tc, none, 3), 0);

  char dir[256];
  vkp_test_dir_path(state, "legacy", dir, sizeof dir);
  edited_folder(dir, set_legacy_eos);
  vkp_clip *c = load(dir, VKP_CLIP_TEXT_ONLY);
  assert_int_equal(c->cfg.text.eos_token_id, 2);
  inputs x;
  inputs_open(&x);
  // The fixture's ids: argmax is the first end token, so the embeddings are the fixture's.
  run r;
  forward(c, &x, false, true, NULL, &r);
  printf("[legacy eos_token_id 2]\n");
  vkp_check_output(r.g, r.out.text_embeds, x.io, "", "text_embeds", 1e-4);
  vkp_graph_free(r.g);
  // Token id 2 before the end token of row 1: pooled at argmax (the end token), and the pooled
  // vector is exactly that row of last_hidden_state.
  int32_t ids[B * T];
  memcpy(ids, x.ids, sizeof ids);
  ids[1 * T + 2] = 2;
  forward(c, &x, false, true, ids, &r);
  for (int b = 0; b < B; b++) assert_true(ids[b * T + vkp_clip_pool_index(&c->cfg.text, ids + b * T, T)] == 49407);
  check_pooled_at_eos(c, r.g, &r.out, ids, 0);
  vkp_graph_free(r.g);
  inputs_close(&x);
  vkp_clip_free(c);
}

// Config errors name the file, the sub-config (`section`, NULL for none) and the key.
static void expect_config_error(const char *dir, const char *json, vkp_status want, const char *section, const char *key) {
  char path[512];
  snprintf(path, sizeof path, "%s/config.json", dir);
  const void *chunks[1] = {json};
  size_t len = strlen(json);
  vkp_error err = {0};
  if (vkp_file_write_atomic(path, chunks, &len, 1, &err)) fail_msg("%s", err.msg);
  vkp_clip_config cfg;
  vkp_status st = vkp_clip_config_load(path, &cfg, &err);
  printf("  %s\n", err.msg);
  if (st != want) fail_msg("%s: status %s, expected %s", json, vkp_status_name(st), vkp_status_name(want));
  if (!strstr(err.msg, path) || !strstr(err.msg, key) || (section && !strstr(err.msg, section)))
    fail_msg("message '%s' does not name %s, %s and '%s'", err.msg, path, section ? section : "-", key);
}

static void test_bad_config(void **state) {
  char dir[256];
  vkp_test_dir_path(state, "bad", dir, sizeof dir);
  vkp_error err = {0};
  if (vkp_dir_create(dir, &err)) fail_msg("%s", err.msg);
  printf("[bad configs]\n");
  expect_config_error(dir, "{\"model_type\": \"clip\", \"text_config\": {\"hidden_size\": 30, \"num_attention_heads\": 4}}",
                      VKP_ERR_INVALID, "text_config", "hidden_size");
  expect_config_error(dir, "{\"model_type\": \"clip\", \"vision_config\": {\"patch_size\": \"8\"}}", VKP_ERR_INVALID,
                      "vision_config", "patch_size");
  expect_config_error(dir, "{\"model_type\": \"clip_vision_model\", \"image_size\": 30, \"patch_size\": 8}", VKP_ERR_INVALID,
                      NULL, "image_size");
  expect_config_error(dir, "{\"model_type\": \"clip_text_model\", \"hidden_act\": \"swish\"}", VKP_ERR_UNSUPPORTED, NULL,
                      "hidden_act");
  expect_config_error(dir, "{\"model_type\": \"clip_text_model\", \"layer_norm_eps\": -1}", VKP_ERR_INVALID, NULL,
                      "layer_norm_eps");
  expect_config_error(dir, "{\"model_type\": \"clip_text_model\", \"eos_token_id\": [49407]}", VKP_ERR_INVALID, NULL,
                      "eos_token_id");
  expect_config_error(dir, "{\"model_type\": \"clip\", \"text_config\": [1]}", VKP_ERR_INVALID, NULL, "text_config");
  expect_config_error(dir, "{\"model_type\": \"clip\", \"text_config\": {\"attention_dropout\": 0.1}}",
                      VKP_ERR_UNSUPPORTED, "text_config", "attention_dropout");
  expect_config_error(dir, "{\"model_type\": \"clip\", \"vision_config\": {\"model_type\": \"clip_text_model\"}}",
                      VKP_ERR_INVALID, "vision_config", "model_type");
  expect_config_error(dir, "{\"model_type\": \"vit\"}", VKP_ERR_UNSUPPORTED, NULL, "model_type");
  expect_config_error(dir, "{\"hidden_size\": 32}", VKP_ERR_INVALID, NULL, "model_type");
  // The legacy text_config_dict overrides text_config (as transformers' CLIPConfig).
  char path[512];
  snprintf(path, sizeof path, "%s/config.json", dir);
  const char *json = "{\"model_type\": \"clip\", \"text_config\": {\"hidden_size\": 64, \"num_attention_heads\": 2}, "
                     "\"text_config_dict\": {\"hidden_size\": 96}, \"projection_dim\": 8, \"logit_scale_init_value\": 1.5}";
  const void *chunks[1] = {json};
  size_t len = strlen(json);
  if (vkp_file_write_atomic(path, chunks, &len, 1, &err)) fail_msg("%s", err.msg);
  vkp_clip_config cfg;
  if (vkp_clip_config_load(path, &cfg, &err)) fail_msg("%s", err.msg);
  assert_int_equal(cfg.text.hidden_size, 96);
  assert_int_equal(cfg.text.num_attention_heads, 2);
  assert_int_equal(cfg.projection_dim, 8);
  assert_true(cfg.logit_scale_init_value == 1.5f);
  assert_int_equal(cfg.vision.patch_size, 32);   // CLIPVisionConfig's default
  // The loader passes the error on, naming the file.
  vkp_clip *c = NULL;
  json = "{\"model_type\": \"clip_text_model\", \"num_attention_heads\": 7}";
  len = strlen(json);
  chunks[0] = json;
  if (vkp_file_write_atomic(path, chunks, &len, 1, &err)) fail_msg("%s", err.msg);
  assert_int_equal(vkp_clip_load(vkp_test_ctx(), dir, NULL, &c, &err), VKP_ERR_INVALID);
  assert_null(c);
  assert_non_null(strstr(err.msg, "num_attention_heads"));
}

// vkp_clip_new initialises as transformers; save + load gives the same model (logit_scale as a
// scalar, the config readable as a CLIPModel config).
static void test_new_save_load(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_clip_config cfg;
  if (vkp_clip_config_load(vkp_fixture_path("clip/model/config.json"), &cfg, &err)) fail_msg("%s", err.msg);
  vkp_clip *c;
  if (vkp_clip_new(ctx, &cfg, 7, &c, &err)) fail_msg("%s", err.msg);
  float ls, w[32 * 32], ln[32];
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(c->model, c->logit_scale->weight, &ls));
  assert_true(fabsf(ls - 2.6592f) < 1e-6f);
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(c->model, c->text.layers[1].q->weight, w));
  double ss = 0;
  for (int i = 0; i < 32 * 32; i++) ss += (double)w[i] * w[i];
  double std = sqrt(ss / (32 * 32)), want = pow(32, -0.5) * pow(4, -0.5);   // C^-0.5 (2 L)^-0.5
  printf("[new] q_proj std %.4f (transformers: %.4f)\n", std, want);
  assert_true(fabs(std - want) < 0.1 * want);
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(c->model, c->vision.post_ln->weight, ln));
  for (int i = 0; i < 32; i++) assert_true(ln[i] == 1.0f);
  VKP_ASSERT_OK(ctx, vkp_clip_clamp_logit_scale(c, 1.0f));
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(c->model, c->logit_scale->weight, &ls));
  assert_true(ls == 1.0f);

  char dir[256], path[512];
  vkp_test_dir_path(state, "saved", dir, sizeof dir);
  if (vkp_clip_save(c, dir, &err)) fail_msg("%s", err.msg);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  vkp_safetensors *sf;
  if (vkp_safetensors_open(path, &sf, &err)) fail_msg("%s", err.msg);
  assert_int_equal(vkp_safetensors_find(sf, "logit_scale")->ndim, 0);
  assert_non_null(vkp_safetensors_find(sf, "vision_model.pre_layrnorm.weight"));
  vkp_safetensors_free(sf);
  vkp_clip *c2 = load(dir, VKP_CLIP_TOWERS_ALL);
  assert_int_equal(c2->model->nparams, c->model->nparams);
  inputs x;
  inputs_open(&x);
  run r1, r2;
  forward(c, &x, true, true, NULL, &r1);
  forward(c2, &x, true, true, NULL, &r2);
  float *l1 = vkp_parity_read(r1.g, r1.out.logits_per_image), *l2 = vkp_parity_read(r2.g, r2.out.logits_per_image);
  assert_memory_equal(l1, l2, B * B * sizeof *l1);
  free(l1), free(l2);
  vkp_graph_free(r1.g);
  vkp_graph_free(r2.g);
  inputs_close(&x);
  vkp_clip_free(c2);
  vkp_clip_free(c);
}

// Block- and sequence-level PEFT on both towers: a zero-initialised bottleneck adapter leaves the
// outputs as they are; deep prompts in the text tower keep the pooling on the end token (shifted
// by the prompts); everything trains (a gradient for every trainable tensor).
static void test_block_methods(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_clip *c = load(vkp_fixture_path("clip/model"), VKP_CLIP_TOWERS_ALL);
  vkp_peft_config pc;
  vkp_peft_config_init(&pc, VKP_PEFT_BOTTLENECK);
  pc.bottleneck = 8;
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(c->model, &pc, 1, &a));
  assert_int_equal(vkp_peft_get_report(c->model).adapter_params, 4 * 2 * (8 * 32 + 8 + 32 * 8 + 32));   // 4 blocks, Houlsby
  inputs x;
  inputs_open(&x);
  run r;
  forward(c, &x, true, true, NULL, &r);
  printf("[bottleneck, zero-initialised]\n");
  vkp_check_output(r.g, r.out.logits_per_image, x.io, "", "logits_per_image", 1e-5);
  vkp_graph_free(r.g);

  vkp_peft_config_init(&pc, VKP_PEFT_VPT);
  pc.n_tokens = 3;
  pc.deep = true;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(c->model, &pc, 2, &a));
  vkp_peft_config_init(&pc, VKP_PEFT_PREFIX);
  pc.n_tokens = 2;
  pc.target_regex = strdup("vision_model\\..*self_attn");
  VKP_ASSERT_OK(ctx, vkp_peft_attach(c->model, &pc, 3, &a));
  vkp_peft_config_clear(&pc);

  train t;
  train_build(c, &t);
  assert_int_equal(t.out.text_last_hidden->shape[1], T + 3);
  assert_int_equal(t.out.vision_last_hidden->shape[1], 1 + 16 + 3);
  vkp_graph_output(t.g, t.out.text_last_hidden);
  vkp_graph_output(t.g, t.out.text_pooled);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(t.g));
  VKP_ASSERT_OK(ctx, vkp_clip_inputs_set(c, t.g, &t.in, x.pixels, x.ids, x.mask));
  VKP_ASSERT_OK(ctx, vkp_graph_run(t.g));
  float loss;
  VKP_ASSERT_OK(ctx, vkp_graph_read(t.g, t.out.loss, &loss, 4));
  printf("[bottleneck + deep prompts + vision prefix] loss %.5f, %d trainable tensors\n", loss, t.nt);
  assert_true(isfinite(loss));
  check_pooled_at_eos(c, t.g, &t.out, x.ids, 3);   // behind the 3 prompts
  for (int i = 0; i < t.nt; i++) {
    float *gd = vkp_parity_read(t.g, t.grads[i]);
    double sum = 0;
    for (int64_t k = 0; k < vkp_param_numel(t.tp[i]); k++) sum += fabs(gd[k]);
    if (!isfinite(sum)) fail_msg("gradient of %s is not finite", t.tp[i]->name);
    free(gd);
  }
  train_free(&t);
  inputs_close(&x);
  vkp_clip_free(c);
}

// Deep prompts on both towers: the tower without the adapter's first prompted block gets its
// prompts inserted, not written over its tokens. Prompting only the text blocks (where the text
// tower holds the first slot) and prompting every block give the same text embeddings.
static vkp_clip *with_prompts(const char *regex) {
  vkp_clip *c = load(vkp_fixture_path("clip/model"), VKP_CLIP_TOWERS_ALL);
  vkp_peft_config pc;
  vkp_peft_config_init(&pc, VKP_PEFT_VPT);
  pc.n_tokens = 2;
  pc.deep = true;
  pc.target_regex = regex ? strdup(regex) : NULL;
  vkp_adapter *a;
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_peft_attach(c->model, &pc, 5, &a));
  vkp_peft_config_clear(&pc);
  return c;
}

static void test_prompts_both_towers(void **state) {
  (void)state;
  vkp_clip *text_only = with_prompts("text_model\\.encoder\\.layers\\.[0-9]+"), *both = with_prompts(NULL);
  inputs x;
  inputs_open(&x);
  run r1, r2;
  forward(text_only, &x, false, true, NULL, &r1);
  forward(both, &x, true, true, NULL, &r2);
  assert_int_equal(r2.out.text_last_hidden->shape[1], T + 2);
  float *e1 = vkp_parity_read(r1.g, r1.out.text_embeds), *e2 = vkp_parity_read(r2.g, r2.out.text_embeds);
  printf("[deep prompts]\n");
  vkp_check_rel("text_embeds (prompts on every block vs on text blocks)", e2, e1, B * 16, 1e-6);
  size_t n;
  float *base = vkp_fixture_tensor(x.io, "text_embeds", &n);
  assert_true(vkp_rel_err(e1, base, n) > 1e-3);   // the prompts do change the output
  free(e1), free(e2), free(base);
  vkp_graph_free(r1.g);
  vkp_graph_free(r2.g);
  inputs_close(&x);
  vkp_clip_free(text_only);
  vkp_clip_free(both);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_base_forward),
      cmocka_unit_test(test_lora),
      cmocka_unit_test(test_text_only),
      cmocka_unit_test_setup_teardown(test_f16, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_bf16, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_legacy_pooling, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_bad_config, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_new_save_load, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_block_methods),
      cmocka_unit_test(test_prompts_both_towers),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
