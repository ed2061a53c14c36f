// config.c — JSON run configs merged onto a defaults document with type checks.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_config.h"
#include "vkp_json.h"

static bool compatible(const cJSON *def, const cJSON *v) {
  if (cJSON_IsNull(def)) return cJSON_IsNull(v) || cJSON_IsString(v);
  if (cJSON_IsBool(def)) return cJSON_IsBool(v);
  if (cJSON_IsString(def)) return cJSON_IsString(v) || cJSON_IsNull(v);
  return (def->type & 0xff) == (v->type & 0xff);
}

static vkp_status merge(cJSON *base, const cJSON *user, const char *where, char *path, size_t plen, vkp_error *err) {
  const cJSON *u;
  cJSON_ArrayForEach(u, user) {
    size_t n = strlen(path);
    snprintf(path + n, plen - n, "%s%s", n ? "." : "", u->string);
    cJSON *d = cJSON_GetObjectItemCaseSensitive(base, u->string);
    if (!d) return vkp_error_set(err, VKP_ERR_INVALID, "%s: unknown key '%s'", where, path);
    if (!compatible(d, u))
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be %s, not %s", where, path, vkp_json_kind(d), vkp_json_kind(u));
    if (cJSON_IsObject(d) && d->child) {
      VKP_TRY(merge(d, u, where, path, plen, err));
    } else {
      cJSON *copy = cJSON_Duplicate(u, true);
      if (!copy) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      cJSON_ReplaceItemInObjectCaseSensitive(base, u->string, copy);
    }
    path[n] = '\0';
  }
  return VKP_OK;
}

vkp_status vkp_config_merge(cJSON *base, const cJSON *user, const char *where, vkp_error *err) {
  if (!cJSON_IsObject(user)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: the config must be a JSON object", where);
  char path[512] = "";
  return merge(base, user, where, path, sizeof path, err);
}

vkp_status vkp_config_apply_set(cJSON *base, const char *assignment, vkp_error *err) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment) return vkp_error_set(err, VKP_ERR_INVALID, "--set '%s': expected key=value", assignment);
  char key[256];
  size_t kl = (size_t)(eq - assignment);
  if (kl >= sizeof key) return vkp_error_set(err, VKP_ERR_INVALID, "--set: key too long");
  memcpy(key, assignment, kl);
  key[kl] = '\0';
  cJSON *value = cJSON_Parse(eq + 1);
  if (!value) value = cJSON_CreateString(eq + 1);
  // Walk the path: object members must exist (defaults define them), except inside list entries
  // (e.g. "peft.0.r"), whose keys their consumer checks; numeric segments index lists.
  cJSON *cur = base;
  bool in_list = false;
  char path[256], *save = NULL;
  snprintf(path, sizeof path, "%s", key);
  char *tok = strtok_r(path, ".", &save);
  vkp_status st = VKP_OK;
  while (tok && !st) {
    char *next = strtok_r(NULL, ".", &save);
    cJSON *child = NULL;
    if (cJSON_IsArray(cur)) {
      char *end;
      long idx = strtol(tok, &end, 10);
      if (*end || idx < 0 || idx >= cJSON_GetArraySize(cur)) {
        st = vkp_error_set(err, VKP_ERR_INVALID, "--set %s: '%s' is not an index of that list (size %d)", key, tok, cJSON_GetArraySize(cur));
        break;
      }
      child = cJSON_GetArrayItem(cur, (int)idx);
      in_list = true;
    } else if (cJSON_IsObject(cur)) {
      child = cJSON_GetObjectItemCaseSensitive(cur, tok);
    } else {
      st = vkp_error_set(err, VKP_ERR_INVALID, "--set %s: '%s' is not inside an object or a list", key, tok);
      break;
    }
    if (!next) {   // the leaf
      if (!child && !(in_list && cJSON_IsObject(cur))) {
        st = vkp_error_set(err, VKP_ERR_INVALID, "--set: unknown key '%s'", key);
      } else if (child && !in_list && !compatible(child, value)) {
        st = vkp_error_set(err, VKP_ERR_INVALID, "--set: key '%s' must be %s, not %s", key, vkp_json_kind(child), vkp_json_kind(value));
      } else if (cJSON_IsArray(cur)) {
        cJSON_ReplaceItemInArray(cur, (int)strtol(tok, NULL, 10), value);
        value = NULL;
      } else {
        if (child) cJSON_ReplaceItemInObjectCaseSensitive(cur, tok, value);
        else cJSON_AddItemToObject(cur, tok, value);
        value = NULL;
      }
    } else if (!child) {
      st = vkp_error_set(err, VKP_ERR_INVALID, "--set: unknown key '%s'", key);
    }
    cur = child;
    tok = next;
  }
  cJSON_Delete(value);
  return st;
}

vkp_status vkp_config_resolve(const char *defaults_json, const char *user_path, const char *const *sets, int nsets,
                              cJSON **out, vkp_error *err) {
  *out = NULL;
  cJSON *base = cJSON_Parse(defaults_json);
  if (!base) return vkp_error_set(err, VKP_ERR_INVALID, "internal: defaults are not valid JSON");
  vkp_status st = VKP_OK;
  if (user_path) {
    cJSON *user = NULL;
    st = vkp_json_load(user_path, 16 << 20, &user, err);
    if (!st) st = vkp_config_merge(base, user, user_path, err);
    cJSON_Delete(user);
  }
  for (int i = 0; i < nsets && !st; i++) st = vkp_config_apply_set(base, sets[i], err);
  if (st) {
    cJSON_Delete(base);
    return st;
  }
  *out = base;
  return VKP_OK;
}

const cJSON *vkp_config_get(const cJSON *c, const char *path) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  char *save = NULL;
  for (char *tok = strtok_r(buf, ".", &save); tok && c; tok = strtok_r(NULL, ".", &save))
    c = cJSON_GetObjectItemCaseSensitive(c, tok);
  return c;
}

double vkp_config_number(const cJSON *c, const char *path) {
  const cJSON *v = vkp_config_get(c, path);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

vkp_status vkp_config_real(const cJSON *c, const char *path, double lo, double hi, double *out, vkp_error *err) {
  const cJSON *v = vkp_config_get(c, path);
  if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must be a number in [%g, %g]", path, lo, hi);
  *out = v->valuedouble;
  return VKP_OK;
}

vkp_status vkp_config_int(const cJSON *c, const char *path, long lo, long hi, long *out, vkp_error *err) {
  const cJSON *v = vkp_config_get(c, path);
  // Range first: casting a double outside long's range (e.g. 1e66) is undefined behaviour.
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi) ||
      v->valuedouble != floor(v->valuedouble))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must be an integer in [%ld, %ld]", path, lo, hi);
  *out = (long)v->valuedouble;
  return VKP_OK;
}

const char *vkp_config_string(const cJSON *c, const char *path) {
  const cJSON *v = vkp_config_get(c, path);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool vkp_config_bool(const cJSON *c, const char *path) { return cJSON_IsTrue(vkp_config_get(c, path)); }
