// test_json.c — core/io's JSON helpers: strict parsing (one document, nothing after it), the
// atomic writer, and the table-driven field reader (types, ranges, defaults, flags, and messages
// that name the file and the key).
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_fileio.h"
#include "vkp_json.h"
#include "vkp_test.h"

static void test_parse_strict(void **state) {
  (void)state;
  cJSON *j = NULL;
  vkp_error err = {0};
  const char *ok = " {\"a\": [1, 2]} \n\t";
  assert_int_equal(vkp_json_parse(ok, strlen(ok), "ok.json", &j, &err), VKP_OK);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "a")), 2);
  cJSON_Delete(j);
  const char *trailing = "{\"a\": 1} x";
  assert_int_equal(vkp_json_parse(trailing, strlen(trailing), "t.json", &j, &err), VKP_ERR_FORMAT);
  assert_null(j);
  assert_non_null(strstr(err.msg, "t.json: trailing text after the JSON document (at byte 9)"));
  const char *two = "{} {}";
  assert_int_equal(vkp_json_parse(two, strlen(two), "two.json", &j, &err), VKP_ERR_FORMAT);
  const char *broken = "{\"a\": }";
  assert_int_equal(vkp_json_parse(broken, strlen(broken), "b.json", &j, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "b.json: not valid JSON"));
  // Only len bytes are read: what follows in memory does not count.
  const char *prefix = "[1]garbage";
  assert_int_equal(vkp_json_parse(prefix, 3, "p.json", &j, &err), VKP_OK);
  cJSON_Delete(j);
}

static void test_write_load(void **state) {
  char path[256];
  vkp_test_dir_path(state, "doc.json", path, sizeof path);
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddNumberToObject(doc, "n", 3);
  cJSON_AddStringToObject(doc, "s", "x\"y");
  vkp_error err = {0};
  assert_int_equal(vkp_json_write_atomic(path, doc, &err), VKP_OK);
  cJSON *back = NULL;
  assert_int_equal(vkp_json_load_object(path, 1 << 20, &back, &err), VKP_OK);
  assert_true(cJSON_Compare(doc, back, true));
  cJSON_Delete(back);
  cJSON_Delete(doc);
  // A list is not an object; a missing file is an I/O error.
  vkp_test_dir_path(state, "list.json", path, sizeof path);
  cJSON *list = cJSON_CreateArray();
  assert_int_equal(vkp_json_write_atomic(path, list, &err), VKP_OK);
  cJSON_Delete(list);
  assert_int_equal(vkp_json_load_object(path, 1 << 20, &back, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "not a JSON object"));
  vkp_test_dir_path(state, "missing.json", path, sizeof path);
  assert_int_equal(vkp_json_load(path, 1 << 20, &back, &err), VKP_ERR_IO);
  // Writing into a folder that does not exist fails and says where.
  vkp_test_dir_path(state, "no/such/dir.json", path, sizeof path);
  doc = cJSON_CreateObject();
  assert_int_equal(vkp_json_write_atomic(path, doc, &err), VKP_ERR_IO);
  assert_non_null(strstr(err.msg, "dir.json"));
  cJSON_Delete(doc);
}

typedef struct cfg {
  int size;
  int64_t big;
  float eps;
  double rate;
  bool flag;
  char name[8];
  int act;
  bool tanh;
  int kept;
} cfg;

static const vkp_json_choice acts[] = {{"gelu", 0}, {"gelu_new", 1}, {"relu", 2}, {NULL, 0}};
static const vkp_json_choice tanh_acts[] = {{"gelu", 0}, {"gelu_new", 1}, {NULL, 0}};
static const vkp_json_choice kinds[] = {{"vit", 0}, {NULL, 0}};
#define F(m) offsetof(cfg, m)
static const vkp_json_field fields[] = {
    {"model_type", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = kinds},
    {"size", VKP_JSON_INT, F(size), .lo = 1, .hi = 100, .def = 10},
    {"big", VKP_JSON_INT64, F(big), .def = -5},
    {"eps", VKP_JSON_FLOAT, F(eps), .lo = 0, .hi = INFINITY, .def = 1e-6, .flags = VKP_JSON_OPEN_LO},
    {"rate", VKP_JSON_DOUBLE, F(rate), .lo = 0, .hi = 1, .def = 0.5, .flags = VKP_JSON_NULL_DEFAULT | VKP_JSON_OPEN_HI},
    {"flag", VKP_JSON_BOOL, F(flag), .def = 1},
    {"name", VKP_JSON_STRING, F(name), .size = 8, .def_str = "none"},
    {"act", VKP_JSON_ENUM, F(act), .choices = acts, .def = 2, .flags = VKP_JSON_UNSUPPORTED},
    {"act_tanh", VKP_JSON_ENUM, F(tanh), .size = sizeof(bool), .choices = tanh_acts},
    {"kept", VKP_JSON_INT, F(kept), .flags = VKP_JSON_KEEP},
};
#undef F
#define NF ((int)(sizeof fields / sizeof *fields))

// Reads `json` (an object literal) into *c; returns the status.
static vkp_status read_cfg(const char *json, cfg *c, vkp_error *err) {
  cJSON *j = NULL;
  vkp_status st = vkp_json_parse(json, strlen(json), "c.json", &j, err);
  if (!st) st = vkp_json_read_fields(j, "c.json", fields, NF, c, err);
  cJSON_Delete(j);
  return st;
}

