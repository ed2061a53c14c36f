// clip_config.c — CLIP config.json (transformers' CLIPConfig / CLIPTextConfig / CLIPVisionConfig):
// defaults, reading with type checks, validation, writing.
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_clip.h"
#include "vkp_json.h"

#define ATTN_HEAD_DIM_MAX 1024  // largest head dim of the attention kernels (vkp_attention: wide kernel above 160)

// ---- keys: transformers' defaults, the ranges vkpeft accepts ----------------------------------

static const vkp_json_choice acts[] = {{"quick_gelu", VKP_CLIP_ACT_QUICK_GELU},
                                       {"gelu", VKP_CLIP_ACT_GELU},
                                       {"gelu_new", VKP_CLIP_ACT_GELU_TANH},
                                       {"gelu_pytorch_tanh", VKP_CLIP_ACT_GELU_TANH},
                                       {"relu", VKP_CLIP_ACT_RELU},
                                       {NULL, 0}};
static const vkp_json_choice text_type[] = {{"clip_text_model", 0}, {NULL, 0}};
static const vkp_json_choice vision_type[] = {{"clip_vision_model", 0}, {NULL, 0}};

#define NUL VKP_JSON_NULL_DEFAULT   // null is Python's None: the default applies
#define INT(key, member, l, h, d) {key, VKP_JSON_INT, F(member), .lo = l, .hi = h, .def = d, .flags = NUL}
#define FLOAT(key, member, l, d, fl) {key, VKP_JSON_FLOAT, F(member), .lo = l, .hi = INFINITY, .def = d, .flags = NUL | (fl)}
// Keys both towers have.
#define TOWER_FIELDS(hidden, inter, layers, heads)                                                             \
  INT("hidden_size", hidden_size, 1, 65536, hidden), INT("intermediate_size", intermediate_size, 1, 1 << 20, inter), \
      INT("num_hidden_layers", num_hidden_layers, 0, 65536, layers),                                            \
      INT("num_attention_heads", num_attention_heads, 1, 65536, heads),                                         \
      INT("projection_dim", projection_dim, 1, 65536, 512),                                                      \
      FLOAT("layer_norm_eps", layer_norm_eps, 0, 1e-5, VKP_JSON_OPEN_LO),                                       \
      FLOAT("initializer_range", initializer_range, 0, 0.02, 0), FLOAT("initializer_factor", initializer_factor, 0, 1, 0), \
      {"attention_dropout", VKP_JSON_FLOAT, F(attention_dropout), .lo = 0, .hi = 1, .flags = NUL},              \
      {"hidden_act", VKP_JSON_ENUM, F(hidden_act), .choices = acts, .def = VKP_CLIP_ACT_QUICK_GELU,             \
       .flags = NUL | VKP_JSON_UNSUPPORTED}

#define F(member) offsetof(vkp_clip_text_config, member)
static const vkp_json_field text_fields[] = {
    {"model_type", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = text_type, .flags = VKP_JSON_KEEP | NUL},
    INT("vocab_size", vocab_size, 1, 1 << 24, 49408),
    INT("max_position_embeddings", max_position_embeddings, 1, 1 << 20, 77),
    TOWER_FIELDS(512, 2048, 12, 8),
    INT("bos_token_id", bos_token_id, -1, 1 << 24, 49406),
    INT("eos_token_id", eos_token_id, -1, 1 << 24, 49407),
    INT("pad_token_id", pad_token_id, -1, 1 << 24, 1),
};
#undef F
#define F(member) offsetof(vkp_clip_vision_config, member)
static const vkp_json_field vision_fields[] = {
    {"model_type", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = vision_type, .flags = VKP_JSON_KEEP | NUL},
    INT("image_size", image_size, 1, 65536, 224),
    INT("patch_size", patch_size, 1, 65536, 32),
    INT("num_channels", num_channels, 1, 4096, 3),
    TOWER_FIELDS(768, 3072, 12, 12),
};
#undef F
// CLIPConfig's own keys.
#define F(member) offsetof(vkp_clip_config, member)
static const vkp_json_field clip_fields[] = {
    INT("projection_dim", projection_dim, 1, 65536, 512),
    {"logit_scale_init_value", VKP_JSON_FLOAT, F(logit_scale_init_value), .lo = -80, .hi = 80, .def = 2.6592, .flags = NUL},
    FLOAT("initializer_factor", initializer_factor, 0, 1, 0),
};
#undef F
#define COUNT(a) ((int)(sizeof a / sizeof *a))

