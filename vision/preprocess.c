// preprocess.c — preprocessor_config.json (HF ViTImageProcessor) in and out.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "vkp_json.h"
#include "vkp_preprocess.h"

vkp_status vkp_preprocess_save(const vkp_data_transform *t, int channels, const char *dir, vkp_error *err) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "image_processor_type", "ViTImageProcessor");
  cJSON_AddBoolToObject(j, "do_resize", true);
  cJSON *size = cJSON_AddObjectToObject(j, "size");
  cJSON_AddNumberToObject(size, "height", t->out_h);
  cJSON_AddNumberToObject(size, "width", t->out_w);
  cJSON_AddBoolToObject(j, "do_rescale", true);
  cJSON_AddNumberToObject(j, "rescale_factor", 1.0 / 255.0);
  bool norm = false;
  for (int c = 0; c < channels; c++) norm |= t->std[c] != 0 || t->mean[c] != 0;
  cJSON_AddBoolToObject(j, "do_normalize", norm);
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

vkp_status vkp_preprocess_load(const char *dir, int size, int channels, vkp_data_transform *t, vkp_error *err) {
  memset(t, 0, sizeof *t);
  t->out_w = t->out_h = size;
  t->out_channels = channels;
  t->crop = VKP_CROP_NONE;
  char path[1200];
  snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
  if (access(path, F_OK) != 0) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: not found", path);
  cJSON *j = NULL;
  VKP_TRY(vkp_json_load_object(path, 1 << 20, &j, err));
  vkp_status st = VKP_OK;
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "do_normalize"))) {
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(j, "image_mean"), *sd = cJSON_GetObjectItemCaseSensitive(j, "image_std");
    for (int c = 0; c < channels && !st; c++) {
      int n = cJSON_IsArray(mean) ? cJSON_GetArraySize(mean) : 0;
      const cJSON *m = n ? cJSON_GetArrayItem(mean, c < n ? c : n - 1) : NULL;
      const cJSON *s = n ? cJSON_GetArrayItem(sd, c < n ? c : n - 1) : NULL;
      if (!cJSON_IsNumber(m) || !cJSON_IsNumber(s) || s->valuedouble <= 0)
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: key 'image_mean'/'image_std' must be lists of numbers (std > 0)", path);
      else t->mean[c] = (float)m->valuedouble, t->std[c] = (float)s->valuedouble;
    }
  }
  cJSON_Delete(j);
  return st;
}
