// methods.c — the PEFT method table (vkp_peft_methods[]), its lookups, and the presets every
// method offers to `vkpeft compare` / `vkpeft bench peft`.
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "peft_internal.h"

// In vkp_peft_method order (checked by tests/core/test_peft_config.c).
const vkp_peft_method_def *const vkp_peft_methods[VKP_PEFT_METHOD_COUNT] = {
    &vkp_method_lora,        &vkp_method_loha,       &vkp_method_lokr,    &vkp_method_ia3,
    &vkp_method_vera,        &vkp_method_bottleneck, &vkp_method_adaptformer, &vkp_method_vpt,
    &vkp_method_prefix,      &vkp_method_bitfit,     &vkp_method_ln_tuning, &vkp_method_masked,
    &vkp_method_full,        &vkp_method_linear_probe, &vkp_method_oft,     &vkp_method_coop,
};

const vkp_peft_method_def *vkp_peft_method_get(vkp_peft_method m) {
  return m >= 0 && m < VKP_PEFT_METHOD_COUNT ? vkp_peft_methods[m] : NULL;
}

const vkp_peft_method_def *vkp_peft_method_find(const char *name, const vkp_peft_alias **alias) {
  if (alias) *alias = NULL;
  for (int i = 0; i < VKP_PEFT_METHOD_COUNT; i++)
    if (!strcasecmp(name, vkp_peft_methods[i]->name) || !strcasecmp(name, vkp_peft_methods[i]->peft_type))
      return vkp_peft_methods[i];
  for (int i = 0; i < VKP_PEFT_METHOD_COUNT; i++)
    for (int k = 0; k < vkp_peft_methods[i]->n_aliases; k++)
      if (!strcasecmp(name, vkp_peft_methods[i]->aliases[k].name)) {
        if (alias) *alias = &vkp_peft_methods[i]->aliases[k];
        return vkp_peft_methods[i];
      }
  return NULL;
}

const char *vkp_peft_method_name(vkp_peft_method m) {
  const vkp_peft_method_def *d = vkp_peft_method_get(m);
  return d ? d->name : "?";
}

bool vkp_peft_method_parse(const char *name, vkp_peft_method *out) {
  const vkp_peft_method_def *d = vkp_peft_method_find(name, NULL);
  if (d) *out = d->id;
  return d != NULL;
}

// ---- presets ------------------------------------------------------------------------------------

int vkp_peft_preset_count(void) {
  int n = 0;
  for (int i = 0; i < VKP_PEFT_METHOD_COUNT; i++) n += vkp_peft_methods[i]->n_presets;
  return n;
}

const vkp_peft_preset *vkp_peft_preset_at(int i) {
  for (int m = 0; m < VKP_PEFT_METHOD_COUNT && i >= 0; m++) {
    if (i < vkp_peft_methods[m]->n_presets) return &vkp_peft_methods[m]->presets[i];
    i -= vkp_peft_methods[m]->n_presets;
  }
  return NULL;
}

int vkp_peft_preset_find(const char *name, size_t len) {
  for (int i = 0; i < vkp_peft_preset_count(); i++) {
    const char *p = vkp_peft_preset_at(i)->name;
    if (strlen(p) == len && !strncmp(p, name, len)) return i;
  }
  return -1;
}

// Replaces "@role" strings anywhere in the tree.
static vkp_status resolve_roles(cJSON *node, vkp_peft_role_fn role, void *user, vkp_error *err) {
  for (cJSON *c = node->child; c; c = c->next) {
    if (cJSON_IsString(c) && c->valuestring[0] == '@') {
      const char *name = role ? role(user, c->valuestring + 1) : NULL;
      if (!name) return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "this model has no module of role '%s'", c->valuestring + 1);
      if (!cJSON_SetValuestring(c, name)) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    } else if (cJSON_IsArray(c) || cJSON_IsObject(c)) {
      VKP_TRY(resolve_roles(c, role, user, err));
    }
  }
  return VKP_OK;
}

vkp_status vkp_peft_preset_resolve(const char *config, vkp_peft_role_fn role, void *user, cJSON **out, vkp_error *err) {
  *out = NULL;
  cJSON *j = cJSON_Parse(config);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return vkp_error_set(err, VKP_ERR_FORMAT, "preset: not a JSON object: %s", config);
  }
  vkp_status st = resolve_roles(j, role, user, err);
  if (st) {
    cJSON_Delete(j);
    return st;
  }
  *out = j;
  return VKP_OK;
}
