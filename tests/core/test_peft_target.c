// test_peft_target.c — target_modules with HF PEFT's semantics: a list matches module names
// exactly or by a '.'-bounded suffix; a string is a Python `re` pattern that must match the whole
// name (peft: re.fullmatch), over every spelling of a module (checkpoint name, alias, added names).
// The patterns are the kind found in HF adapter configs: \d, (?:...), alternations, lazy and
// greedy .*, character classes, inline flags and negative lookahead (PCRE2, Python-compatible for
// these). Also: a string from adapter_config.json is the regex, and a bad pattern is a clear error.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_peft.h"
#include "vkp_test.h"

enum { L = 3 };

// A ViT-shaped module tree: checkpoint names (transformers 4) with transformers-5 aliases.
static vkp_model *make_model(void) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m;
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
  const char *parts[6][2] = {{"attention.attention.query", "attention.q_proj"}, {"attention.attention.key", "attention.k_proj"},
                             {"attention.attention.value", "attention.v_proj"}, {"attention.output.dense", "attention.o_proj"},
                             {"intermediate.dense", "mlp.fc1"},                 {"output.dense", "mlp.fc2"}};
  for (int l = 0; l < L; l++)
    for (int k = 0; k < 6; k++) {
      char n[200], a[200];
      snprintf(n, sizeof n, "vit.encoder.layer.%d.%s", l, parts[k][0]);
      snprintf(a, sizeof a, "vit.layers.%d.%s", l, parts[k][1]);
      assert_non_null(vkp_model_add_module(m, n, a, VKP_MODULE_LINEAR, l, 2, (int64_t[]){4, 4}, 4));
    }
  assert_non_null(vkp_model_add_module(m, "classifier", NULL, VKP_MODULE_LINEAR, -1, 2, (int64_t[]){2, 4}, 2));
  return m;
}

// Modules a LoRA with this regex adapts (-1: the attach fails with `want_status`).
static int count_regex(const char *pattern, vkp_status want_status) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m = make_model();
  vkp_peft_config c;
  vkp_peft_config_init(&c, VKP_PEFT_LORA);
  c.r = 1;
  c.target_regex = strdup(pattern);
  vkp_adapter *a = NULL;
  vkp_status st = vkp_peft_attach(m, &c, 1, &a);
  vkp_peft_config_clear(&c);
  int n = -1;
  if (st == VKP_OK) {
    n = 0;
    while (vkp_adapter_slot_module(a, n)) n++;
  } else if (st != want_status) {
    fail_msg("'%s': %s (%s)", pattern, vkp_status_name(st), vkp_ctx_error(ctx));
  } else {
    printf("  %-64s -> %s\n", pattern, vkp_ctx_error(ctx));
  }
  vkp_model_free(m);
  return n;
}