void vkp_clip_text_config_default(vkp_clip_text_config *t) {
  memset(t, 0, sizeof *t);
  vkp_json_field_defaults(text_fields, COUNT(text_fields), t);
}

void vkp_clip_vision_config_default(vkp_clip_vision_config *v) {
  memset(v, 0, sizeof *v);
  vkp_json_field_defaults(vision_fields, COUNT(vision_fields), v);
}

void vkp_clip_config_default(vkp_clip_config *c) {
  memset(c, 0, sizeof *c);
  c->has_text = c->has_vision = true;
  c->has_text_projection = c->has_visual_projection = c->has_logit_scale = true;
  vkp_json_field_defaults(clip_fields, COUNT(clip_fields), c);
  vkp_clip_text_config_default(&c->text);
  vkp_clip_vision_config_default(&c->vision);
}

const char *vkp_clip_act_name(vkp_clip_act a) {
  for (int i = 0; acts[i].name; i++)
    if (acts[i].value == (int)a) return acts[i].name;
  return "?";
}

// ---- reading ----------------------------------------------------------------------------------

// The sub-config object `key`, with the legacy `<key>_dict` (older transformers) overriding its
// entries as CLIPConfig.__init__ does. *out: a new object (caller deletes).
static vkp_status sub_config(const cJSON *j, const char *key, const char *path, cJSON **out, vkp_error *err) {
  char dict_key[64];
  snprintf(dict_key, sizeof dict_key, "%s_dict", key);
  const cJSON *base = cJSON_GetObjectItemCaseSensitive(j, key), *over = cJSON_GetObjectItemCaseSensitive(j, dict_key);
  *out = NULL;
  if (base && !cJSON_IsNull(base) && !cJSON_IsObject(base))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be an object", path, key);
  if (over && !cJSON_IsNull(over) && !cJSON_IsObject(over))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be an object", path, dict_key);
  cJSON *merged = cJSON_IsObject(base) ? cJSON_Duplicate(base, true) : cJSON_CreateObject();
  if (!merged) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (const cJSON *e = cJSON_IsObject(over) ? over->child : NULL; e; e = e->next) {
    cJSON *copy = cJSON_Duplicate(e, true);
    bool ok = copy && (cJSON_GetObjectItemCaseSensitive(merged, e->string)
                           ? cJSON_ReplaceItemInObjectCaseSensitive(merged, e->string, copy)
                           : cJSON_AddItemToObject(merged, e->string, copy));
    if (!ok) {
      cJSON_Delete(copy);
      cJSON_Delete(merged);
      return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    }
  }
  *out = merged;
  return VKP_OK;
}

// Reads sub-config `key` of a CLIPConfig with `fields` into out.
static vkp_status read_sub(const cJSON *j, const char *key, const char *path, const vkp_json_field *fields, int n,
                           void *out, vkp_error *err) {
  cJSON *sub;
  VKP_TRY(sub_config(j, key, path, &sub, err));
  char where[1100];
  snprintf(where, sizeof where, "%s: %s", path, key);
  vkp_status st = vkp_json_read_fields(sub, where, fields, n, out, err);
  cJSON_Delete(sub);
  return st;
}

// True when `architectures` names a class ending in "WithProjection".
static bool with_projection(const cJSON *j) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
  for (const cJSON *e = cJSON_IsArray(a) ? a->child : NULL; e; e = e->next)
    if (cJSON_IsString(e) && strstr(e->valuestring, "WithProjection")) return true;
  return false;
}

