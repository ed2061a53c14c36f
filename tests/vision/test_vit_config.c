// test_vit_config.c — reading HF ViT config.json files (vit.c, through core/io's table-driven
// reader): transformers' defaults for missing keys, num_labels from id2label, and one-line errors
// naming the file and the key for wrong types, out-of-range and non-finite values, unsupported
// activations and trailing garbage.
#include <stdio.h>
#include <string.h>

#include "vkp_fileio.h"
#include "vkp_test.h"
#include "vkp_vit.h"

static vkp_status load(void **state, const char *json, vkp_vit_config *c, vkp_error *err, char *path, size_t cap) {
  vkp_test_dir_path(state, "config.json", path, cap);
  const void *chunks[1] = {json};
  size_t sizes[1] = {strlen(json)};
  if (vkp_file_write_atomic(path, chunks, sizes, 1, err)) fail_msg("%s", err->msg);
  return vkp_vit_config_load(path, c, err);
}

static void test_defaults_and_labels(void **state) {
  vkp_vit_config c, d;
  vkp_error err = {0};
  char path[256];
  assert_int_equal(load(state, "{\"model_type\": \"vit\", \"id2label\": {\"0\": \"cat\", \"1\": \"dog\", \"2\": \"owl\"}}", &c,
                        &err, path, sizeof path),
                   VKP_OK);
  vkp_vit_config_default(&d);
  assert_int_equal(c.image_size, 224);
  assert_int_equal(c.patch_size, 16);
  assert_int_equal(c.hidden_size, 768);
  assert_int_equal(c.num_hidden_layers, 12);
  assert_true(c.layer_norm_eps == 1e-12f);
  assert_true(c.qkv_bias);
  assert_false(c.gelu_tanh);
  assert_int_equal(c.num_labels, 3);
  assert_string_equal(c.labels[2], "owl");
  assert_int_equal(d.num_labels, 2);
  assert_int_equal(load(state, "{\"hidden_size\": 64, \"num_attention_heads\": 4, \"intermediate_size\": 128, "
                               "\"image_size\": 28, \"patch_size\": 7, \"num_channels\": 1, \"layer_norm_eps\": 1e-6, "
                               "\"hidden_act\": \"gelu_pytorch_tanh\", \"qkv_bias\": false, \"num_labels\": 5}",
                        &c, &err, path, sizeof path),
                   VKP_OK);
  assert_int_equal(c.hidden_size, 64);
  assert_int_equal(c.image_size, 28);
  assert_int_equal(c.num_channels, 1);
  assert_true(c.layer_norm_eps == 1e-6f);
  assert_true(c.gelu_tanh);
  assert_false(c.qkv_bias);
  assert_int_equal(c.num_labels, 5);
  assert_string_equal(c.labels[4], "LABEL_4");
}

static void expect(void **state, const char *json, vkp_status want, const char *key) {
  vkp_vit_config c;
  vkp_error err = {0};
  char path[256];
  vkp_status st = load(state, json, &c, &err, path, sizeof path);
  if (st != want) fail_msg("%s: status %d, expected %d: %s", json, st, want, err.msg);
  if (!strstr(err.msg, path) || !strstr(err.msg, key)) fail_msg("%s: message '%s' names neither the file nor '%s'", json, err.msg, key);
}

static void test_errors(void **state) {
  expect(state, "{\"image_size\": 0}", VKP_ERR_INVALID, "'image_size'");
  expect(state, "{\"patch_size\": \"16\"}", VKP_ERR_INVALID, "'patch_size'");
  expect(state, "{\"num_hidden_layers\": 2.5}", VKP_ERR_INVALID, "'num_hidden_layers'");
  expect(state, "{\"layer_norm_eps\": 1e300}", VKP_ERR_INVALID, "'layer_norm_eps'");
  expect(state, "{\"layer_norm_eps\": 0}", VKP_ERR_INVALID, "'layer_norm_eps'");
  expect(state, "{\"qkv_bias\": 1}", VKP_ERR_INVALID, "'qkv_bias'");
  expect(state, "{\"hidden_act\": \"swish\"}", VKP_ERR_UNSUPPORTED, "'hidden_act'");
  expect(state, "{\"model_type\": \"clip\"}", VKP_ERR_INVALID, "'model_type'");
  expect(state, "{\"num_labels\": 300}", VKP_ERR_INVALID, "'num_labels'");
  expect(state, "{\"hidden_size\": 30, \"num_attention_heads\": 4}", VKP_ERR_INVALID, "num_attention_heads");
  expect(state, "{\"image_size\": 30}", VKP_ERR_INVALID, "patch_size");
  expect(state, "{\"image_size\": 32} }", VKP_ERR_FORMAT, "text after the JSON document");
  expect(state, "[224]", VKP_ERR_FORMAT, "not a JSON object");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_defaults_and_labels, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_errors, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
