// unet_config.c — diffusers' UNet2DConditionModel config.json: defaults, reading with type checks
// (keys that are an int or a per-block list included), validation, writing.
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_json.h"
#include "vkp_unet.h"

// ---- scalar keys: diffusers' defaults, the ranges vkpeft accepts --------------------------------

static const vkp_json_choice class_names[] = {{"UNet2DConditionModel", 0}, {NULL, 0}};
static const vkp_json_choice acts[] = {{"silu", 0}, {"swish", 0}, {NULL, 0}};
static const vkp_json_choice positional[] = {{"positional", 0}, {NULL, 0}};
static const vkp_json_choice default_only[] = {{"default", 0}, {NULL, 0}};

#define NUL VKP_JSON_NULL_DEFAULT
#define F(member) offsetof(vkp_unet_config, member)
static const vkp_json_field unet_fields[] = {
    {"_class_name", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = class_names, .flags = VKP_JSON_KEEP | VKP_JSON_UNSUPPORTED},
    {"in_channels", VKP_JSON_INT, F(in_channels), .lo = 1, .hi = 4096, .def = 4},
    {"out_channels", VKP_JSON_INT, F(out_channels), .lo = 1, .hi = 4096, .def = 4},
    {"center_input_sample", VKP_JSON_BOOL, F(center_input_sample), .def = 0},
    {"flip_sin_to_cos", VKP_JSON_BOOL, F(flip_sin_to_cos), .def = 1},
    {"freq_shift", VKP_JSON_FLOAT, F(freq_shift), .lo = -65536, .hi = 65536, .def = 0},
    {"downsample_padding", VKP_JSON_INT, F(downsample_padding), .lo = 0, .hi = 1, .def = 1},
    {"mid_block_scale_factor", VKP_JSON_FLOAT, F(mid_block_scale_factor), .lo = 0, .hi = INFINITY, .def = 1,
     .flags = VKP_JSON_OPEN_LO},
    {"act_fn", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = acts, .flags = VKP_JSON_KEEP | VKP_JSON_UNSUPPORTED},
    {"norm_num_groups", VKP_JSON_INT, F(norm_num_groups), .lo = 1, .hi = 4096, .def = 32},
    {"norm_eps", VKP_JSON_FLOAT, F(norm_eps), .lo = 0, .hi = 1, .def = 1e-5, .flags = VKP_JSON_OPEN_LO},
    {"use_linear_projection", VKP_JSON_BOOL, F(use_linear_projection), .def = 0},
    {"upcast_attention", VKP_JSON_BOOL, F(upcast_attention), .def = 0},
    {"time_embedding_type", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = positional, .flags = VKP_JSON_KEEP | VKP_JSON_UNSUPPORTED},
    {"resnet_time_scale_shift", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = default_only,
     .flags = VKP_JSON_KEEP | VKP_JSON_UNSUPPORTED},
    {"attention_type", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = default_only, .flags = VKP_JSON_KEEP | VKP_JSON_UNSUPPORTED},
    {"time_embedding_dim", VKP_JSON_INT, F(time_embed_dim), .lo = 2, .hi = 65536, .def = 0, .flags = NUL},
    {"conv_in_kernel", VKP_JSON_INT, F(conv_in_kernel), .lo = 1, .hi = 15, .def = 3},
    {"conv_out_kernel", VKP_JSON_INT, F(conv_out_kernel), .lo = 1, .hi = 15, .def = 3},
};
#undef F
#define COUNT(a) ((int)(sizeof a / sizeof *a))

// Keys that switch on parts of UNet2DConditionModel vkpeft does not implement: they must be absent,
// null, or (booleans) false. Keys that only configure those parts (addition_time_embed_dim, ...)
// or blocks vkpeft does not build (resnet_skip_time_act, resnet_out_scale_factor: the Resnet* block
// types only) are ignored, as diffusers ignores them here.
static const char *const must_be_null[] = {
    "class_embed_type", "addition_embed_type", "encoder_hid_dim", "encoder_hid_dim_type", "num_class_embeds",
    "time_cond_proj_dim", "timestep_post_act", "time_embedding_act_fn", "cross_attention_norm",
    "reverse_transformer_layers_per_block", NULL};
