// peft_config.c — PEFT method names, configs, and HF adapter_config.json (de)serialisation.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"

static const char *method_names[VKP_PEFT_METHOD_COUNT] = {
    "lora", "loha", "lokr", "ia3", "vera", "bottleneck", "adaptformer", "vpt",
    "prefix", "bitfit", "ln_tuning", "masked", "full", "linear_probe"};
// HF PEFT peft_type spelling (vkpeft-only methods use their own upper-case names).
static const char *peft_types[VKP_PEFT_METHOD_COUNT] = {
    "LORA", "LOHA", "LOKR", "IA3", "VERA", "VKPEFT_BOTTLENECK", "VKPEFT_ADAPTFORMER", "VKPEFT_VPT",
    "VKPEFT_PREFIX", "VKPEFT_BITFIT", "LN_TUNING", "VKPEFT_MASKED", "VKPEFT_FULL", "VKPEFT_LINEAR_PROBE"};

const char *vkp_peft_method_name(vkp_peft_method m) {
  return m >= 0 && m < VKP_PEFT_METHOD_COUNT ? method_names[m] : "?";
}

bool vkp_peft_method_parse(const char *name, vkp_peft_method *out) {
  for (int i = 0; i < VKP_PEFT_METHOD_COUNT; i++)
    if (!strcasecmp(name, method_names[i]) || !strcasecmp(name, peft_types[i])) {
      *out = (vkp_peft_method)i;
      return true;
    }
  // Spellings users reach for.
  static const struct { const char *alias; vkp_peft_method m; } extra[] = {
      {"rslora", VKP_PEFT_LORA}, {"dora", VKP_PEFT_LORA}, {"houlsby", VKP_PEFT_BOTTLENECK},
      {"pfeiffer", VKP_PEFT_BOTTLENECK}, {"adapter", VKP_PEFT_BOTTLENECK}, {"vpt_deep", VKP_PEFT_VPT},
      {"vpt_shallow", VKP_PEFT_VPT}, {"prefix_tuning", VKP_PEFT_PREFIX}, {"layernorm", VKP_PEFT_LN_TUNING},
      {"sparse", VKP_PEFT_MASKED}, {"linear", VKP_PEFT_LINEAR_PROBE}};
  for (size_t i = 0; i < sizeof extra / sizeof *extra; i++)
    if (!strcasecmp(name, extra[i].alias)) {
      *out = extra[i].m;
      return true;
    }
  return false;
}

void vkp_peft_config_init(vkp_peft_config *c, vkp_peft_method method) {
  memset(c, 0, sizeof *c);
  c->method = method;
  snprintf(c->name, sizeof c->name, "default");
  c->r = 8;
  c->alpha = 8;
  c->init_weights = true;
  c->decompose_factor = -1;
  c->vera_d_initial = 0.1f;
  c->projection_seed = 0;
  c->bottleneck = 64;
  c->adapter_scale = 1.0f;
  c->n_tokens = 10;
  c->density = 0.01f;
  if (method == VKP_PEFT_VERA) c->r = 256;
  if (method == VKP_PEFT_ADAPTFORMER) c->adapter_scale = 0.1f, c->bottleneck = 64;
}

static void free_list(char **v, int *n) {
  for (int i = 0; i < *n; i++) free(v[i]);
  *n = 0;
}

void vkp_peft_config_clear(vkp_peft_config *c) {
  free_list(c->target_modules, &c->n_target_modules);
  free_list(c->modules_to_save, &c->n_modules_to_save);
  free_list(c->feedforward_modules, &c->n_feedforward_modules);
  free(c->target_regex);
  c->target_regex = NULL;
}

// ---- JSON -----------------------------------------------------------------------------------

static vkp_status bad(vkp_error *err, const char *where, const char *key, const char *why) {
  return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s': %s", where, key, why);
}

