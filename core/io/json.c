// json.c — strict JSON parsing, atomic JSON writes, and the table-driven field reader.
#include "vkp_json.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_fileio.h"

// ---- documents ---------------------------------------------------------------------------------

vkp_status vkp_json_parse(const char *text, size_t len, const char *where, cJSON **out, vkp_error *err) {
  *out = NULL;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
  if (!j) {
    size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", where, at);
  }
  for (const char *p = end; p && p < text + len; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      cJSON_Delete(j);
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: trailing text after the JSON document (at byte %zu)", where,
                           (size_t)(p - text));
    }
  *out = j;
  return VKP_OK;
}

vkp_status vkp_json_load(const char *path, size_t max_bytes, cJSON **out, vkp_error *err) {
  *out = NULL;
  char *text = NULL;
  size_t len = 0;
  VKP_TRY(vkp_file_read_all(path, max_bytes, &text, &len, err));
  vkp_status st = vkp_json_parse(text, len, path, out, err);
  free(text);
  return st;
}

vkp_status vkp_json_load_object(const char *path, size_t max_bytes, cJSON **out, vkp_error *err) {
  VKP_TRY(vkp_json_load(path, max_bytes, out, err));
  if (!cJSON_IsObject(*out)) {
    cJSON_Delete(*out);
    *out = NULL;
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a JSON object", path);
  }
  return VKP_OK;
}

vkp_status vkp_json_write_atomic(const char *path, const cJSON *doc, vkp_error *err) {
  char *text = doc ? cJSON_Print(doc) : NULL;
  if (!text) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of host memory formatting JSON", path);
  const void *chunks[1] = {text};
  size_t sizes[1] = {strlen(text)};
  vkp_status st = vkp_file_write_atomic(path, chunks, sizes, 1, err);
  cJSON_free(text);
  return st;
}

// ---- table-driven reading -----------------------------------------------------------------------

const char *vkp_json_kind(const cJSON *v) {
  if (cJSON_IsNumber(v)) return "a number";
  if (cJSON_IsString(v)) return "a string";
  if (cJSON_IsBool(v)) return "true or false";
  if (cJSON_IsArray(v)) return "a list";
  if (cJSON_IsObject(v)) return "an object";
  return "null";
}

// "in [lo, hi]", "> lo", ... for messages; empty when the field has no range.
static void range_text(const vkp_json_field *f, bool integer, char *out, size_t cap) {
  bool ranged = f->lo != 0 || f->hi != 0;
  if (!ranged) {
    out[0] = '\0';
  } else if (isinf(f->hi)) {   // one-sided
    snprintf(out, cap, integer ? " %s %.0f" : " %s %g", (f->flags & VKP_JSON_OPEN_LO) ? ">" : ">=", f->lo);
  } else {
    snprintf(out, cap, integer ? " in %c%.0f, %.0f%c" : " in %c%g, %g%c", (f->flags & VKP_JSON_OPEN_LO) ? '(' : '[',
             f->lo, f->hi, (f->flags & VKP_JSON_OPEN_HI) ? ')' : ']');
  }
}

static void choices_text(const vkp_json_choice *c, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
  for (int i = 0; c && c[i].name && o + 1 < cap; i++)
    o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", i ? ", " : "", c[i].name);
}

static void store_number(const vkp_json_field *f, void *dst, double d) {
  switch (f->type) {
    case VKP_JSON_INT: *(int *)dst = (int)d; break;
    case VKP_JSON_INT64: *(int64_t *)dst = (int64_t)d; break;
    case VKP_JSON_FLOAT: *(float *)dst = (float)d; break;
    case VKP_JSON_DOUBLE: *(double *)dst = d; break;
    case VKP_JSON_BOOL: *(bool *)dst = d != 0; break;
    case VKP_JSON_ENUM:
      if (f->offset == VKP_JSON_CHECK_ONLY) break;
      if (f->size == 1) *(uint8_t *)dst = (uint8_t)(int)d;
      else *(int *)dst = (int)d;
      break;
    case VKP_JSON_STRING: break;
  }
}

static void store_default(const vkp_json_field *f, void *out) {
  char *dst = (char *)out + (f->offset == VKP_JSON_CHECK_ONLY ? 0 : f->offset);
  if (f->type == VKP_JSON_STRING) {
    if (f->size) snprintf(dst, f->size, "%s", f->def_str ? f->def_str : "");
  } else {
    store_number(f, dst, f->def);
  }
}