static const char *const must_be_false[] = {"dual_cross_attention", "class_embeddings_concat", NULL};

void vkp_unet_config_default(vkp_unet_config *c) {
  memset(c, 0, sizeof *c);
  vkp_json_field_defaults(unet_fields, COUNT(unet_fields), c);
  static const int boc[4] = {320, 640, 1280, 1280};
  c->n_blocks = 4;
  c->sample_size = 64;
  c->mid_block = true;
  for (int i = 0; i < 4; i++) {
    c->block_out_channels[i] = boc[i];
    c->down_cross[i] = i < 3;     // CrossAttnDownBlock2D x3, DownBlock2D
    c->up_cross[i] = i > 0;       // UpBlock2D, CrossAttnUpBlock2D x3
    c->layers_per_block[i] = 2;
    c->heads[i] = 8;              // attention_head_dim 8
    c->cross_attention_dim[i] = 1280;
    c->transformer_layers[i] = 1;
  }
}

// ---- list keys ----------------------------------------------------------------------------------

static bool is_int(const cJSON *v, int lo, int hi) {
  return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= lo && v->valuedouble <= hi;
}

// `key`: an int (broadcast to n entries, if allow_int) or a list of n ints in [lo, hi]. Missing or
// null: `def` for every entry (def < 0: the key is required).
static vkp_status int_list(const cJSON *j, const char *where, const char *key, int n, int lo, int hi, bool allow_int,
                           int def, int *out, vkp_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!v || cJSON_IsNull(v)) {
    if (def < 0) return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' is missing", where, key);
    for (int i = 0; i < n; i++) out[i] = def;
    return VKP_OK;
  }
  if (allow_int && is_int(v, lo, hi)) {
    for (int i = 0; i < n; i++) out[i] = (int)v->valuedouble;
    return VKP_OK;
  }
  if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == n) {
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
      if (cJSON_IsArray(e))
        return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key '%s': nested lists (asymmetric UNets) are not supported", where, key);
      if (!is_int(e, lo, hi))
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' entry %d must be an integer in [%d, %d], not %s", where, key,
                             i, lo, hi, vkp_json_kind(e));
      out[i] = (int)e->valuedouble;
    }
    return VKP_OK;
  }
  if (cJSON_IsArray(v))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' has %d entries; block_out_channels has %d", where, key,
                         cJSON_GetArraySize(v), n);
  return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be %san integer list (%d entries, each in [%d, %d]), not %s",
                       where, key, allow_int ? "an integer or " : "", n, lo, hi, vkp_json_kind(v));
}

static vkp_status check_null_keys(const cJSON *j, const char *where, vkp_error *err) {
  for (int i = 0; must_be_null[i]; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, must_be_null[i]);
    if (v && !cJSON_IsNull(v))
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key '%s' is set (%s); only null is supported", where, must_be_null[i],
                           vkp_json_kind(v));
  }
  for (int i = 0; must_be_false[i]; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, must_be_false[i]);
    if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v))
      return vkp_error_set(err, cJSON_IsTrue(v) ? VKP_ERR_UNSUPPORTED : VKP_ERR_INVALID,
                           "%s: key '%s' must be false%s, not %s", where, must_be_false[i],
                           cJSON_IsTrue(v) ? " (true is not supported)" : "", vkp_json_kind(v));
  }
  // only_cross_attention: false or a list of falses.
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "only_cross_attention");
  bool bad = v && !cJSON_IsNull(v) && !cJSON_IsFalse(v);
  if (bad && cJSON_IsArray(v)) {
    bad = false;
    for (const cJSON *e = v->child; e; e = e->next) bad = bad || !cJSON_IsFalse(e);
  }
  if (bad) return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key 'only_cross_attention' must be false (or a list of false)", where);
  v = cJSON_GetObjectItemCaseSensitive(j, "dropout");
  if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
    return vkp_error_set(err, cJSON_IsNumber(v) ? VKP_ERR_UNSUPPORTED : VKP_ERR_INVALID,
                         "%s: key 'dropout' must be 0 (dropout in the UNet is not supported), not %s", where,
                         cJSON_IsNumber(v) ? "a positive number" : vkp_json_kind(v));
  return VKP_OK;
}