static vkp_status parse(const cJSON *j, const char *path, vkp_clip_config *c, vkp_error *err) {
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
  if (!cJSON_IsString(mt))
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "%s: key 'model_type' must be \"clip\", \"clip_text_model\" or \"clip_vision_model\"", path);
  if (!strcmp(mt->valuestring, "clip")) {
    VKP_TRY(vkp_json_read_fields(j, path, clip_fields, COUNT(clip_fields), c, err));
    VKP_TRY(read_sub(j, "text_config", path, text_fields, COUNT(text_fields), &c->text, err));
    return read_sub(j, "vision_config", path, vision_fields, COUNT(vision_fields), &c->vision, err);
  }
  bool text = !strcmp(mt->valuestring, "clip_text_model"), vision = !strcmp(mt->valuestring, "clip_vision_model");
  if (!text && !vision)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                         "%s: key 'model_type' is \"%s\" (expected \"clip\", \"clip_text_model\" or \"clip_vision_model\")",
                         path, mt->valuestring);
  // A tower's own config (CLIPTextModel[WithProjection] / CLIPVisionModel[WithProjection]).
  c->has_text = c->has_text_projection = text;
  c->has_vision = c->has_visual_projection = vision;
  c->has_logit_scale = false;
  if (text) {
    VKP_TRY(vkp_json_read_fields(j, path, text_fields, COUNT(text_fields), &c->text, err));
    c->has_text_projection = with_projection(j);
    c->projection_dim = c->text.projection_dim;
    c->initializer_factor = c->text.initializer_factor;
  } else {
    VKP_TRY(vkp_json_read_fields(j, path, vision_fields, COUNT(vision_fields), &c->vision, err));
    c->has_visual_projection = with_projection(j);
    c->projection_dim = c->vision.projection_dim;
    c->initializer_factor = c->vision.initializer_factor;
  }
  return VKP_OK;
}

vkp_status vkp_clip_config_check(const vkp_clip_config *c, const char *where, vkp_error *err) {
  if (!c->has_text && !c->has_vision) return vkp_error_set(err, VKP_ERR_INVALID, "%s: neither a text nor a vision tower", where);
  struct {
    bool on;
    const char *pre;
    int hidden, heads, layers, inter;
    float eps, dropout;
  } tw[2] = {{c->has_text, "text_config.", c->text.hidden_size, c->text.num_attention_heads, c->text.num_hidden_layers,
              c->text.intermediate_size, c->text.layer_norm_eps, c->text.attention_dropout},
             {c->has_vision, "vision_config.", c->vision.hidden_size, c->vision.num_attention_heads,
              c->vision.num_hidden_layers, c->vision.intermediate_size, c->vision.layer_norm_eps,
              c->vision.attention_dropout}};
  for (int i = 0; i < 2; i++) {
    if (!tw[i].on) continue;
    if (tw[i].hidden < 1 || tw[i].heads < 1 || tw[i].inter < 1 || tw[i].layers < 0 || !(tw[i].eps > 0))
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: %shidden_size, num_attention_heads, intermediate_size and "
                           "layer_norm_eps must be positive", where, tw[i].pre);
    if (tw[i].hidden % tw[i].heads)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: %shidden_size %d is not divisible by %snum_attention_heads %d", where,
                           tw[i].pre, tw[i].hidden, tw[i].pre, tw[i].heads);
    if (tw[i].hidden / tw[i].heads > ATTN_HEAD_DIM_MAX)
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: %shidden_size / num_attention_heads = %d: head dims over %d are not supported",
                           where, tw[i].pre, tw[i].hidden / tw[i].heads, ATTN_HEAD_DIM_MAX);
    if (tw[i].dropout > 0)
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: %sattention_dropout %g: attention dropout is not supported (0 only)",
                           where, tw[i].pre, (double)tw[i].dropout);
    if (tw[i].layers > VKP_CLIP_MAX_LAYERS)
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: %snum_hidden_layers %d: at most %d are supported", where, tw[i].pre,
                           tw[i].layers, VKP_CLIP_MAX_LAYERS);
  }
  if (c->has_text && (c->text.vocab_size < 1 || c->text.max_position_embeddings < 1))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: text_config.vocab_size and max_position_embeddings must be positive", where);
  if (c->has_vision) {
    const vkp_clip_vision_config *v = &c->vision;
    if (v->image_size < 1 || v->patch_size < 1 || v->num_channels < 1)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: vision_config.image_size, patch_size and num_channels must be positive", where);
    if (v->image_size % v->patch_size)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: vision_config.image_size %d is not divisible by vision_config.patch_size %d",
                           where, v->image_size, v->patch_size);
  }
  if ((c->has_text_projection || c->has_visual_projection) && c->projection_dim < 1)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: projection_dim must be positive", where);
  return VKP_OK;
}