static vkp_status read_strings(const cJSON *v, const char *where, const char *key, char **out, int *n,
                               vkp_error *err) {
  free_list(out, n);
  if (cJSON_IsNull(v)) return VKP_OK;
  if (cJSON_IsString(v)) {   // a single string (HF: a regex for target_modules)
    out[(*n)++] = strdup(v->valuestring);
    return VKP_OK;
  }
  if (!cJSON_IsArray(v)) return bad(err, where, key, "expected a list of strings");
  const cJSON *e;
  cJSON_ArrayForEach(e, v) {
    if (!cJSON_IsString(e)) return bad(err, where, key, "expected a list of strings");
    if (*n >= VKP_PEFT_MAX_TARGETS) return bad(err, where, key, "too many entries");
    out[(*n)++] = strdup(e->valuestring);
  }
  return VKP_OK;
}

static bool is_default_value(const cJSON *v) {
  return cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsObject(v) && !v->child) ||
         (cJSON_IsArray(v) && !v->child) || (cJSON_IsNumber(v) && v->valuedouble == 0);
}

// Keys HF PEFT writes that carry no meaning for vkpeft, or that are accepted only at their default
// value (non-default: a clear "unsupported" error instead of silently different numbers).
static const char *const ignored_keys[] = {
    "auto_mapping", "base_model_name_or_path", "inference_mode", "peft_version", "revision", "task_type",
    "megatron_core", "qalora_group_size", "layers_pattern", NULL};
static const char *const default_only_keys[] = {
    "exclude_modules", "alpha_pattern", "rank_pattern", "fan_in_fan_out", "layer_replication", "loftq_config", "lora_bias",
    "megatron_config", "use_qalora", "target_parameters", "trainable_token_indices", "corda_config", "eva_config",
    "alora_invocation_tokens", "arrow_config", "ensure_weight_tying", "kasa_config", "lora_ga_config",
    "monteclora_config", "use_bdlora", "velora_config", "module_dropout", "rank_dropout", "rank_dropout_scale",
    "use_effective_conv2d", "decompose_both", NULL};

static bool in_list(const char *const *list, const char *key) {
  for (int i = 0; list[i]; i++)
    if (!strcmp(list[i], key)) return true;
  return false;
}

// Keys that belong to some methods only (a key of another method is an unknown key); keys not
// listed here (target_modules, modules_to_save, layers_to_transform, adapter_name) fit every method.
#define M_(x) (1u << VKP_PEFT_##x)
static const struct {
  const char *key;
  unsigned methods;
} method_keys[] = {
    {"r", M_(LORA) | M_(LOHA) | M_(LOKR) | M_(VERA)},
    {"lora_alpha", M_(LORA)},
    {"alpha", M_(LOHA) | M_(LOKR)},
    {"lora_dropout", M_(LORA)},
    {"vera_dropout", M_(VERA)},
    {"use_rslora", M_(LORA)},
    {"use_dora", M_(LORA)},
    {"bias", M_(LORA) | M_(VERA)},
    {"init_lora_weights", M_(LORA)},
    {"init_weights", M_(LOHA) | M_(LOKR) | M_(VERA) | M_(BOTTLENECK) | M_(ADAPTFORMER) | M_(MASKED)},
    {"init_ia3_weights", M_(IA3)},
    {"feedforward_modules", M_(IA3)},
    {"decompose_factor", M_(LOKR)},
    {"d_initial", M_(VERA)},
    {"projection_prng_key", M_(VERA)},
    {"save_projection", M_(VERA)},
    {"bottleneck", M_(BOTTLENECK) | M_(ADAPTFORMER)},
    {"placement", M_(BOTTLENECK)},
    {"adapter_scale", M_(BOTTLENECK) | M_(ADAPTFORMER)},
    {"num_tokens", M_(VPT) | M_(PREFIX)},
    {"num_virtual_tokens", M_(VPT) | M_(PREFIX)},
    {"deep", M_(VPT)},
    {"density", M_(MASKED)},
    {"mask", M_(MASKED)},
};
#undef M_

static bool key_fits_method(vkp_peft_method m, const char *key) {
  for (size_t i = 0; i < sizeof method_keys / sizeof *method_keys; i++)
    if (!strcmp(method_keys[i].key, key)) return (method_keys[i].methods >> m) & 1u;
  return true;
}

