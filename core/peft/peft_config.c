// peft_config.c — PEFT configs and HF adapter_config.json (de)serialisation, driven by the
// method table: each method declares its keys (vkp_peft_method_def.fields, read with
// vkp_json_read_fields, and .keys with their own parse/write); the keys every method shares
// (targets, modules_to_save, layers, adapter name) and peft's keys that vkpeft ignores or accepts
// only at their default are handled here.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "peft_internal.h"

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
  const vkp_peft_method_def *d = vkp_peft_method_get(method);
  if (d) vkp_json_field_defaults(d->fields, d->n_fields, c);   // the method's own defaults
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

// ---- keys shared by several methods ---------------------------------------------------------

static vkp_status bad(vkp_error *err, const char *where, const char *key, const char *why) {
  return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s': %s", where, key, why);
}

vkp_status vkp_peft_key_bias(const cJSON *v, const char *where, vkp_peft_config *c, vkp_error *err) {
  (void)c;
  if (!cJSON_IsString(v) || strcmp(v->valuestring, "none"))
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                         "%s: key 'bias': only \"none\" is supported (use the bitfit method to train biases)", where);
  return VKP_OK;
}

void vkp_peft_write_bias(cJSON *j, const vkp_peft_config *c) {
  (void)c;
  cJSON_AddStringToObject(j, "bias", "none");
}

vkp_status vkp_peft_check_probability(float p, const char *where, const char *key, vkp_error *err) {
  if (p >= 0 && p < 1) return VKP_OK;
  return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be a probability in [0, 1), not %g", where, key, (double)p);
}

// ---- common keys ------------------------------------------------------------------------------

vkp_status vkp_peft_read_strings(const cJSON *v, const char *where, const char *key, char **out, int *n,
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

static vkp_status read_layer(const cJSON *e, const char *where, int *out, vkp_error *err) {
  const double hi = 1 << 20;
  bool ok = cJSON_IsNumber(e) && e->valuedouble == floor(e->valuedouble) && e->valuedouble >= 0 && e->valuedouble <= hi;
  if (ok) {
    *out = (int)e->valuedouble;
    return VKP_OK;
  }
  char shown[48];
  if (cJSON_IsNumber(e)) snprintf(shown, sizeof shown, "%.17g", e->valuedouble);
  else snprintf(shown, sizeof shown, "%s", cJSON_IsString(e) ? "a string" : "another JSON value");
  return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'layers_to_transform' must be an integer in [0, %.0f], not %s",
                       where, hi, shown);
}

static vkp_status read_common(const char *k, const cJSON *v, const char *where, vkp_peft_config *out, bool *known,
                              vkp_error *err) {
  *known = true;
  if (!strcmp(k, "target_modules")) {
    if (cJSON_IsString(v)) {
      free(out->target_regex);
      out->target_regex = strdup(v->valuestring);
      return VKP_OK;
    }
    return vkp_peft_read_strings(v, where, k, out->target_modules, &out->n_target_modules, err);
  }
  if (!strcmp(k, "modules_to_save")) return vkp_peft_read_strings(v, where, k, out->modules_to_save, &out->n_modules_to_save, err);
  if (!strcmp(k, "layers_to_transform")) {
    out->n_layers_to_transform = 0;
    if (cJSON_IsNumber(v)) return read_layer(v, where, &out->layers_to_transform[out->n_layers_to_transform++], err);
    if (cJSON_IsNull(v)) return VKP_OK;
    if (!cJSON_IsArray(v)) return bad(err, where, k, "expected an integer or a list of integers");
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
      if (out->n_layers_to_transform >= 64) return bad(err, where, k, "too many layers");
      VKP_TRY(read_layer(e, where, &out->layers_to_transform[out->n_layers_to_transform++], err));
    }
    return VKP_OK;
  }
  if (!strcmp(k, "adapter_name")) {
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= sizeof out->name)
      return bad(err, where, k, "expected a short non-empty string");
    snprintf(out->name, sizeof out->name, "%s", v->valuestring);
    return VKP_OK;
  }
  *known = false;
  return VKP_OK;
}

// ---- JSON -> config -----------------------------------------------------------------------------

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

static const vkp_json_field *method_field(const vkp_peft_method_def *d, const char *key) {
  for (int i = 0; i < d->n_fields; i++)
    if (!strcmp(d->fields[i].key, key)) return &d->fields[i];
  return NULL;
}

static const vkp_peft_key *method_key(const vkp_peft_method_def *d, const char *key) {
  for (int i = 0; i < d->n_keys; i++)
    if (!strcmp(d->keys[i].key, key)) return &d->keys[i];
  return NULL;
}

static vkp_status from_json(const cJSON *json, const char *where, vkp_peft_config *out, vkp_error *err);

vkp_status vkp_peft_config_from_json(const cJSON *json, const char *where, vkp_peft_config *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  vkp_status st = from_json(json, where, out, err);
  if (st) vkp_peft_config_clear(out);   // nothing half-read stays allocated
  return st;
}

