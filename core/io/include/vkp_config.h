// vkp_config.h — JSON run configs checked against a defaults document.
//
// A trainer declares its defaults as a JSON document. vkp_config_resolve merges a user file on top:
// every user key must exist in the defaults (else "unknown key") and have the same JSON type
// (numbers, strings, booleans, objects; a default of null accepts a string or null; arrays are
// taken whole and checked by their consumer). `--set a.b.c=value` overrides apply last, with the
// value parsed as JSON when it parses (numbers, true/false, null, lists) and as a string otherwise.
// Errors name the file and the dotted key.
#ifndef VKP_CONFIG_H
#define VKP_CONFIG_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "vkp_status.h"

// Returns a new tree (caller frees with cJSON_Delete) = defaults <- user file (may be NULL) <- sets.
vkp_status vkp_config_resolve(const char *defaults_json, const char *user_path, const char *const *sets, int nsets,
                              cJSON **out, vkp_error *err);
// Same, with the user document already parsed (`where` names it in errors).
vkp_status vkp_config_merge(cJSON *base, const cJSON *user, const char *where, vkp_error *err);
vkp_status vkp_config_apply_set(cJSON *base, const char *assignment, vkp_error *err);

// Typed getters by dotted path ("train.lr"); the path must exist (resolved configs always have
// every default key). *_int checks integrality and the range [lo, hi].
double vkp_config_number(const cJSON *c, const char *path);
vkp_status vkp_config_int(const cJSON *c, const char *path, long lo, long hi, long *out, vkp_error *err);
vkp_status vkp_config_real(const cJSON *c, const char *path, double lo, double hi, double *out, vkp_error *err);
const char *vkp_config_string(const cJSON *c, const char *path);   // NULL if null
bool vkp_config_bool(const cJSON *c, const char *path);
const cJSON *vkp_config_get(const cJSON *c, const char *path);

#endif