void vkp_json_field_defaults(const vkp_json_field *fields, int n, void *out) {
  for (int i = 0; i < n; i++) store_default(&fields[i], out);
}

static vkp_status read_number(const vkp_json_field *f, const cJSON *v, const char *where, void *dst, vkp_error *err) {
  bool integer = f->type == VKP_JSON_INT || f->type == VKP_JSON_INT64;
  double lo = f->lo, hi = f->hi;
  if (lo == 0 && hi == 0) {
    lo = f->type == VKP_JSON_INT ? INT_MIN : f->type == VKP_JSON_INT64 ? -9007199254740992.0
         : f->type == VKP_JSON_FLOAT ? -FLT_MAX : -DBL_MAX;
    hi = -lo + (f->type == VKP_JSON_INT ? -1 : 0);
  }
  char range[96];
  range_text(f, integer, range, sizeof range);
  const char *what = integer ? "an integer" : "a finite number";
  if (!cJSON_IsNumber(v))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be %s%s, not %s", where, f->key, what, range,
                         vkp_json_kind(v));
  double d = v->valuedouble;
  bool ok = isfinite(d) && (!integer || d == floor(d));
  if (ok && f->type == VKP_JSON_FLOAT) ok = fabs(d) <= FLT_MAX;   // 1e300 is not a float
  if (ok) ok = ((f->flags & VKP_JSON_OPEN_HI) ? d < hi : d <= hi) && ((f->flags & VKP_JSON_OPEN_LO) ? d > lo : d >= lo);
  if (!ok) {
    char shown[48];
    snprintf(shown, sizeof shown, "%.15g", d);
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be %s%s, not %s", where, f->key, what,
                         range[0] ? range : f->type == VKP_JSON_FLOAT ? " (float range)" : "", shown);
  }
  store_number(f, dst, d);
  return VKP_OK;
}

static vkp_status read_field(const vkp_json_field *f, const cJSON *v, const char *where, void *out, vkp_error *err) {
  char *dst = (char *)out + (f->offset == VKP_JSON_CHECK_ONLY ? 0 : f->offset);
  switch (f->type) {
    case VKP_JSON_INT:
    case VKP_JSON_INT64:
    case VKP_JSON_FLOAT:
    case VKP_JSON_DOUBLE:
      return read_number(f, v, where, dst, err);
    case VKP_JSON_BOOL:
      if (!cJSON_IsBool(v))
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be true or false, not %s", where, f->key,
                             vkp_json_kind(v));
      *(bool *)dst = cJSON_IsTrue(v);
      return VKP_OK;
    case VKP_JSON_STRING:
      if (!cJSON_IsString(v))
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be a string, not %s", where, f->key,
                             vkp_json_kind(v));
      if (strlen(v->valuestring) >= f->size)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' is longer than %zu bytes", where, f->key,
                             f->size ? f->size - 1 : 0);
      memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
      return VKP_OK;
    case VKP_JSON_ENUM: {
      char list[256];
      choices_text(f->choices, list, sizeof list);
      if (!cJSON_IsString(v))
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be one of %s, not %s", where, f->key, list,
                             vkp_json_kind(v));
      for (int i = 0; f->choices && f->choices[i].name; i++)
        if (!strcmp(f->choices[i].name, v->valuestring)) {
          store_number(f, dst, f->choices[i].value);
          return VKP_OK;
        }
      if (f->flags & VKP_JSON_UNSUPPORTED)
        return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key '%s': \"%s\" is not supported (%s)", where, f->key,
                             v->valuestring, list);
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' is \"%s\", expected %s", where, f->key, v->valuestring,
                           list);
    }
  }
  return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s': bad field type", where, f->key);
}

vkp_status vkp_json_read_fields(const cJSON *obj, const char *where, const vkp_json_field *fields, int n, void *out,
                                vkp_error *err) {
  if (!where) where = "JSON";
  if (!cJSON_IsObject(obj)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a JSON object", where);
  for (int i = 0; i < n; i++) {
    const vkp_json_field *f = &fields[i];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->key);
    if (v && cJSON_IsNull(v) && (f->flags & VKP_JSON_NULL_DEFAULT)) v = NULL;
    if (!v) {
      if (f->flags & VKP_JSON_REQUIRED) return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' is missing", where, f->key);
      if (!(f->flags & VKP_JSON_KEEP)) store_default(f, out);
      continue;
    }
    VKP_TRY(read_field(f, v, where, out, err));
  }
  return VKP_OK;
}