static vkp_status check(const vkp_unet_config *c, const char *where, const char *heads_key, vkp_error *err);

static vkp_status parse(const cJSON *j, const char *where, vkp_unet_config *c, vkp_error *err) {
  vkp_unet_config_default(c);
  VKP_TRY(vkp_json_read_fields(j, where, unet_fields, COUNT(unet_fields), c, err));
  VKP_TRY(check_null_keys(j, where, err));
  // block_out_channels decides the number of blocks.
  const cJSON *boc = cJSON_GetObjectItemCaseSensitive(j, "block_out_channels");
  if (boc) {
    if (!cJSON_IsArray(boc) || cJSON_GetArraySize(boc) < 1 || cJSON_GetArraySize(boc) > VKP_UNET_MAX_BLOCKS)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'block_out_channels' must be a list of 1 to %d integers, not %s", where,
                           VKP_UNET_MAX_BLOCKS, cJSON_IsArray(boc) ? "a list of that length" : vkp_json_kind(boc));
    c->n_blocks = cJSON_GetArraySize(boc);
    VKP_TRY(int_list(j, where, "block_out_channels", c->n_blocks, 1, 65536, false, -1, c->block_out_channels, err));
  }
  int n = c->n_blocks, down[VKP_UNET_MAX_BLOCKS], up[VKP_UNET_MAX_BLOCKS];
  for (int i = 0; i < n; i++) down[i] = c->down_cross[i], up[i] = c->up_cross[i];   // SD's, when n is 4
  static const char *const down_kinds[2] = {"DownBlock2D", "CrossAttnDownBlock2D"};
  static const char *const up_kinds[2] = {"UpBlock2D", "CrossAttnUpBlock2D"};
  VKP_TRY(vkp_sd_block_types(j, where, "down_block_types", n, down_kinds, 2, n == 4, down, err));
  VKP_TRY(vkp_sd_block_types(j, where, "up_block_types", n, up_kinds, 2, n == 4, up, err));
  for (int i = 0; i < n; i++) c->down_cross[i] = down[i] == 1, c->up_cross[i] = up[i] == 1;
  const cJSON *mid = cJSON_GetObjectItemCaseSensitive(j, "mid_block_type");
  if (mid && cJSON_IsNull(mid)) c->mid_block = false;
  else if (mid && !cJSON_IsString(mid))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'mid_block_type' must be a string or null, not %s", where, vkp_json_kind(mid));
  else if (mid && strcmp(mid->valuestring, "UNetMidBlock2DCrossAttn"))
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key 'mid_block_type': \"%s\" is not supported (UNetMidBlock2DCrossAttn or null)",
                         where, mid->valuestring);
  VKP_TRY(int_list(j, where, "layers_per_block", n, 1, VKP_UNET_MAX_LAYERS, true, 2, c->layers_per_block, err));
  VKP_TRY(int_list(j, where, "cross_attention_dim", n, 1, 65536, true, 1280, c->cross_attention_dim, err));
  VKP_TRY(int_list(j, where, "transformer_layers_per_block", n, 1, VKP_SD_MAX_TLAYERS, true, 1, c->transformer_layers, err));
  // Heads: num_attention_heads when set, else attention_head_dim (diffusers' `num_attention_heads or
  // attention_head_dim`: the old key holds the head count). Current diffusers refuses a non-null
  // num_attention_heads in this class; vkpeft reads it with its intended meaning.
  const cJSON *nh = cJSON_GetObjectItemCaseSensitive(j, "num_attention_heads");
  const char *heads_key = nh && !cJSON_IsNull(nh) ? "num_attention_heads" : "attention_head_dim";
  VKP_TRY(int_list(j, where, heads_key, n, 1, 65536, true, 8, c->heads, err));
  const cJSON *ss = cJSON_GetObjectItemCaseSensitive(j, "sample_size");
  if (cJSON_IsArray(ss)) ss = ss->child;
  c->sample_size = ss && cJSON_IsNumber(ss) ? (int)ss->valuedouble : 0;
  return check(c, where, heads_key, err);
}

