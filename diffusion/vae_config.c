// vae_config.c — diffusers' AutoencoderKL config.json: defaults, reading with type checks,
// validation, writing.
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_json.h"
#include "vkp_vae.h"

static const vkp_json_choice class_names[] = {{"AutoencoderKL", 0}, {NULL, 0}};
static const vkp_json_choice acts[] = {{"silu", 0}, {"swish", 0}, {NULL, 0}};

#define F(member) offsetof(vkp_vae_config, member)
static const vkp_json_field vae_fields[] = {
    {"_class_name", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = class_names, .flags = VKP_JSON_KEEP | VKP_JSON_UNSUPPORTED},
    {"in_channels", VKP_JSON_INT, F(in_channels), .lo = 1, .hi = 4096, .def = 3},
    {"out_channels", VKP_JSON_INT, F(out_channels), .lo = 1, .hi = 4096, .def = 3},
    {"latent_channels", VKP_JSON_INT, F(latent_channels), .lo = 1, .hi = 4096, .def = 4},
    {"layers_per_block", VKP_JSON_INT, F(layers_per_block), .lo = 1, .hi = VKP_VAE_MAX_LAYERS, .def = 1},
    {"act_fn", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = acts, .flags = VKP_JSON_KEEP | VKP_JSON_UNSUPPORTED},
    {"norm_num_groups", VKP_JSON_INT, F(norm_num_groups), .lo = 1, .hi = 4096, .def = 32},
    {"scaling_factor", VKP_JSON_FLOAT, F(scaling_factor), .lo = 0, .hi = INFINITY, .def = 0.18215, .flags = VKP_JSON_OPEN_LO},
    {"use_quant_conv", VKP_JSON_BOOL, F(use_quant_conv), .def = 1},
    {"use_post_quant_conv", VKP_JSON_BOOL, F(use_post_quant_conv), .def = 1},
    {"mid_block_add_attention", VKP_JSON_BOOL, F(mid_block_add_attention), .def = 1},
};
#undef F
#define COUNT(a) ((int)(sizeof a / sizeof *a))

void vkp_vae_config_default(vkp_vae_config *c) {
  memset(c, 0, sizeof *c);
  vkp_json_field_defaults(vae_fields, COUNT(vae_fields), c);
  c->n_blocks = 1;
  c->block_out_channels[0] = 64;
  c->sample_size = 32;
}

static vkp_status parse(const cJSON *j, const char *where, vkp_vae_config *c, vkp_error *err) {
  vkp_vae_config_default(c);
  VKP_TRY(vkp_json_read_fields(j, where, vae_fields, COUNT(vae_fields), c, err));
  const cJSON *boc = cJSON_GetObjectItemCaseSensitive(j, "block_out_channels");
  if (boc) {
    int n = cJSON_IsArray(boc) ? cJSON_GetArraySize(boc) : 0;
    if (n < 1 || n > VKP_VAE_MAX_BLOCKS)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'block_out_channels' must be a list of 1 to %d integers, not %s", where,
                           VKP_VAE_MAX_BLOCKS, cJSON_IsArray(boc) ? "a list of that length" : vkp_json_kind(boc));
    c->n_blocks = n;
    int i = 0;
    for (const cJSON *e = boc->child; e; e = e->next, i++) {
      if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 1 || e->valuedouble > 65536)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'block_out_channels' entry %d must be an integer in [1, 65536], not %s",
                             where, i, vkp_json_kind(e));
      c->block_out_channels[i] = (int)e->valuedouble;
    }
  }
  int kind[VKP_VAE_MAX_BLOCKS];
  static const char *const down_kind[1] = {"DownEncoderBlock2D"}, *const up_kind[1] = {"UpDecoderBlock2D"};
  VKP_TRY(vkp_sd_block_types(j, where, "down_block_types", c->n_blocks, down_kind, 1, c->n_blocks == 1, kind, err));
  VKP_TRY(vkp_sd_block_types(j, where, "up_block_types", c->n_blocks, up_kind, 1, c->n_blocks == 1, kind, err));
  const cJSON *sf = cJSON_GetObjectItemCaseSensitive(j, "shift_factor");
  if (sf && !cJSON_IsNull(sf)) {
    if (!cJSON_IsNumber(sf) || !isfinite(sf->valuedouble))
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'shift_factor' must be a number or null, not %s", where, vkp_json_kind(sf));
    c->has_shift_factor = true;
    c->shift_factor = (float)sf->valuedouble;
  }
  const cJSON *ss = cJSON_GetObjectItemCaseSensitive(j, "sample_size");
  if (cJSON_IsArray(ss)) ss = ss->child;
  c->sample_size = ss && cJSON_IsNumber(ss) ? (int)ss->valuedouble : 0;
  return vkp_vae_config_check(c, where, err);
}