static void test_fields_values_and_defaults(void **state) {
  (void)state;
  cfg c;
  memset(&c, 0, sizeof c);
  c.kept = 77;
  vkp_error err = {0};
  assert_int_equal(read_cfg("{\"unrelated\": [1, {}]}", &c, &err), VKP_OK);   // other keys are not looked at
  assert_int_equal(c.size, 10);
  assert_int_equal(c.big, -5);
  assert_true(c.eps == 1e-6f);
  assert_true(c.rate == 0.5);
  assert_true(c.flag);
  assert_string_equal(c.name, "none");
  assert_int_equal(c.act, 2);
  assert_false(c.tanh);
  assert_int_equal(c.kept, 77);   // KEEP: no default written
  assert_int_equal(read_cfg("{\"model_type\": \"vit\", \"size\": 100, \"big\": 9007199254740992, \"eps\": 1e-12, "
                        "\"rate\": null, \"flag\": false, \"name\": \"abcdefg\", \"act\": \"gelu_new\", "
                        "\"act_tanh\": \"gelu_new\", \"kept\": -3}",
                        &c, &err),
                   VKP_OK);
  assert_int_equal(c.size, 100);
  assert_int_equal(c.big, 9007199254740992ll);
  assert_true(c.eps == 1e-12f);
  assert_true(c.rate == 0.5);   // null: the default
  assert_false(c.flag);
  assert_string_equal(c.name, "abcdefg");
  assert_int_equal(c.act, 1);
  assert_true(c.tanh);
  assert_int_equal(c.kept, -3);
  vkp_json_field_defaults(fields, NF, &c);
  assert_int_equal(c.size, 10);
  assert_int_equal(c.kept, 0);
}

static void expect_error(const char *json, vkp_status want, const char *key, const char *text) {
  cfg c;
  memset(&c, 0, sizeof c);
  vkp_error err = {0};
  vkp_status st = read_cfg(json, &c, &err);
  if (st != want) fail_msg("%s: status %d, expected %d (%s)", json, st, want, err.msg);
  char k[64];
  snprintf(k, sizeof k, "key '%s'", key);
  if (!strstr(err.msg, "c.json: ") || !strstr(err.msg, k) || (text && !strstr(err.msg, text)))
    fail_msg("%s: message '%s' should name c.json, %s%s%s", json, err.msg, k, text ? " and " : "", text ? text : "");
}

static void test_fields_errors(void **state) {
  (void)state;
  expect_error("{\"size\": 0}", VKP_ERR_INVALID, "size", "an integer in [1, 100], not 0");
  expect_error("{\"size\": 101}", VKP_ERR_INVALID, "size", NULL);
  expect_error("{\"size\": 2.5}", VKP_ERR_INVALID, "size", "integer");
  expect_error("{\"size\": \"8\"}", VKP_ERR_INVALID, "size", "not a string");
  expect_error("{\"size\": true}", VKP_ERR_INVALID, "size", NULL);
  expect_error("{\"big\": 1e300}", VKP_ERR_INVALID, "big", NULL);
  expect_error("{\"eps\": 0}", VKP_ERR_INVALID, "eps", "> 0");
  expect_error("{\"eps\": -1e-3}", VKP_ERR_INVALID, "eps", NULL);
  expect_error("{\"eps\": 1e300}", VKP_ERR_INVALID, "eps", "1e+300");   // finite as a double, not as a float
  expect_error("{\"eps\": 1e400}", VKP_ERR_INVALID, "eps", NULL);       // cJSON reads inf
  expect_error("{\"eps\": null}", VKP_ERR_INVALID, "eps", "not null");
  expect_error("{\"rate\": 1e999}", VKP_ERR_INVALID, "rate", "finite");
  expect_error("{\"rate\": 1}", VKP_ERR_INVALID, "rate", "a finite number in [0, 1), not 1");
  expect_error("{\"rate\": [1]}", VKP_ERR_INVALID, "rate", "not a list");
  expect_error("{\"flag\": 1}", VKP_ERR_INVALID, "flag", "true or false");
  expect_error("{\"name\": \"abcdefgh\"}", VKP_ERR_INVALID, "name", "longer than 7 bytes");
  expect_error("{\"name\": 3}", VKP_ERR_INVALID, "name", "a string");
  expect_error("{\"act\": \"swish\"}", VKP_ERR_UNSUPPORTED, "act", "not supported");
  expect_error("{\"act_tanh\": \"relu\"}", VKP_ERR_INVALID, "act_tanh", "expected \"gelu\", \"gelu_new\"");
  expect_error("{\"act\": 1}", VKP_ERR_INVALID, "act", "one of");
  expect_error("{\"model_type\": \"clip\"}", VKP_ERR_INVALID, "model_type", "\"clip\", expected \"vit\"");
  // REQUIRED
  static const vkp_json_field req[] = {{"step", VKP_JSON_INT64, 0, .flags = VKP_JSON_REQUIRED}};
  int64_t v = 0;
  cJSON *j = cJSON_CreateObject();
  vkp_error err = {0};
  assert_int_equal(vkp_json_read_fields(j, "s.json", req, 1, &v, &err), VKP_ERR_INVALID);
  assert_non_null(strstr(err.msg, "s.json: key 'step' is missing"));
  cJSON_Delete(j);
  assert_int_equal(vkp_json_read_fields(NULL, "s.json", req, 1, &v, &err), VKP_ERR_FORMAT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_strict),
      cmocka_unit_test_setup_teardown(test_write_load, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_fields_values_and_defaults),
      cmocka_unit_test(test_fields_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