// A config given as a JSON object (a training config's model.init): the defaults under its keys.
vkp_status vkp_unet_config_from_json(const cJSON *j, const char *where, vkp_unet_config *c, vkp_error *err) {
  if (!cJSON_IsObject(j)) return vkp_error_set(err, VKP_ERR_INVALID, "%s: must be a JSON object (the keys of diffusers' config.json)", where);
  return parse(j, where, c, err);
}

vkp_status vkp_unet_config_load(const char *path, vkp_unet_config *c, vkp_error *err) {
  cJSON *j = NULL;
  VKP_TRY(vkp_json_load_object(path, 1 << 20, &j, err));
  vkp_status st = parse(j, path, c, err);
  cJSON_Delete(j);
  return st;
}

// ---- validation ---------------------------------------------------------------------------------

// heads_key: the key the head counts came from (num_attention_heads or attention_head_dim).
static vkp_status check(const vkp_unet_config *c, const char *where, const char *heads_key, vkp_error *err) {
  int n = c->n_blocks;
  if (n < 1 || n > VKP_UNET_MAX_BLOCKS)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'block_out_channels' must have 1 to %d entries", where, VKP_UNET_MAX_BLOCKS);
  if (c->conv_in_kernel % 2 == 0 || c->conv_out_kernel % 2 == 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be odd", where, c->conv_in_kernel % 2 == 0 ? "conv_in_kernel" : "conv_out_kernel");
  if (c->time_embed_dim < 0 || c->time_embed_dim == 1)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'time_embedding_dim' must be at least 2", where);
  if (c->block_out_channels[0] < 2 || (float)(c->block_out_channels[0] / 2) - c->freq_shift == 0.0f)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'freq_shift' %g makes the timestep embedding of %d channels undefined",
                         where, (double)c->freq_shift, c->block_out_channels[0]);
  int G = c->norm_num_groups;
  for (int i = 0; i < n; i++) {
    int C = c->block_out_channels[i];
    if (c->layers_per_block[i] < 1 || c->layers_per_block[i] > VKP_UNET_MAX_LAYERS)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'layers_per_block' entry %d must be in [1, %d]", where, i, VKP_UNET_MAX_LAYERS);
    if (c->transformer_layers[i] < 1 || c->transformer_layers[i] > VKP_SD_MAX_TLAYERS)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'transformer_layers_per_block' entry %d must be in [1, %d]", where, i,
                           VKP_SD_MAX_TLAYERS);
    bool attends = c->down_cross[i] || c->up_cross[n - 1 - i] || (i == n - 1 && c->mid_block);
    if (attends) {
      int H = c->heads[i];
      if (H < 1 || C % H)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' entry %d: %d heads do not divide the %d channels of block %d",
                             where, heads_key, i, H, C, i);
      if (C / H > VKP_SD_ATTN_DMAX)
        return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key '%s' entry %d: head dim %d (%d channels / %d heads) is over %d",
                             where, heads_key, i, C / H, C, H, VKP_SD_ATTN_DMAX);
    }
  }
  // The skip connections: simulate the stack of down-block outputs and check each up-block resnet
  // pops what diffusers' channel formula expects; and GroupNorm's groups divide every width.
  int stack[1 + VKP_UNET_MAX_BLOCKS * (VKP_UNET_MAX_LAYERS + 1)], top = 0;
  stack[top++] = c->block_out_channels[0];
  int prev = c->block_out_channels[0];
  for (int i = 0; i < n; i++) {
    int C = c->block_out_channels[i];
    for (int l = 0; l < c->layers_per_block[i]; l++) {
      int in = l ? C : prev;
      if (in % G || C % G)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'norm_num_groups' %d does not divide %d channels (down block %d)", where, G,
                             in % G ? in : C, i);
      stack[top++] = C;
    }
    if (i < n - 1) stack[top++] = C;
    prev = C;
  }
  for (int i = 0; i < n; i++) {
    int r = n - 1 - i, out = c->block_out_channels[r], in = c->block_out_channels[r > 0 ? r - 1 : 0];
    int prev_out = c->block_out_channels[i ? r + 1 : r], nres = c->layers_per_block[r] + 1;
    for (int l = 0; l < nres; l++) {
      int skip = l == nres - 1 ? in : out, x = l ? out : prev_out;
      if (top == 0 || stack[--top] != skip)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'layers_per_block': up block %d's skip connections do not match the down blocks",
                             where, i);
      if ((x + skip) % G || out % G)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'norm_num_groups' %d does not divide %d channels (up block %d)", where, G,
                             (x + skip) % G ? x + skip : out, i);
    }
  }
  return VKP_OK;
}