static void test_python_re_patterns(void **state) {
  (void)state;
  const struct { const char *pattern; int want; } cases[] = {
      // \d and alternation over the checkpoint spelling
      {"vit\\.encoder\\.layer\\.\\d+\\.attention\\.attention\\.(query|value)", 2 * L},
      // the alias spelling, a character class
      {"vit\\.layers\\.[0-9]\\.attention\\.[qv]_proj", 2 * L},
      // non-capturing groups, optional prefix
      {"(?:.*\\.)?layers\\.(?:0|2)\\.mlp\\.fc\\d", 2 * 2},
      // whole-name semantics: the pattern must match to the end ('query' alone is no name)
      {"query", 0 - 1},
      {".*query", L},
      {"vit\\.encoder\\.layer\\.1\\..*", 6},
      // an alternation whose first branch matches a prefix only: fullmatch backtracks into the second
      {"vit\\.layers\\.0\\.mlp|vit\\.layers\\.0\\.mlp\\.fc[12]", 2},
      // lazy quantifier, \w, anchors in the pattern
      {"^.*?\\.layer\\.\\w\\.output\\.dense$", L},
      // inline case-insensitive flag
      {"(?i)VIT\\.LAYERS\\.2\\.ATTENTION\\.O_PROJ", 1},
      // negative lookahead: every linear but the attention's output and the head
      {"(?!.*(?:attention\\.output|classifier)).*\\.(?:dense|query|key|value)", 5 * L},
      // a dot is any character unless escaped
      {"vit.layers.1.mlp.fc1", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int got = count_regex(cases[i].pattern, VKP_ERR_NOT_FOUND);
    if (cases[i].want >= 0) printf("  %-64s -> %d modules\n", cases[i].pattern, got);
    if (got != cases[i].want) fail_msg("'%s': %d modules, want %d", cases[i].pattern, got, cases[i].want);
  }
  // POSIX ERE could not read these; PCRE2 reports where a broken one breaks.
  assert_int_equal(count_regex("vit\\.layers\\.(\\d+", VKP_ERR_INVALID), -1);
  assert_non_null(strstr(vkp_ctx_error(vkp_test_ctx()), "target_modules: invalid regex"));
}

// From an HF adapter_config.json: a string target_modules is the regex, a list the suffixes.
static void test_config_regex(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  const char *json[2] = {
      "{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": \".*\\\\.layers\\\\.\\\\d+\\\\.attention\\\\.(q|v)_proj\"}",
      "{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": [\"q_proj\", \"attention.attention.value\"]}"};
  for (int k = 0; k < 2; k++) {
    cJSON *j = cJSON_Parse(json[k]);
    assert_non_null(j);
    vkp_peft_config c;
    vkp_error err = {0};
    if (vkp_peft_config_from_json(j, "adapter_config.json", &c, &err)) fail_msg("%s", err.msg);
    cJSON_Delete(j);
    assert_true(k == 0 ? c.target_regex != NULL : c.n_target_modules == 2);
    vkp_model *m = make_model();
    vkp_adapter *a;
    VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 1, &a));
    int n = 0;
    while (vkp_adapter_slot_module(a, n)) n++;
    printf("  %s -> %d modules\n", k == 0 ? "string (regex)" : "list (suffixes)", n);
    assert_int_equal(n, 2 * L);
    vkp_peft_config_clear(&c);
    vkp_model_free(m);
  }
}

// Suffix lists: exact names, '.'-bounded suffixes of any spelling, never a partial word.
static void test_suffix_lists(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  const struct { const char *t[2]; int want; } cases[] = {
      {{"q_proj", NULL}, L}, {{"query", "fc2"}, 2 * L}, {{"uery", NULL}, 0}, {{"classifier", NULL}, 1},
      {{"layers.2.mlp.fc1", NULL}, 1}, {{"vit.encoder.layer.0.output.dense", NULL}, 1}, {{"dense", NULL}, 3 * L}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    vkp_model *m = make_model();
    vkp_peft_config c;
    vkp_peft_config_init(&c, VKP_PEFT_LORA);
    c.r = 1;
    for (int k = 0; k < 2 && cases[i].t[k]; k++) c.target_modules[c.n_target_modules++] = strdup(cases[i].t[k]);
    vkp_adapter *a = NULL;
    vkp_status st = vkp_peft_attach(m, &c, 1, &a);
    int n = 0;
    if (st == VKP_OK)
      while (vkp_adapter_slot_module(a, n)) n++;
    else
      assert_int_equal(st, VKP_ERR_NOT_FOUND);
    printf("  [%s%s%s] -> %d modules\n", cases[i].t[0], cases[i].t[1] ? ", " : "", cases[i].t[1] ? cases[i].t[1] : "", n);
    if (n != cases[i].want) fail_msg("%s: %d modules, want %d (%s)", cases[i].t[0], n, cases[i].want, vkp_ctx_error(ctx));
    vkp_peft_config_clear(&c);
    vkp_model_free(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_python_re_patterns), cmocka_unit_test(test_config_regex),
                                     cmocka_unit_test(test_suffix_lists)};
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
