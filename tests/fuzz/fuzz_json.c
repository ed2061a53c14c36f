// fuzz_json.c — libFuzzer target: the JSON config readers on arbitrary bytes: strict parsing
// (vkp_json_parse: trailing text, depth, numbers), table-driven field reading of every type
// (vkp_json_read_fields), merging into defaults (vkp_config_merge) and `--set key=value` lines
// (vkp_config_apply_set; the input's lines after the first NUL byte).
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_config.h"
#include "vkp_json.h"

typedef struct fields {
  int i;
  int64_t i64;
  float f;
  double d;
  bool b;
  char s[16];
  int e;
} fields;

static const vkp_json_choice kinds[] = {{"gelu", 0}, {"relu", 1}, {NULL, 0}};
#define F(m) offsetof(fields, m)
static const vkp_json_field table[] = {
    {"i", VKP_JSON_INT, F(i), .lo = 1, .hi = 4096, .def = 8},
    {"i64", VKP_JSON_INT64, F(i64), .lo = -1, .hi = 9007199254740992.0},
    {"f", VKP_JSON_FLOAT, F(f), .lo = 0, .hi = INFINITY, .flags = VKP_JSON_OPEN_LO, .def = 1e-6},
    {"d", VKP_JSON_DOUBLE, F(d), .lo = 0, .hi = 1, .flags = VKP_JSON_OPEN_HI},
    {"b", VKP_JSON_BOOL, F(b), .def = 0},
    {"s", VKP_JSON_STRING, F(s), .size = 16},
    {"e", VKP_JSON_ENUM, F(e), .choices = kinds, .flags = VKP_JSON_UNSUPPORTED | VKP_JSON_NULL_DEFAULT},
};
#undef F

static const char defaults[] = "{\"model\": {\"image_size\": 0, \"init\": {\"hidden_size\": 64}}, \"peft\": [{\"r\": 8}],"
                               " \"train\": {\"lr\": 0.001, \"schedule\": \"cosine\"}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  size_t json_len = strnlen(text, size);
  vkp_error err;
  cJSON *base = NULL;
  if (vkp_json_parse(defaults, sizeof defaults - 1, "defaults", &base, &err) != VKP_OK) abort();
  cJSON *user = NULL;
  if (vkp_json_parse(text, json_len, "fuzz.json", &user, &err) == VKP_OK) {
    fields out;
    memset(&out, 0, sizeof out);
    (void)vkp_json_read_fields(user, "fuzz.json", table, (int)(sizeof table / sizeof *table), &out, &err);
    if (out.s[sizeof out.s - 1] != '\0') abort();
    (void)vkp_config_merge(base, user, "fuzz.json", &err);
    cJSON_Delete(user);
  }
  // After the first NUL: one `--set` assignment per line.
  if (json_len + 1 < size) {
    size_t rest = size - json_len - 1;
    char *lines = malloc(rest + 1);
    if (!lines) abort();
    memcpy(lines, text + json_len + 1, rest);
    lines[rest] = '\0';
    for (char *save = NULL, *l = strtok_r(lines, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
      (void)vkp_config_apply_set(base, l, &err);
    free(lines);
  }
  long v;
  double r;
  (void)vkp_config_int(base, "model.init.hidden_size", 1, 8192, &v, &err);
  (void)vkp_config_real(base, "train.lr", 0, 10, &r, &err);
  (void)vkp_config_string(base, "train.schedule");
  cJSON_Delete(base);
  return 0;
}