vkp_status vkp_unet_config_check(const vkp_unet_config *c, const char *where, vkp_error *err) {
  return check(c, where, "attention_head_dim", err);
}

// ---- writing ------------------------------------------------------------------------------------

static cJSON *ints(const int *v, int n) { return cJSON_CreateIntArray(v, n); }

vkp_status vkp_unet_config_save(const vkp_unet_config *c, const char *path, vkp_error *err) {
  int n = c->n_blocks;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "_class_name", "UNet2DConditionModel");
  cJSON_AddStringToObject(j, "act_fn", "silu");
  cJSON_AddItemToObject(j, "attention_head_dim", ints(c->heads, n));
  cJSON_AddItemToObject(j, "block_out_channels", ints(c->block_out_channels, n));
  cJSON_AddBoolToObject(j, "center_input_sample", c->center_input_sample);
  cJSON_AddNumberToObject(j, "conv_in_kernel", c->conv_in_kernel);
  cJSON_AddNumberToObject(j, "conv_out_kernel", c->conv_out_kernel);
  cJSON_AddItemToObject(j, "cross_attention_dim", ints(c->cross_attention_dim, n));
  cJSON *down = cJSON_AddArrayToObject(j, "down_block_types"), *up = cJSON_AddArrayToObject(j, "up_block_types");
  for (int i = 0; i < n; i++) {
    cJSON_AddItemToArray(down, cJSON_CreateString(c->down_cross[i] ? "CrossAttnDownBlock2D" : "DownBlock2D"));
    cJSON_AddItemToArray(up, cJSON_CreateString(c->up_cross[i] ? "CrossAttnUpBlock2D" : "UpBlock2D"));
  }
  cJSON_AddNumberToObject(j, "downsample_padding", c->downsample_padding);
  cJSON_AddBoolToObject(j, "flip_sin_to_cos", c->flip_sin_to_cos);
  cJSON_AddNumberToObject(j, "freq_shift", c->freq_shift);
  cJSON_AddNumberToObject(j, "in_channels", c->in_channels);
  cJSON_AddItemToObject(j, "layers_per_block", ints(c->layers_per_block, n));
  cJSON_AddNumberToObject(j, "mid_block_scale_factor", c->mid_block_scale_factor);
  if (c->mid_block) cJSON_AddStringToObject(j, "mid_block_type", "UNetMidBlock2DCrossAttn");
  else cJSON_AddNullToObject(j, "mid_block_type");
  cJSON_AddNumberToObject(j, "norm_eps", c->norm_eps);
  cJSON_AddNumberToObject(j, "norm_num_groups", c->norm_num_groups);
  cJSON_AddNullToObject(j, "num_attention_heads");
  cJSON_AddNumberToObject(j, "out_channels", c->out_channels);
  cJSON_AddNumberToObject(j, "sample_size", c->sample_size);
  if (c->time_embed_dim) cJSON_AddNumberToObject(j, "time_embedding_dim", c->time_embed_dim);
  cJSON_AddItemToObject(j, "transformer_layers_per_block", ints(c->transformer_layers, n));
  cJSON_AddBoolToObject(j, "upcast_attention", c->upcast_attention);
  cJSON_AddBoolToObject(j, "use_linear_projection", c->use_linear_projection);
  vkp_status st = vkp_json_write_atomic(path, j, err);
  cJSON_Delete(j);
  return st;
}