static vkp_status get_number(const cJSON *v, const char *where, const char *key, double *out, vkp_error *err) {
  if (!cJSON_IsNumber(v)) return bad(err, where, key, "expected a number");
  *out = v->valuedouble;
  return VKP_OK;
}

static vkp_status get_bool(const cJSON *v, const char *where, const char *key, bool *out, vkp_error *err) {
  if (!cJSON_IsBool(v)) return bad(err, where, key, "expected true or false");
  *out = cJSON_IsTrue(v);
  return VKP_OK;
}

static vkp_status get_int(const cJSON *v, const char *where, const char *key, int lo, int hi, int *out,
                          vkp_error *err) {
  double d = 0;
  VKP_TRY(get_number(v, where, key, &d, err));
  if (d != floor(d) || d < lo || d > hi) {
    char why[96];
    snprintf(why, sizeof why, "expected an integer in [%d, %d]", lo, hi);
    return bad(err, where, key, why);
  }
  *out = (int)d;
  return VKP_OK;
}

vkp_status vkp_peft_config_from_json(const cJSON *json, const char *where, vkp_peft_config *out, vkp_error *err) {
  if (!cJSON_IsObject(json)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a JSON object", where);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "peft_type");
  vkp_peft_method method;
  if (!cJSON_IsString(type)) return bad(err, where, "peft_type", "missing or not a string");
  if (!vkp_peft_method_parse(type->valuestring, &method)) return bad(err, where, "peft_type", "unknown PEFT method");
  vkp_peft_config_init(out, method);
  double d;
  const cJSON *v;
  cJSON_ArrayForEach(v, json) {
    const char *k = v->string;
    vkp_status st = VKP_OK;
    if (!strcmp(k, "peft_type") || in_list(ignored_keys, k)) continue;
    if (in_list(default_only_keys, k)) {
      if (!is_default_value(v)) return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key '%s': only the default value is supported", where, k);
      continue;
    }
    if (!key_fits_method(method, k))
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: unknown key '%s' for peft_type %s", where, k, type->valuestring);
    if (!strcmp(k, "target_modules")) {
      if (cJSON_IsString(v)) {
        free(out->target_regex);
        out->target_regex = strdup(v->valuestring);
      } else {
        st = read_strings(v, where, k, out->target_modules, &out->n_target_modules, err);
      }
    } else if (!strcmp(k, "modules_to_save")) st = read_strings(v, where, k, out->modules_to_save, &out->n_modules_to_save, err);
    else if (!strcmp(k, "feedforward_modules")) st = read_strings(v, where, k, out->feedforward_modules, &out->n_feedforward_modules, err);
    else if (!strcmp(k, "layers_to_transform")) {
      out->n_layers_to_transform = 0;
      if (cJSON_IsNumber(v)) st = get_int(v, where, k, 0, 1 << 20, &out->layers_to_transform[out->n_layers_to_transform++], err);
      else if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
          if (out->n_layers_to_transform >= 64) return bad(err, where, k, "too many layers");
          if ((st = get_int(e, where, k, 0, 1 << 20, &out->layers_to_transform[out->n_layers_to_transform++], err))) break;
        }
      } else if (!cJSON_IsNull(v)) st = bad(err, where, k, "expected an integer or a list of integers");
    } else if (!strcmp(k, "r")) st = get_int(v, where, k, 1, 1 << 16, &out->r, err);
    else if (!strcmp(k, "lora_alpha") || !strcmp(k, "alpha")) {
      if (!(st = get_number(v, where, k, &d, err))) out->alpha = (float)d;
    } else if (!strcmp(k, "lora_dropout") || !strcmp(k, "vera_dropout")) {
      if (!(st = get_number(v, where, k, &d, err))) {
        if (d < 0 || d >= 1) st = bad(err, where, k, "expected a probability in [0, 1)");
        out->dropout = (float)d;
      }
    } else if (!strcmp(k, "use_rslora")) st = get_bool(v, where, k, &out->use_rslora, err);
    else if (!strcmp(k, "use_dora")) st = get_bool(v, where, k, &out->use_dora, err);
    else if (!strcmp(k, "bias")) {
      if (!cJSON_IsString(v) || strcmp(v->valuestring, "none")) st = vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key 'bias': only \"none\" is supported (use the bitfit method to train biases)", where);
    } else if (!strcmp(k, "init_lora_weights")) {
      if (cJSON_IsBool(v)) out->init_weights = cJSON_IsTrue(v), out->init = VKP_LORA_INIT_DEFAULT;
      else if (cJSON_IsString(v) && !strcmp(v->valuestring, "gaussian")) out->init = VKP_LORA_INIT_GAUSSIAN;
      else st = bad(err, where, k, "expected true, false or \"gaussian\"");
    } else if (!strcmp(k, "init_weights") || !strcmp(k, "init_ia3_weights")) st = get_bool(v, where, k, &out->init_weights, err);
    else if (!strcmp(k, "decompose_factor")) st = get_int(v, where, k, -1, 1 << 20, &out->decompose_factor, err);
    else if (!strcmp(k, "d_initial")) {
      if (!(st = get_number(v, where, k, &d, err))) out->vera_d_initial = (float)d;
    } else if (!strcmp(k, "projection_prng_key")) {
      int seed;
      if (!(st = get_int(v, where, k, 0, 1 << 30, &seed, err))) out->projection_seed = (uint32_t)seed;
    } else if (!strcmp(k, "save_projection")) {
      bool b;
      st = get_bool(v, where, k, &b, err);
    } else if (!strcmp(k, "bottleneck")) st = get_int(v, where, k, 1, 1 << 16, &out->bottleneck, err);
    else if (!strcmp(k, "placement")) {
      if (!cJSON_IsString(v) || (strcmp(v->valuestring, "houlsby") && strcmp(v->valuestring, "pfeiffer")))
        st = bad(err, where, k, "expected \"houlsby\" or \"pfeiffer\"");
      else out->pfeiffer = !strcmp(v->valuestring, "pfeiffer");
    } else if (!strcmp(k, "adapter_scale")) {
      if (!(st = get_number(v, where, k, &d, err))) out->adapter_scale = (float)d;
    } else if (!strcmp(k, "num_tokens") || !strcmp(k, "num_virtual_tokens")) st = get_int(v, where, k, 1, 4096, &out->n_tokens, err);
    else if (!strcmp(k, "deep")) st = get_bool(v, where, k, &out->deep, err);
    else if (!strcmp(k, "density")) {
      if (!(st = get_number(v, where, k, &d, err))) {
        if (d <= 0 || d > 1) st = bad(err, where, k, "expected a fraction in (0, 1]");
        out->density = (float)d;
      }
    } else if (!strcmp(k, "mask")) {
      if (!cJSON_IsString(v)) st = bad(err, where, k, "expected \"random\", \"magnitude\" or \"gradient\"");
      else if (!strcmp(v->valuestring, "random")) out->mask = VKP_MASK_RANDOM;
      else if (!strcmp(v->valuestring, "magnitude")) out->mask = VKP_MASK_MAGNITUDE;
      else if (!strcmp(v->valuestring, "gradient")) out->mask = VKP_MASK_GRADIENT;
      else st = bad(err, where, k, "expected \"random\", \"magnitude\" or \"gradient\"");
    } else if (!strcmp(k, "adapter_name")) {
      if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= sizeof out->name)
        st = bad(err, where, k, "expected a short non-empty string");
      else snprintf(out->name, sizeof out->name, "%s", v->valuestring);
    } else {
      st = vkp_error_set(err, VKP_ERR_INVALID, "%s: unknown key '%s' for peft_type %s", where, k, type->valuestring);
    }
    if (st != VKP_OK) return st;
  }
  return VKP_OK;
}