static vkp_status from_json(const cJSON *json, const char *where, vkp_peft_config *out, vkp_error *err) {
  if (!cJSON_IsObject(json)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a JSON object", where);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "peft_type");
  if (!cJSON_IsString(type)) return bad(err, where, "peft_type", "missing or not a string");
  const vkp_peft_method_def *d = vkp_peft_method_find(type->valuestring, NULL);
  if (!d) return bad(err, where, "peft_type", "unknown PEFT method");
  vkp_peft_config_init(out, d->id);
  const cJSON *v;
  cJSON_ArrayForEach(v, json) {
    const char *k = v->string;
    if (!strcmp(k, "peft_type") || in_list(ignored_keys, k) || method_field(d, k)) continue;   // fields: below
    const vkp_peft_key *mk = method_key(d, k);
    if (mk) {
      VKP_TRY(mk->parse(v, where, out, err));
      continue;
    }
    if (in_list(default_only_keys, k)) {
      if (!is_default_value(v)) return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key '%s': only the default value is supported", where, k);
      continue;
    }
    bool known;
    VKP_TRY(read_common(k, v, where, out, &known, err));
    if (!known) return vkp_error_set(err, VKP_ERR_INVALID, "%s: unknown key '%s' for peft_type %s", where, k, type->valuestring);
  }
  VKP_TRY(vkp_json_read_fields(json, where, d->fields, d->n_fields, out, err));
  return d->validate ? d->validate(out, where, err) : VKP_OK;
}

vkp_status vkp_peft_config_from_entry(const cJSON *entry, const char *where, vkp_peft_config *out, vkp_error *err) {
  if (!cJSON_IsObject(entry)) return vkp_error_set(err, VKP_ERR_INVALID, "%s: must be an object", where);
  const cJSON *method = cJSON_GetObjectItemCaseSensitive(entry, "method");
  if (!cJSON_IsString(method)) return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'method' is required (a string)", where);
  const vkp_peft_alias *alias = NULL;
  if (!vkp_peft_method_find(method->valuestring, &alias))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: unknown method '%s'", where, method->valuestring);
  // An HF-style adapter config: peft_type = the method, plus the keys the alias implies.
  cJSON *hf = cJSON_Duplicate(entry, true);
  if (!hf) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  cJSON_DeleteItemFromObjectCaseSensitive(hf, "method");
  cJSON_AddStringToObject(hf, "peft_type", method->valuestring);
  cJSON *implied = alias && alias->implies ? cJSON_Parse(alias->implies) : NULL;
  for (cJSON *c = implied ? implied->child : NULL; c; c = c->next)
    if (!cJSON_GetObjectItemCaseSensitive(hf, c->string)) cJSON_AddItemToObject(hf, c->string, cJSON_Duplicate(c, true));
  cJSON_Delete(implied);
  vkp_status st = vkp_peft_config_from_json(hf, where, out, err);
  cJSON_Delete(hf);
  return st;
}

// ---- config -> JSON -----------------------------------------------------------------------------

static cJSON *string_array(char *const *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
  return a;
}

static void write_field(cJSON *j, const vkp_json_field *f, const vkp_peft_config *c) {
  const char *p = (const char *)c + f->offset;
  switch (f->type) {
    case VKP_JSON_INT: cJSON_AddNumberToObject(j, f->key, *(const int *)p); break;
    case VKP_JSON_INT64: cJSON_AddNumberToObject(j, f->key, (double)*(const int64_t *)p); break;
    case VKP_JSON_FLOAT: cJSON_AddNumberToObject(j, f->key, *(const float *)p); break;
    case VKP_JSON_DOUBLE: cJSON_AddNumberToObject(j, f->key, *(const double *)p); break;
    case VKP_JSON_BOOL: cJSON_AddBoolToObject(j, f->key, *(const bool *)p); break;
    case VKP_JSON_STRING: cJSON_AddStringToObject(j, f->key, p); break;
    case VKP_JSON_ENUM: {
      int value = f->size == 1 ? *(const uint8_t *)p : *(const int *)p;
      for (int i = 0; f->choices && f->choices[i].name; i++)
        if (f->choices[i].value == value) cJSON_AddStringToObject(j, f->key, f->choices[i].name);
      break;
    }
  }
}

cJSON *vkp_peft_config_to_json(const vkp_peft_config *c) {
  const vkp_peft_method_def *d = vkp_peft_method_get(c->method);
  cJSON *j = cJSON_CreateObject();
  if (!d || !j) {
    cJSON_Delete(j);
    return NULL;
  }
  cJSON_AddStringToObject(j, "peft_type", d->peft_type);
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
  for (int i = 0; i < d->n_fields; i++)
    if (!(d->fields[i].flags & VKP_PEFT_FIELD_READ_ONLY)) write_field(j, &d->fields[i], c);
  for (int i = 0; i < d->n_keys; i++)
    if (d->keys[i].write) d->keys[i].write(j, c);
  if (strcmp(c->name, "default")) cJSON_AddStringToObject(j, "adapter_name", c->name);
  return j;
}
