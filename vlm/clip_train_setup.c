// clip_train_setup.c — the CLIP trainer's config (defaults document), model construction
// (pretrained folder or random init), tokenizer, adapters and preprocessor_config.json.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_clip_eval.h"
#include "vkp_clip_train.h"
#include "vkp_config.h"
#include "vkp_json.h"
#include "vkp_peft.h"
#include "vkp_trainer.h"

const char vkp_clip_train_defaults[] =
    "{"
    "\"task\": \"clip\","
    "\"output_dir\": \"runs/clip\","
    "\"model\": {\"pretrained\": null, \"tokenizer\": null, \"f32\": false, \"base_dtype\": \"f32\","
    "  \"init\": {\"projection_dim\": 128, \"logit_scale_init_value\": 2.6592,"
    "    \"text_config\": {\"hidden_size\": 128, \"num_hidden_layers\": 4, \"num_attention_heads\": 4,"
    "                    \"intermediate_size\": 512, \"max_position_embeddings\": 32, \"hidden_act\": \"quick_gelu\"},"
    "    \"vision_config\": {\"image_size\": 32, \"patch_size\": 4, \"hidden_size\": 128,"
    "                      \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"intermediate_size\": 512,"
    "                      \"hidden_act\": \"quick_gelu\"}}},"
    "\"data\": {\"train\": \"emoji-noto\", \"val\": null, \"test\": null, \"names_from\": null,"
    "  \"val_fraction\": 0.1, \"split_seed\": 0, \"limit_train\": 0, \"template\": \"{}\", \"first_caption\": false,"
    "  \"max_length\": 0, \"alpha\": \"white\", \"crop\": \"center\","
    "  \"image_mean\": [0.48145466, 0.4578275, 0.40821073], \"image_std\": [0.26862954, 0.26130258, 0.27577711],"
    "  \"workers\": 2, \"augment\": {\"hflip\": 0.0, \"random_resized_crop\": false, \"scale_min\": 0.8}},"
    "\"peft\": [{\"method\": \"lora\", \"r\": 8, \"lora_alpha\": 16, \"target_modules\": [\"q_proj\", \"v_proj\"]}],"
    "\"train\": {\"objective\": \"contrastive\", \"optimizer\": \"adamw\", \"gradient_checkpointing\": false, \"lr\": 0.0005, \"weight_decay\": 0.1,"
    "  \"beta1\": 0.9, \"beta2\": 0.98, \"momentum\": 0.9, \"max_grad_norm\": 1.0, \"schedule\": \"cosine\","
    "  \"warmup_steps\": 0, \"warmup_ratio\": 0.05, \"batch_size\": 64, \"grad_accum\": 1, \"epochs\": 1,"
    "  \"max_steps\": 0, \"logit_scale_max\": 4.605170186, \"eval_every\": 0, \"eval_at_start\": false, \"eval_batch\": 128, \"val_limit\": 2000,"
    "  \"log_every\": 10, \"checkpoint_every\": 0, \"keep_last\": 2, \"seed\": 0, \"stop_after\": 0}"
    "}";

vkp_status vkp_clip_train_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err) {
  VKP_TRY(vkp_config_resolve(vkp_clip_train_defaults, path, sets, nsets, out, err));
  const char *where = path ? path : "config";
  const char *task = vkp_config_string(*out, "task");
  vkp_status st = VKP_OK;
  if (!task || strcmp(task, "clip")) st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'task' must be \"clip\" here", where);
  else if (!cJSON_IsArray(vkp_config_get(*out, "peft")))
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'peft' must be a list of adapters", where);
  else if (!cJSON_IsArray(vkp_config_get(*out, "data.image_mean")) || !cJSON_IsArray(vkp_config_get(*out, "data.image_std")))
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: keys 'data.image_mean' and 'data.image_std' must be lists of numbers", where);
  if (st) cJSON_Delete(*out), *out = NULL;
  return st;
}

// ---- model --------------------------------------------------------------------------------------

static vkp_status parse_act(const cJSON *cfg, const char *key, vkp_clip_act *out, vkp_error *err) {
  const char *s = vkp_config_string(cfg, key);
  static const struct { const char *name; vkp_clip_act act; } acts[] = {
      {"quick_gelu", VKP_CLIP_ACT_QUICK_GELU}, {"gelu", VKP_CLIP_ACT_GELU}, {"gelu_new", VKP_CLIP_ACT_GELU_TANH},
      {"gelu_pytorch_tanh", VKP_CLIP_ACT_GELU_TANH}, {"relu", VKP_CLIP_ACT_RELU}};
  for (size_t i = 0; s && i < sizeof acts / sizeof *acts; i++)
    if (!strcmp(s, acts[i].name)) return *out = acts[i].act, VKP_OK;
  return vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must be quick_gelu, gelu, gelu_new, gelu_pytorch_tanh or relu", key);
}