static cJSON *string_array(char *const *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
  return a;
}

cJSON *vkp_peft_config_to_json(const vkp_peft_config *c) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "peft_type", peft_types[c->method]);
  cJSON_AddStringToObject(j, "peft_version", "vkpeft");
  if (c->target_regex) cJSON_AddStringToObject(j, "target_modules", c->target_regex);
  else cJSON_AddItemToObject(j, "target_modules", string_array(c->target_modules, c->n_target_modules));
  if (c->n_modules_to_save) cJSON_AddItemToObject(j, "modules_to_save", string_array(c->modules_to_save, c->n_modules_to_save));
  else cJSON_AddNullToObject(j, "modules_to_save");
  if (c->n_layers_to_transform) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < c->n_layers_to_transform; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(c->layers_to_transform[i]));
    cJSON_AddItemToObject(j, "layers_to_transform", a);
  } else {
    cJSON_AddNullToObject(j, "layers_to_transform");
  }
  cJSON_AddBoolToObject(j, "inference_mode", true);
  switch (c->method) {
    case VKP_PEFT_LORA:
      cJSON_AddNumberToObject(j, "r", c->r);
      cJSON_AddNumberToObject(j, "lora_alpha", c->alpha);
      cJSON_AddNumberToObject(j, "lora_dropout", c->dropout);
      cJSON_AddBoolToObject(j, "use_rslora", c->use_rslora);
      cJSON_AddBoolToObject(j, "use_dora", c->use_dora);
      cJSON_AddStringToObject(j, "bias", "none");
      if (c->init == VKP_LORA_INIT_GAUSSIAN) cJSON_AddStringToObject(j, "init_lora_weights", "gaussian");
      else cJSON_AddBoolToObject(j, "init_lora_weights", c->init_weights);
      break;
    case VKP_PEFT_LOHA:
    case VKP_PEFT_LOKR:
      cJSON_AddNumberToObject(j, "r", c->r);
      cJSON_AddNumberToObject(j, "alpha", c->alpha);
      cJSON_AddBoolToObject(j, "init_weights", c->init_weights);
      if (c->method == VKP_PEFT_LOKR) cJSON_AddNumberToObject(j, "decompose_factor", c->decompose_factor);
      break;
    case VKP_PEFT_IA3:
      cJSON_AddItemToObject(j, "feedforward_modules", string_array(c->feedforward_modules, c->n_feedforward_modules));
      cJSON_AddBoolToObject(j, "init_ia3_weights", c->init_weights);
      break;
    case VKP_PEFT_VERA:
      cJSON_AddNumberToObject(j, "r", c->r);
      cJSON_AddNumberToObject(j, "d_initial", c->vera_d_initial);
      cJSON_AddNumberToObject(j, "projection_prng_key", c->projection_seed);
      cJSON_AddBoolToObject(j, "save_projection", true);
      cJSON_AddNumberToObject(j, "vera_dropout", c->dropout);
      cJSON_AddBoolToObject(j, "init_weights", c->init_weights);
      break;
    case VKP_PEFT_BOTTLENECK:
    case VKP_PEFT_ADAPTFORMER:
      cJSON_AddNumberToObject(j, "bottleneck", c->bottleneck);
      cJSON_AddNumberToObject(j, "adapter_scale", c->adapter_scale);
      if (c->method == VKP_PEFT_BOTTLENECK) cJSON_AddStringToObject(j, "placement", c->pfeiffer ? "pfeiffer" : "houlsby");
      cJSON_AddBoolToObject(j, "init_weights", c->init_weights);
      break;
    case VKP_PEFT_VPT:
      cJSON_AddNumberToObject(j, "num_tokens", c->n_tokens);
      cJSON_AddBoolToObject(j, "deep", c->deep);
      break;
    case VKP_PEFT_PREFIX:
      cJSON_AddNumberToObject(j, "num_virtual_tokens", c->n_tokens);
      break;
    case VKP_PEFT_MASKED:
      cJSON_AddNumberToObject(j, "density", c->density);
      cJSON_AddStringToObject(j, "mask", c->mask == VKP_MASK_RANDOM ? "random" : c->mask == VKP_MASK_MAGNITUDE ? "magnitude" : "gradient");
      cJSON_AddBoolToObject(j, "init_weights", c->init_weights);
      break;
    default:
      break;
  }
  if (strcmp(c->name, "default")) cJSON_AddStringToObject(j, "adapter_name", c->name);
  return j;
}