// A config given as a JSON object (a training config's model.init): the defaults under its keys.
vkp_status vkp_vae_config_from_json(const cJSON *j, const char *where, vkp_vae_config *c, vkp_error *err) {
  if (!cJSON_IsObject(j)) return vkp_error_set(err, VKP_ERR_INVALID, "%s: must be a JSON object (the keys of diffusers' config.json)", where);
  return parse(j, where, c, err);
}

vkp_status vkp_vae_config_load(const char *path, vkp_vae_config *c, vkp_error *err) {
  cJSON *j = NULL;
  VKP_TRY(vkp_json_load_object(path, 1 << 20, &j, err));
  vkp_status st = parse(j, path, c, err);
  cJSON_Delete(j);
  return st;
}

vkp_status vkp_vae_config_check(const vkp_vae_config *c, const char *where, vkp_error *err) {
  if (c->n_blocks < 1 || c->n_blocks > VKP_VAE_MAX_BLOCKS)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'block_out_channels' must have 1 to %d entries", where, VKP_VAE_MAX_BLOCKS);
  if (c->layers_per_block < 1 || c->layers_per_block > VKP_VAE_MAX_LAYERS)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'layers_per_block' must be in [1, %d]", where, VKP_VAE_MAX_LAYERS);
  for (int i = 0; i < c->n_blocks; i++)
    if (c->block_out_channels[i] % c->norm_num_groups)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'norm_num_groups' %d does not divide block_out_channels entry %d (%d)", where,
                           c->norm_num_groups, i, c->block_out_channels[i]);
  return VKP_OK;
}

vkp_status vkp_vae_config_save(const vkp_vae_config *c, const char *path, vkp_error *err) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "_class_name", "AutoencoderKL");
  cJSON_AddStringToObject(j, "act_fn", "silu");
  cJSON_AddItemToObject(j, "block_out_channels", cJSON_CreateIntArray(c->block_out_channels, c->n_blocks));
  cJSON *down = cJSON_AddArrayToObject(j, "down_block_types"), *up = cJSON_AddArrayToObject(j, "up_block_types");
  for (int i = 0; i < c->n_blocks; i++) {
    cJSON_AddItemToArray(down, cJSON_CreateString("DownEncoderBlock2D"));
    cJSON_AddItemToArray(up, cJSON_CreateString("UpDecoderBlock2D"));
  }
  cJSON_AddNumberToObject(j, "in_channels", c->in_channels);
  cJSON_AddNumberToObject(j, "latent_channels", c->latent_channels);
  cJSON_AddNumberToObject(j, "layers_per_block", c->layers_per_block);
  cJSON_AddBoolToObject(j, "mid_block_add_attention", c->mid_block_add_attention);
  cJSON_AddNumberToObject(j, "norm_num_groups", c->norm_num_groups);
  cJSON_AddNumberToObject(j, "out_channels", c->out_channels);
  cJSON_AddNumberToObject(j, "sample_size", c->sample_size);
  cJSON_AddNumberToObject(j, "scaling_factor", c->scaling_factor);
  if (c->has_shift_factor) cJSON_AddNumberToObject(j, "shift_factor", c->shift_factor);
  else cJSON_AddNullToObject(j, "shift_factor");
  cJSON_AddBoolToObject(j, "use_post_quant_conv", c->use_post_quant_conv);
  cJSON_AddBoolToObject(j, "use_quant_conv", c->use_quant_conv);
  vkp_status st = vkp_json_write_atomic(path, j, err);
  cJSON_Delete(j);
  return st;
}