// The tower keys of model.init shared by both towers, read into the tower's fields.
static vkp_status tower_ints(const cJSON *cfg, const char *tower, int *hidden, int *layers, int *heads, int *inter,
                             vkp_clip_act *act, vkp_error *err) {
  struct { const char *key; int *dst; long lo, hi; } f[] = {
      {"hidden_size", hidden, 1, 8192}, {"num_hidden_layers", layers, 0, VKP_CLIP_MAX_LAYERS},
      {"num_attention_heads", heads, 1, 256}, {"intermediate_size", inter, 1, 65536}};
  char key[96];
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
    long v;
    snprintf(key, sizeof key, "model.init.%s.%s", tower, f[i].key);
    VKP_TRY(vkp_config_int(cfg, key, f[i].lo, f[i].hi, &v, err));
    *f[i].dst = (int)v;
  }
  snprintf(key, sizeof key, "model.init.%s.hidden_act", tower);
  return parse_act(cfg, key, act, err);
}

static vkp_status init_config(const cJSON *cfg, const vkp_clip_tokenizer *tok, vkp_clip_config *c, vkp_error *err) {
  vkp_clip_config_default(c);
  vkp_clip_text_config *t = &c->text;
  vkp_clip_vision_config *v = &c->vision;
  long proj, pos, size, patch;
  double ls;
  VKP_TRY(vkp_config_int(cfg, "model.init.projection_dim", 1, 8192, &proj, err));
  VKP_TRY(vkp_config_real(cfg, "model.init.logit_scale_init_value", -10, 10, &ls, err));
  VKP_TRY(tower_ints(cfg, "text_config", &t->hidden_size, &t->num_hidden_layers, &t->num_attention_heads,
                     &t->intermediate_size, &t->hidden_act, err));
  VKP_TRY(vkp_config_int(cfg, "model.init.text_config.max_position_embeddings", 2, 4096, &pos, err));
  VKP_TRY(tower_ints(cfg, "vision_config", &v->hidden_size, &v->num_hidden_layers, &v->num_attention_heads,
                     &v->intermediate_size, &v->hidden_act, err));
  VKP_TRY(vkp_config_int(cfg, "model.init.vision_config.image_size", 1, 4096, &size, err));
  VKP_TRY(vkp_config_int(cfg, "model.init.vision_config.patch_size", 1, 1024, &patch, err));
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  c->projection_dim = t->projection_dim = v->projection_dim = (int)proj;
  c->logit_scale_init_value = (float)ls;
  t->max_position_embeddings = (int)pos;
  t->vocab_size = info.vocab_size;
  t->bos_token_id = info.bos_id, t->eos_token_id = info.eos_id, t->pad_token_id = info.pad_id;
  v->image_size = (int)size, v->patch_size = (int)patch, v->num_channels = 3;
  if (size % patch) return vkp_error_set(err, VKP_ERR_INVALID, "config: model.init.vision_config.image_size %ld is not divisible by patch_size %ld", size, patch);
  return vkp_clip_config_check(c, "config model.init", err);
}

vkp_status vkp_clip_train_model(vkp_ctx *ctx, const cJSON *cfg, vkp_clip **model, vkp_clip_tokenizer **tok,
                                int *seq_len, vkp_error *err) {
  *model = NULL;
  *tok = NULL;
  const char *pre = vkp_config_string(cfg, "model.pretrained"), *tpath = vkp_config_string(cfg, "model.tokenizer");
  const char *objective = vkp_config_string(cfg, "train.objective");
  bool probe = objective && !strcmp(objective, "linear_probe");
  long max_len, seed;
  VKP_TRY(vkp_config_int(cfg, "data.max_length", 0, 4096, &max_len, err));
  VKP_TRY(vkp_config_int(cfg, "train.seed", 0, 1l << 40, &seed, err));
  vkp_error e = {0};
  if (tpath ? vkp_clip_tokenizer_load(tpath, tok, &e) : vkp_clip_tokenizer_for_model(pre, tok, &e))
    return vkp_error_set(err, e.status, "config: %s: %s", tpath ? "model.tokenizer" : "model.pretrained", e.msg);
  vkp_status st;
  if (pre) {
    vkp_clip_load_opts o = {.f32 = vkp_config_bool(cfg, "model.f32")};
    st = vkp_clip_load(ctx, pre, &o, model, err);
  } else {
    vkp_clip_config c;
    st = init_config(cfg, *tok, &c, err);
    if (!st) st = vkp_clip_new(ctx, &c, (uint64_t)seed, model, err);
  }
  const vkp_clip_config *c = *model ? &(*model)->cfg : NULL;
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(*tok, &info);
  if (!st && probe && !(c->has_vision && c->has_visual_projection))
    st = vkp_error_set(err, VKP_ERR_INVALID, "config: model.pretrained: '%s' has no vision tower with a projection (linear_probe needs image embeddings)", pre);
  if (!st && !probe && !(c->has_text && c->has_vision && c->has_text_projection && c->has_visual_projection && c->has_logit_scale))
    st = vkp_error_set(err, VKP_ERR_INVALID, "config: model.pretrained: '%s' is not a CLIPModel with both towers, both "
                       "projections and logit_scale (contrastive training needs them)", pre);
  if (!st && c->has_vision && c->vision.num_channels != 3)
    st = vkp_error_set(err, VKP_ERR_UNSUPPORTED, "config: model.pretrained: '%s' takes %d-channel images; the CLIP trainer feeds RGB",
                       pre, c->vision.num_channels);
  if (!st && c->has_text && info.vocab_size > c->text.vocab_size)
    st = vkp_error_set(err, VKP_ERR_SHAPE, "config: model.tokenizer: the tokenizer has %d tokens, the model's vocabulary %d",
                       info.vocab_size, c->text.vocab_size);
  if (!st) {
    int positions = c->has_text ? c->text.max_position_embeddings : VKP_CLIP_CONTEXT_LENGTH;
    *seq_len = max_len > 0 ? (int)max_len : positions < VKP_CLIP_CONTEXT_LENGTH ? positions : VKP_CLIP_CONTEXT_LENGTH;
    if (*seq_len < 2 || *seq_len > positions)
      st = vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.max_length' must be in [2, %d] (the text tower's positions)", positions);
  }
  if (st) {
    vkp_clip_free(*model), *model = NULL;
    vkp_clip_tokenizer_free(*tok), *tok = NULL;
  }
  return st;
}