vkp_status vkp_clip_config_load(const char *path, vkp_clip_config *c, vkp_error *err) {
  cJSON *j = NULL;
  VKP_TRY(vkp_json_load_object(path, 16 << 20, &j, err));
  vkp_clip_config_default(c);
  vkp_status st = parse(j, path, c, err);
  cJSON_Delete(j);
  if (!st) st = vkp_clip_config_check(c, path, err);
  return st;
}

// ---- writing ----------------------------------------------------------------------------------

static void add_common(cJSON *o, int hidden, int inter, int layers, int heads, int proj, float eps, float range,
                       float factor, float dropout, vkp_clip_act act) {
  cJSON_AddNumberToObject(o, "attention_dropout", dropout);
  cJSON_AddNumberToObject(o, "hidden_size", hidden);
  cJSON_AddNumberToObject(o, "intermediate_size", inter);
  cJSON_AddNumberToObject(o, "num_hidden_layers", layers);
  cJSON_AddNumberToObject(o, "num_attention_heads", heads);
  cJSON_AddNumberToObject(o, "projection_dim", proj);
  cJSON_AddNumberToObject(o, "layer_norm_eps", eps);
  cJSON_AddStringToObject(o, "hidden_act", vkp_clip_act_name(act));
  cJSON_AddNumberToObject(o, "initializer_range", range);
  cJSON_AddNumberToObject(o, "initializer_factor", factor);
}

static void text_json(cJSON *o, const vkp_clip_text_config *t, int proj) {
  cJSON_AddStringToObject(o, "model_type", "clip_text_model");
  cJSON_AddNumberToObject(o, "vocab_size", t->vocab_size);
  cJSON_AddNumberToObject(o, "max_position_embeddings", t->max_position_embeddings);
  add_common(o, t->hidden_size, t->intermediate_size, t->num_hidden_layers, t->num_attention_heads, proj,
             t->layer_norm_eps, t->initializer_range, t->initializer_factor, t->attention_dropout, t->hidden_act);
  cJSON_AddNumberToObject(o, "bos_token_id", t->bos_token_id);
  cJSON_AddNumberToObject(o, "eos_token_id", t->eos_token_id);
  cJSON_AddNumberToObject(o, "pad_token_id", t->pad_token_id);
}

static void vision_json(cJSON *o, const vkp_clip_vision_config *v, int proj) {
  cJSON_AddStringToObject(o, "model_type", "clip_vision_model");
  cJSON_AddNumberToObject(o, "image_size", v->image_size);
  cJSON_AddNumberToObject(o, "patch_size", v->patch_size);
  cJSON_AddNumberToObject(o, "num_channels", v->num_channels);
  add_common(o, v->hidden_size, v->intermediate_size, v->num_hidden_layers, v->num_attention_heads, proj,
             v->layer_norm_eps, v->initializer_range, v->initializer_factor, v->attention_dropout, v->hidden_act);
}

vkp_status vkp_clip_config_save(const vkp_clip_config *c, const char *path, vkp_error *err) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
  if (c->has_text && c->has_vision) {
    cJSON_AddItemToArray(arch, cJSON_CreateString("CLIPModel"));
    cJSON_AddStringToObject(j, "model_type", "clip");
    cJSON_AddNumberToObject(j, "projection_dim", c->projection_dim);
    cJSON_AddNumberToObject(j, "logit_scale_init_value", c->logit_scale_init_value);
    cJSON_AddNumberToObject(j, "initializer_factor", c->initializer_factor);
    text_json(cJSON_AddObjectToObject(j, "text_config"), &c->text, c->text.projection_dim);
    vision_json(cJSON_AddObjectToObject(j, "vision_config"), &c->vision, c->vision.projection_dim);
  } else if (c->has_text) {
    cJSON_AddItemToArray(arch, cJSON_CreateString(c->has_text_projection ? "CLIPTextModelWithProjection" : "CLIPTextModel"));
    text_json(j, &c->text, c->projection_dim);
  } else {
    cJSON_AddItemToArray(arch,
                         cJSON_CreateString(c->has_visual_projection ? "CLIPVisionModelWithProjection" : "CLIPVisionModel"));
    vision_json(j, &c->vision, c->projection_dim);
  }
  vkp_status st = vkp_json_write_atomic(path, j, err);
  cJSON_Delete(j);
  return st;
}