vkp_status vkp_clip_coop_reserve(const cJSON *peft_list, const vkp_clip_tokenizer *tok, int *tokens, vkp_error *err) {
  *tokens = 0;
  int i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, peft_list) {
    char where[64];
    snprintf(where, sizeof where, "config peft[%d]", i++);
    vkp_peft_config pc;
    VKP_TRY(vkp_peft_config_from_entry(item, where, &pc, err));
    vkp_status st = vkp_clip_coop_resolve(tok, &pc, where, err);
    if (!st && pc.method == VKP_PEFT_COOP) *tokens += pc.n_ctx;
    vkp_peft_config_clear(&pc);
    VKP_TRY(st);
  }
  return VKP_OK;
}

typedef struct attach_ctx {
  const vkp_clip_tokenizer *tok;
  const char *extra_save;
} attach_ctx;

// Entry i before attaching: CoOp's ctx_init phrase -> ids; the first gets extra_save in modules_to_save.
static vkp_status adjust_entry(void *user, int i, vkp_peft_config *pc, const char *where, vkp_error *err) {
  const attach_ctx *a = user;
  if (a->tok) VKP_TRY(vkp_clip_coop_resolve(a->tok, pc, where, err));
  bool listed = false;
  for (int k = 0; a->extra_save && i == 0 && k < pc->n_modules_to_save; k++) listed |= !strcmp(pc->modules_to_save[k], a->extra_save);
  if (a->extra_save && i == 0 && !listed && pc->n_modules_to_save < VKP_PEFT_MAX_TARGETS)
    pc->modules_to_save[pc->n_modules_to_save++] = strdup(a->extra_save);
  return VKP_OK;
}

vkp_status vkp_clip_train_attach(vkp_clip *c, const cJSON *peft_list, const vkp_clip_tokenizer *tok, uint64_t seed,
                                 const char *extra_save, vkp_error *err) {
  if (extra_save && cJSON_GetArraySize(peft_list) == 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'peft' must hold an adapter (e.g. [{\"method\": \"linear_probe\"}])");
  attach_ctx a = {.tok = tok, .extra_save = extra_save};
  return vkp_trainer_attach(c->model, peft_list, seed, adjust_entry, &a, err);
}

vkp_status vkp_clip_preprocess_save(const vkp_data_transform *t, int channels, const char *dir, vkp_error *err) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  cJSON_AddStringToObject(j, "image_processor_type", "CLIPImageProcessor");
  cJSON_AddBoolToObject(j, "do_resize", true);
  cJSON *size = cJSON_AddObjectToObject(j, "size");
  cJSON_AddNumberToObject(size, "shortest_edge", t->out_w);
  cJSON_AddNumberToObject(j, "resample", 2);   // bilinear (PIL): what vkp_data_transform does
  cJSON_AddBoolToObject(j, "do_center_crop", t->crop == VKP_CROP_CENTER);
  cJSON *crop = cJSON_AddObjectToObject(j, "crop_size");
  cJSON_AddNumberToObject(crop, "height", t->out_h);
  cJSON_AddNumberToObject(crop, "width", t->out_w);
  cJSON_AddBoolToObject(j, "do_rescale", true);
  cJSON_AddNumberToObject(j, "rescale_factor", 1.0 / 255.0);
  cJSON_AddBoolToObject(j, "do_normalize", true);
  cJSON_AddBoolToObject(j, "do_convert_rgb", channels == 3);
  cJSON *mean = cJSON_AddArrayToObject(j, "image_mean"), *sd = cJSON_AddArrayToObject(j, "image_std");
  for (int c = 0; c < channels; c++) {
    cJSON_AddItemToArray(mean, cJSON_CreateNumber(t->mean[c]));
    cJSON_AddItemToArray(sd, cJSON_CreateNumber(t->std[c] != 0 ? t->std[c] : 1.0));
  }
  char path[1200];
  snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
  vkp_status st = vkp_json_write_atomic(path, j, err);
  cJSON_Delete(j);
  return st;
}
