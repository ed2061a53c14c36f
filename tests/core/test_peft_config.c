// test_peft_config.c — PEFT method names and HF adapter_config.json parsing (no device needed):
// every method's keys, to_json -> from_json round trips, and the exact messages for bad keys.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_peft.h"
#include "vkp_peft_method.h"
#include "vkp_test.h"

#define WHERE "run/adapter_config.json"

static void parse_ok(const char *json, vkp_peft_config *c) {
  cJSON *j = cJSON_Parse(json);
  if (!j) fail_msg("test JSON does not parse: %s", json);
  vkp_error err = {0};
  vkp_status st = vkp_peft_config_from_json(j, WHERE, c, &err);
  cJSON_Delete(j);
  if (st) fail_msg("from_json failed (%s): %s\n  on %s", vkp_status_name(st), err.msg, json);
}

static void parse_fails(const char *json, vkp_status want, const char *want_msg) {
  cJSON *j = cJSON_Parse(json);
  if (!j) fail_msg("test JSON does not parse: %s", json);
  vkp_error err = {0};
  vkp_peft_config c;
  memset(&c, 0, sizeof c);
  vkp_status st = vkp_peft_config_from_json(j, WHERE, &c, &err);
  cJSON_Delete(j);
  printf("  %-62s -> %s\n", json, err.msg);
  if (st != want) fail_msg("%s: status %s, want %s (%s)", json, vkp_status_name(st), vkp_status_name(want), err.msg);
  assert_int_equal(err.status, want);
  if (strcmp(err.msg, want_msg)) fail_msg("%s:\n  message \"%s\"\n  want    \"%s\"", json, err.msg, want_msg);
  vkp_peft_config_clear(&c);
}

static void assert_list(char *const *got, int n, const char *const *want, int nwant) {
  assert_int_equal(n, nwant);
  for (int i = 0; i < n; i++) assert_string_equal(got[i], want[i]);
}

// Field-by-field equality of two configs.
static void assert_config_equal(const vkp_peft_config *a, const vkp_peft_config *b) {
  assert_int_equal(a->method, b->method);
  assert_string_equal(a->name, b->name);
  assert_list(a->target_modules, a->n_target_modules, (const char *const *)b->target_modules, b->n_target_modules);
  assert_list(a->modules_to_save, a->n_modules_to_save, (const char *const *)b->modules_to_save, b->n_modules_to_save);
  assert_list(a->feedforward_modules, a->n_feedforward_modules, (const char *const *)b->feedforward_modules,
              b->n_feedforward_modules);
  if (a->target_regex || b->target_regex) {
    assert_non_null(a->target_regex);
    assert_non_null(b->target_regex);
    assert_string_equal(a->target_regex, b->target_regex);
  }
  assert_int_equal(a->n_layers_to_transform, b->n_layers_to_transform);
  for (int i = 0; i < a->n_layers_to_transform; i++) assert_int_equal(a->layers_to_transform[i], b->layers_to_transform[i]);
  assert_int_equal(a->r, b->r);
  assert_true(a->alpha == b->alpha);
  assert_true(a->dropout == b->dropout);
  assert_int_equal(a->use_rslora, b->use_rslora);
  assert_int_equal(a->use_dora, b->use_dora);
  assert_int_equal(a->init, b->init);
  assert_int_equal(a->init_weights, b->init_weights);
  assert_int_equal(a->decompose_factor, b->decompose_factor);
  assert_true(a->vera_d_initial == b->vera_d_initial);
  assert_int_equal(a->projection_seed, b->projection_seed);
  assert_int_equal(a->bottleneck, b->bottleneck);
  assert_int_equal(a->pfeiffer, b->pfeiffer);
  assert_true(a->adapter_scale == b->adapter_scale);
  assert_int_equal(a->n_tokens, b->n_tokens);
  assert_int_equal(a->deep, b->deep);
  assert_true(a->density == b->density);
  assert_int_equal(a->mask, b->mask);
  assert_int_equal(a->oft_block_size, b->oft_block_size);
  assert_true(a->module_dropout == b->module_dropout);
  assert_int_equal(a->coft, b->coft);
  assert_true(a->eps == b->eps);
  assert_int_equal(a->block_share, b->block_share);
  assert_int_equal(a->use_cayley_neumann, b->use_cayley_neumann);
  assert_int_equal(a->num_cayley_neumann_terms, b->num_cayley_neumann_terms);
}

// ---- names ----------------------------------------------------------------------------------------

static void test_method_names(void **s) {
  (void)s;
  // The method table: one def per method, in enum order, every name and peft_type parses back.
  for (int i = 0; i < VKP_PEFT_METHOD_COUNT; i++) {
    const vkp_peft_method_def *d = vkp_peft_methods[i];
    vkp_peft_method m = VKP_PEFT_METHOD_COUNT;
    assert_non_null(d);
    assert_int_equal(d->id, i);
    assert_string_equal(vkp_peft_method_name((vkp_peft_method)i), d->name);
    assert_true(vkp_peft_method_parse(d->name, &m));
    assert_int_equal(m, i);
    assert_true(vkp_peft_method_parse(d->peft_type, &m));
    assert_int_equal(m, i);
    assert_true(d->level == VKP_PEFT_LEVEL_SELECTIVE ? d->select || !d->create : d->create != NULL);
    assert_true(d->level != VKP_PEFT_LEVEL_WEIGHT || d->merge);   // weight-level methods merge
    assert_true(d->n_presets >= 1);                                 // compare / bench run every method
    printf("  %-13s %-20s %d keys, %d presets\n", d->name, d->peft_type, d->n_fields + d->n_keys, d->n_presets);
  }
  assert_string_equal(vkp_peft_method_name(VKP_PEFT_OFT), "oft");
  assert_string_equal(vkp_peft_method_name(VKP_PEFT_METHOD_COUNT), "?");
  // HF peft_type spellings and the aliases users reach for.
  const struct { const char *name; vkp_peft_method m; } alias[] = {
      {"LORA", VKP_PEFT_LORA},         {"LOHA", VKP_PEFT_LOHA},        {"LOKR", VKP_PEFT_LOKR},
      {"IA3", VKP_PEFT_IA3},           {"VERA", VKP_PEFT_VERA},        {"LN_TUNING", VKP_PEFT_LN_TUNING},
      {"rslora", VKP_PEFT_LORA},       {"DoRA", VKP_PEFT_LORA},        {"houlsby", VKP_PEFT_BOTTLENECK},
      {"pfeiffer", VKP_PEFT_BOTTLENECK}, {"vpt_deep", VKP_PEFT_VPT},   {"vpt_shallow", VKP_PEFT_VPT},
      {"prefix_tuning", VKP_PEFT_PREFIX}, {"sparse", VKP_PEFT_MASKED}, {"VKPEFT_BOTTLENECK", VKP_PEFT_BOTTLENECK},
      {"VKPEFT_LINEAR_PROBE", VKP_PEFT_LINEAR_PROBE}, {"OFT", VKP_PEFT_OFT}, {"coft", VKP_PEFT_OFT},
  };
  for (size_t i = 0; i < sizeof alias / sizeof *alias; i++) {
    vkp_peft_method m = VKP_PEFT_METHOD_COUNT;
    if (!vkp_peft_method_parse(alias[i].name, &m)) fail_msg("'%s' does not parse", alias[i].name);
    assert_int_equal(m, alias[i].m);
  }
  vkp_peft_method m;
  assert_false(vkp_peft_method_parse("adalora", &m));
  assert_false(vkp_peft_method_parse("", &m));
}

static void test_defaults(void **s) {
  (void)s;
  vkp_peft_config c;
  vkp_peft_config_init(&c, VKP_PEFT_LORA);
  assert_string_equal(c.name, "default");
  assert_int_equal(c.r, 8);
  assert_true(c.alpha == 8);
  assert_true(c.init_weights);
  assert_int_equal(c.decompose_factor, -1);
  assert_int_equal(c.n_target_modules, 0);
  vkp_peft_config_init(&c, VKP_PEFT_VERA);
  assert_int_equal(c.r, 256);   // peft VeraConfig default
  vkp_peft_config_init(&c, VKP_PEFT_ADAPTFORMER);
  assert_true(c.adapter_scale == 0.1f);
  vkp_peft_config_clear(&c);
  vkp_peft_config_clear(&c);   // twice is fine
}

// ---- every method's keys -------------------------------------------------------------------------

static void test_parse_lora(void **s) {
  (void)s;
  vkp_peft_config c;
  // As peft 0.21 writes it (keys it has that vkpeft ignores or accepts at their default).
  parse_ok("{\"peft_type\": \"LORA\", \"r\": 16, \"lora_alpha\": 32, \"lora_dropout\": 0.1, \"use_rslora\": true,"
           " \"use_dora\": true, \"target_modules\": [\"q_proj\", \"v_proj\"], \"modules_to_save\": [\"classifier\"],"
           " \"layers_to_transform\": [0, 2], \"init_lora_weights\": false, \"bias\": \"none\", \"fan_in_fan_out\": false,"
           " \"task_type\": null, \"base_model_name_or_path\": \"google/vit\", \"alpha_pattern\": {}, \"rank_pattern\": {},"
           " \"inference_mode\": true, \"peft_version\": \"0.21.0\", \"revision\": null, \"loftq_config\": {},"
           " \"megatron_config\": null, \"megatron_core\": \"megatron.core\", \"layer_replication\": null, \"lora_bias\": false,"
           " \"use_qalora\": false, \"qalora_group_size\": 16, \"exclude_modules\": null, \"layers_pattern\": null,"
           " \"auto_mapping\": {\"base_model_class\": \"ViTForImageClassification\"}, \"eva_config\": null,"
           " \"corda_config\": null, \"trainable_token_indices\": null, \"target_parameters\": null}",
           &c);
  assert_int_equal(c.method, VKP_PEFT_LORA);
  assert_int_equal(c.r, 16);
  assert_true(c.alpha == 32);
  assert_true(c.dropout == 0.1f);
  assert_true(c.use_rslora);
  assert_true(c.use_dora);
  assert_false(c.init_weights);
  assert_int_equal(c.init, VKP_LORA_INIT_DEFAULT);
  assert_list(c.target_modules, c.n_target_modules, (const char *[]){"q_proj", "v_proj"}, 2);
  assert_list(c.modules_to_save, c.n_modules_to_save, (const char *[]){"classifier"}, 1);
  assert_int_equal(c.n_layers_to_transform, 2);
  assert_int_equal(c.layers_to_transform[1], 2);
  assert_null(c.target_regex);
  assert_string_equal(c.name, "default");
  vkp_peft_config_clear(&c);
  // A single string target is a regex (peft: re.fullmatch); a single layer index; gaussian init.
  parse_ok("{\"peft_type\": \"LORA\", \"target_modules\": \".*\\\\.(query|value)\", \"layers_to_transform\": 3,"
           " \"init_lora_weights\": \"gaussian\", \"modules_to_save\": null, \"adapter_name\": \"style\"}",
           &c);
  assert_non_null(c.target_regex);
  assert_string_equal(c.target_regex, ".*\\.(query|value)");
  assert_int_equal(c.n_target_modules, 0);
  assert_int_equal(c.n_layers_to_transform, 1);
  assert_int_equal(c.layers_to_transform[0], 3);
  assert_int_equal(c.init, VKP_LORA_INIT_GAUSSIAN);
  assert_string_equal(c.name, "style");
  assert_int_equal(c.r, 8);   // defaults kept
  vkp_peft_config_clear(&c);
  assert_null(c.target_regex);
}

static void test_parse_loha_lokr(void **s) {
  (void)s;
  vkp_peft_config c;
  parse_ok("{\"peft_type\": \"LOHA\", \"r\": 6, \"alpha\": 12, \"init_weights\": false, \"rank_dropout\": 0.0,"
           " \"module_dropout\": 0.0, \"use_effective_conv2d\": false, \"target_modules\": [\"fc1\"]}",
           &c);
  assert_int_equal(c.method, VKP_PEFT_LOHA);
  assert_int_equal(c.r, 6);
  assert_true(c.alpha == 12);
  assert_false(c.init_weights);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"LOKR\", \"r\": 4, \"alpha\": 2.5, \"decompose_factor\": 8, \"decompose_both\": false,"
           " \"rank_dropout_scale\": false, \"init_weights\": true}",
           &c);
  assert_int_equal(c.method, VKP_PEFT_LOKR);
  assert_int_equal(c.decompose_factor, 8);
  assert_true(c.alpha == 2.5f);
  assert_true(c.init_weights);
  vkp_peft_config_clear(&c);
}

static void test_parse_ia3_vera(void **s) {
  (void)s;
  vkp_peft_config c;
  parse_ok("{\"peft_type\": \"IA3\", \"target_modules\": [\"key\", \"value\", \"fc2\"], \"feedforward_modules\": [\"fc2\"],"
           " \"init_ia3_weights\": false, \"fan_in_fan_out\": false}",
           &c);
  assert_int_equal(c.method, VKP_PEFT_IA3);
  assert_list(c.feedforward_modules, c.n_feedforward_modules, (const char *[]){"fc2"}, 1);
  assert_int_equal(c.n_target_modules, 3);
  assert_false(c.init_weights);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"VERA\", \"r\": 32, \"d_initial\": 0.25, \"projection_prng_key\": 7, \"save_projection\": true,"
           " \"vera_dropout\": 0.05, \"bias\": \"none\", \"init_weights\": true}",
           &c);
  assert_int_equal(c.method, VKP_PEFT_VERA);
  assert_int_equal(c.r, 32);
  assert_true(c.vera_d_initial == 0.25f);
  assert_int_equal(c.projection_seed, 7);
  assert_true(c.dropout == 0.05f);
  vkp_peft_config_clear(&c);
}

static void test_parse_additive_and_selective(void **s) {
  (void)s;
  vkp_peft_config c;
  parse_ok("{\"peft_type\": \"bottleneck\", \"bottleneck\": 24, \"adapter_scale\": 0.5, \"placement\": \"pfeiffer\","
           " \"init_weights\": false}",
           &c);
  assert_int_equal(c.method, VKP_PEFT_BOTTLENECK);
  assert_int_equal(c.bottleneck, 24);
  assert_true(c.adapter_scale == 0.5f);
  assert_true(c.pfeiffer);
  assert_false(c.init_weights);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"VKPEFT_BOTTLENECK\", \"placement\": \"houlsby\"}", &c);
  assert_false(c.pfeiffer);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"adaptformer\", \"bottleneck\": 8}", &c);
  assert_int_equal(c.method, VKP_PEFT_ADAPTFORMER);
  assert_int_equal(c.bottleneck, 8);
  assert_true(c.adapter_scale == 0.1f);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"VKPEFT_VPT\", \"num_tokens\": 5, \"deep\": true}", &c);
  assert_int_equal(c.method, VKP_PEFT_VPT);
  assert_int_equal(c.n_tokens, 5);
  assert_true(c.deep);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"prefix\", \"num_virtual_tokens\": 12}", &c);
  assert_int_equal(c.method, VKP_PEFT_PREFIX);
  assert_int_equal(c.n_tokens, 12);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"masked\", \"density\": 0.05, \"mask\": \"magnitude\", \"target_modules\": [\"query\"]}", &c);
  assert_int_equal(c.method, VKP_PEFT_MASKED);
  assert_true(c.density == 0.05f);
  assert_int_equal(c.mask, VKP_MASK_MAGNITUDE);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"masked\", \"mask\": \"gradient\"}", &c);
  assert_int_equal(c.mask, VKP_MASK_GRADIENT);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"VKPEFT_BITFIT\", \"target_modules\": [\"query\"], \"modules_to_save\": [\"classifier\"]}", &c);
  assert_int_equal(c.method, VKP_PEFT_BITFIT);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"LN_TUNING\", \"layers_to_transform\": [1]}", &c);
  assert_int_equal(c.method, VKP_PEFT_LN_TUNING);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"full\"}", &c);
  assert_int_equal(c.method, VKP_PEFT_FULL);
  vkp_peft_config_clear(&c);
  parse_ok("{\"peft_type\": \"linear_probe\", \"modules_to_save\": [\"classifier\"]}", &c);
  assert_int_equal(c.method, VKP_PEFT_LINEAR_PROBE);
  vkp_peft_config_clear(&c);
}

// ---- to_json -> from_json -------------------------------------------------------------------------

static void add(char **list, int *n, const char *v) { list[(*n)++] = strdup(v); }

static void roundtrip(const vkp_peft_config *c) {
  cJSON *j = vkp_peft_config_to_json(c);
  assert_non_null(j);
  // Through text, as in a file.
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  j = cJSON_Parse(text);
  assert_non_null(j);
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
  assert_true(cJSON_IsString(pt));
  vkp_peft_config back;
  vkp_error err = {0};
  vkp_status st = vkp_peft_config_from_json(j, "roundtrip.json", &back, &err);
  if (st) fail_msg("%s: to_json output does not parse back: %s\n%s", vkp_peft_method_name(c->method), err.msg, text);
  assert_config_equal(&back, c);
  printf("  %-12s round trip ok (%s)\n", vkp_peft_method_name(c->method), pt->valuestring);
  vkp_peft_config_clear(&back);
  cJSON_Delete(j);
  free(text);
}

static void test_roundtrip_every_method(void **s) {
  (void)s;
  for (int m = 0; m < VKP_PEFT_METHOD_COUNT; m++) {
    vkp_peft_config c;
    vkp_peft_config_init(&c, (vkp_peft_method)m);
    // Non-default values for the keys the method writes.
    add(c.target_modules, &c.n_target_modules, "query");
    add(c.target_modules, &c.n_target_modules, "attention.output.dense");
    add(c.modules_to_save, &c.n_modules_to_save, "classifier");
    c.layers_to_transform[c.n_layers_to_transform++] = 1;
    c.layers_to_transform[c.n_layers_to_transform++] = 3;
    snprintf(c.name, sizeof c.name, "adapter_%d", m);
    switch (m) {
      case VKP_PEFT_LORA: c.r = 12, c.alpha = 3.5f, c.dropout = 0.25f, c.use_rslora = true, c.use_dora = true, c.init_weights = false; break;
      case VKP_PEFT_LOHA: c.r = 5, c.alpha = 7, c.init_weights = false; break;
      case VKP_PEFT_LOKR: c.r = 3, c.alpha = 9, c.decompose_factor = 4, c.init_weights = false; break;
      case VKP_PEFT_IA3: add(c.feedforward_modules, &c.n_feedforward_modules, "fc2"); c.init_weights = false; break;
      case VKP_PEFT_VERA: c.r = 64, c.vera_d_initial = 0.5f, c.projection_seed = 12345, c.dropout = 0.125f, c.init_weights = false; break;
      case VKP_PEFT_BOTTLENECK: c.bottleneck = 48, c.adapter_scale = 2.0f, c.pfeiffer = true, c.init_weights = false; break;
      case VKP_PEFT_ADAPTFORMER: c.bottleneck = 16, c.adapter_scale = 0.3f, c.init_weights = false; break;
      case VKP_PEFT_VPT: c.n_tokens = 7, c.deep = true; break;
      case VKP_PEFT_PREFIX: c.n_tokens = 9; break;
      case VKP_PEFT_MASKED: c.density = 0.03f, c.mask = VKP_MASK_MAGNITUDE, c.init_weights = false; break;
      case VKP_PEFT_OFT:
        c.r = 4, c.oft_block_size = 0, c.coft = true, c.eps = 1e-3f, c.block_share = true, c.use_cayley_neumann = false;
        c.num_cayley_neumann_terms = 7, c.module_dropout = 0.125f, c.init_weights = false;
        break;
      default: break;
    }
    roundtrip(&c);
    vkp_peft_config_clear(&c);
  }
  // LoRA with gaussian init; a regex target; the default adapter name; masked gradient masks.
  vkp_peft_config c;
  vkp_peft_config_init(&c, VKP_PEFT_LORA);
  c.init = VKP_LORA_INIT_GAUSSIAN;
  c.target_regex = strdup(".*layer\\.[01]\\..*\\.query");
  roundtrip(&c);
  vkp_peft_config_clear(&c);
  vkp_peft_config_init(&c, VKP_PEFT_MASKED);
  c.mask = VKP_MASK_GRADIENT;
  roundtrip(&c);
  vkp_peft_config_clear(&c);
}

// An OFT adapter_config.json with every key peft 0.21's OFTConfig writes.
static void test_parse_oft(void **s) {
  (void)s;
  vkp_peft_config c;
  parse_ok("{\"auto_mapping\": null, \"base_model_name_or_path\": null, \"bias\": \"none\", \"block_share\": false,"
           " \"coft\": true, \"eps\": 0.001, \"exclude_modules\": null, \"fan_in_fan_out\": false, \"inference_mode\": true,"
           " \"init_weights\": true, \"layers_pattern\": null, \"layers_to_transform\": null, \"module_dropout\": 0.0,"
           " \"modules_to_save\": [\"classifier\"], \"num_cayley_neumann_terms\": 5, \"oft_block_size\": 16,"
           " \"peft_type\": \"OFT\", \"peft_version\": \"0.21.0\", \"r\": 0, \"revision\": null,"
           " \"target_modules\": [\"q_proj\", \"v_proj\"], \"task_type\": null, \"use_cayley_neumann\": true}", &c);
  assert_int_equal(c.method, VKP_PEFT_OFT);
  assert_int_equal(c.r, 0);
  assert_int_equal(c.oft_block_size, 16);
  assert_true(c.coft);
  assert_true(fabsf(c.eps - 1e-3f) < 1e-9f);
  assert_true(c.use_cayley_neumann);
  assert_int_equal(c.num_cayley_neumann_terms, 5);
  assert_int_equal(c.n_target_modules, 2);
  vkp_peft_config_clear(&c);
  parse_fails("{\"peft_type\": \"OFT\", \"r\": 4}", VKP_ERR_INVALID,
              WHERE ": exactly one of 'r' and 'oft_block_size' must be non-zero (r x oft_block_size = the layer's input "
                    "size), not r = 4 and oft_block_size = 32");
  parse_fails("{\"peft_type\": \"OFT\", \"oft_block_size\": 0}", VKP_ERR_INVALID,
              WHERE ": exactly one of 'r' and 'oft_block_size' must be non-zero (r x oft_block_size = the layer's input "
                    "size), not r = 0 and oft_block_size = 0");
  parse_fails("{\"peft_type\": \"OFT\", \"bias\": \"oft_only\"}", VKP_ERR_UNSUPPORTED,
              WHERE ": key 'bias': only \"none\" is supported (use the bitfit method to train biases)");
  parse_fails("{\"peft_type\": \"OFT\", \"lora_alpha\": 8}", VKP_ERR_INVALID, WHERE ": unknown key 'lora_alpha' for peft_type OFT");
  // A training config entry: the "coft" alias implies coft.
  cJSON *e = cJSON_Parse("{\"method\": \"coft\", \"oft_block_size\": 8, \"target_modules\": [\"query\"]}");
  vkp_error err = {0};
  if (vkp_peft_config_from_entry(e, "config peft[0]", &c, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(e);
  assert_int_equal(c.method, VKP_PEFT_OFT);
  assert_true(c.coft);
  assert_int_equal(c.oft_block_size, 8);
  vkp_peft_config_clear(&c);
}

// The fixture adapter configs (written by peft 0.21) parse.
static void test_fixture_configs(void **s) {
  (void)s;
  const char *methods[] = {"lora", "rslora", "dora", "loha", "lokr", "ia3"};
  for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s/adapter_config.json", vkp_fixture_path("vit/adapters"), methods[i]);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    vkp_peft_config c;
    parse_ok(buf, &c);
    assert_int_equal(c.n_modules_to_save, 1);
    printf("  %-8s %s r=%d alpha=%g rslora=%d dora=%d targets=%d\n", methods[i], vkp_peft_method_name(c.method), c.r,
           (double)c.alpha, c.use_rslora, c.use_dora, c.n_target_modules);
    vkp_peft_config_clear(&c);
  }
}

// ---- exact error messages ---------------------------------------------------------------------------

static void test_errors(void **s) {
  (void)s;
  parse_fails("[1, 2]", VKP_ERR_FORMAT, WHERE ": not a JSON object");
  parse_fails("{\"r\": 4}", VKP_ERR_INVALID, WHERE ": key 'peft_type': missing or not a string");
  parse_fails("{\"peft_type\": 3}", VKP_ERR_INVALID, WHERE ": key 'peft_type': missing or not a string");
  parse_fails("{\"peft_type\": \"ADALORA\"}", VKP_ERR_INVALID, WHERE ": key 'peft_type': unknown PEFT method");
  // Unknown keys, also keys of another method.
  parse_fails("{\"peft_type\": \"LORA\", \"lora_fancy\": 1}", VKP_ERR_INVALID,
              WHERE ": unknown key 'lora_fancy' for peft_type LORA");
  parse_fails("{\"peft_type\": \"LORA\", \"deep\": true}", VKP_ERR_INVALID, WHERE ": unknown key 'deep' for peft_type LORA");
  parse_fails("{\"peft_type\": \"LOHA\", \"lora_alpha\": 8}", VKP_ERR_INVALID,
              WHERE ": unknown key 'lora_alpha' for peft_type LOHA");
  parse_fails("{\"peft_type\": \"IA3\", \"r\": 8}", VKP_ERR_INVALID, WHERE ": unknown key 'r' for peft_type IA3");
  // An error after the string lists were read frees them (the sanitizer build checks for leaks).
  parse_fails("{\"peft_type\": \"IA3\", \"target_modules\": [\"a\", \"b\"], \"modules_to_save\": [\"c\"], "
              "\"feedforward_modules\": [\"a\"], \"r\": 8}", VKP_ERR_INVALID, WHERE ": unknown key 'r' for peft_type IA3");
  parse_fails("{\"peft_type\": \"vpt\", \"bottleneck\": 8}", VKP_ERR_INVALID, WHERE ": unknown key 'bottleneck' for peft_type vpt");
  // Wrong types and out-of-range values.
  parse_fails("{\"peft_type\": \"LORA\", \"r\": \"four\"}", VKP_ERR_INVALID, WHERE ": key 'r' must be an integer in [1, 65536], not a string");
  parse_fails("{\"peft_type\": \"LORA\", \"r\": 2.5}", VKP_ERR_INVALID, WHERE ": key 'r' must be an integer in [1, 65536], not 2.5");
  parse_fails("{\"peft_type\": \"LORA\", \"r\": 0}", VKP_ERR_INVALID, WHERE ": key 'r' must be an integer in [1, 65536], not 0");
  parse_fails("{\"peft_type\": \"LORA\", \"lora_alpha\": null}", VKP_ERR_INVALID, WHERE ": key 'lora_alpha' must be a finite number, not null");
  parse_fails("{\"peft_type\": \"LORA\", \"use_rslora\": \"yes\"}", VKP_ERR_INVALID,
              WHERE ": key 'use_rslora' must be true or false, not a string");
  parse_fails("{\"peft_type\": \"LORA\", \"use_dora\": 1}", VKP_ERR_INVALID, WHERE ": key 'use_dora' must be true or false, not a number");
  parse_fails("{\"peft_type\": \"LORA\", \"lora_dropout\": 1}", VKP_ERR_INVALID,
              WHERE ": key 'lora_dropout' must be a probability in [0, 1), not 1");
  parse_fails("{\"peft_type\": \"LORA\", \"target_modules\": 5}", VKP_ERR_INVALID,
              WHERE ": key 'target_modules': expected a list of strings");
  parse_fails("{\"peft_type\": \"LORA\", \"target_modules\": [\"query\", 1]}", VKP_ERR_INVALID,
              WHERE ": key 'target_modules': expected a list of strings");
  parse_fails("{\"peft_type\": \"LORA\", \"modules_to_save\": {\"a\": 1}}", VKP_ERR_INVALID,
              WHERE ": key 'modules_to_save': expected a list of strings");
  parse_fails("{\"peft_type\": \"LORA\", \"layers_to_transform\": \"0\"}", VKP_ERR_INVALID,
              WHERE ": key 'layers_to_transform': expected an integer or a list of integers");
  parse_fails("{\"peft_type\": \"LORA\", \"layers_to_transform\": [0, -1]}", VKP_ERR_INVALID,
              WHERE ": key 'layers_to_transform' must be an integer in [0, 1048576], not -1");
  parse_fails("{\"peft_type\": \"LORA\", \"init_lora_weights\": \"pissa\"}", VKP_ERR_INVALID,
              WHERE ": key 'init_lora_weights': expected true, false or \"gaussian\"");
  parse_fails("{\"peft_type\": \"LOKR\", \"decompose_factor\": -2}", VKP_ERR_INVALID,
              WHERE ": key 'decompose_factor' must be an integer in [-1, 1048576], not -2");
  parse_fails("{\"peft_type\": \"bottleneck\", \"placement\": \"middle\"}", VKP_ERR_INVALID,
              WHERE ": key 'placement' is \"middle\", expected \"houlsby\", \"pfeiffer\"");
  parse_fails("{\"peft_type\": \"vpt\", \"num_tokens\": 0}", VKP_ERR_INVALID,
              WHERE ": key 'num_tokens' must be an integer in [1, 4096], not 0");
  parse_fails("{\"peft_type\": \"vpt\", \"deep\": \"true\"}", VKP_ERR_INVALID, WHERE ": key 'deep' must be true or false, not a string");
  parse_fails("{\"peft_type\": \"masked\", \"density\": 0}", VKP_ERR_INVALID, WHERE ": key 'density' must be a finite number in (0, 1], not 0");
  parse_fails("{\"peft_type\": \"masked\", \"mask\": \"topk\"}", VKP_ERR_INVALID,
              WHERE ": key 'mask' is \"topk\", expected \"random\", \"magnitude\", \"gradient\"");
  parse_fails("{\"peft_type\": \"LORA\", \"adapter_name\": \"\"}", VKP_ERR_INVALID,
              WHERE ": key 'adapter_name': expected a short non-empty string");
  // peft options at a non-default value: a clear "unsupported", never silently other numbers.
  parse_fails("{\"peft_type\": \"LORA\", \"fan_in_fan_out\": true}", VKP_ERR_UNSUPPORTED,
              WHERE ": key 'fan_in_fan_out': only the default value is supported");
  parse_fails("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"query\": 16}}", VKP_ERR_UNSUPPORTED,
              WHERE ": key 'rank_pattern': only the default value is supported");
  parse_fails("{\"peft_type\": \"LORA\", \"exclude_modules\": [\"layer.0.query\"]}", VKP_ERR_UNSUPPORTED,
              WHERE ": key 'exclude_modules': only the default value is supported");
  parse_fails("{\"peft_type\": \"LOKR\", \"use_effective_conv2d\": true}", VKP_ERR_UNSUPPORTED,
              WHERE ": key 'use_effective_conv2d': only the default value is supported");
  parse_fails("{\"peft_type\": \"LOHA\", \"rank_dropout\": 0.1}", VKP_ERR_UNSUPPORTED,
              WHERE ": key 'rank_dropout': only the default value is supported");
  parse_fails("{\"peft_type\": \"LORA\", \"bias\": \"all\"}", VKP_ERR_UNSUPPORTED,
              WHERE ": key 'bias': only \"none\" is supported (use the bitfit method to train biases)");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_method_names),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_parse_lora),
      cmocka_unit_test(test_parse_loha_lokr),
      cmocka_unit_test(test_parse_ia3_vera),
      cmocka_unit_test(test_parse_additive_and_selective),
      cmocka_unit_test(test_parse_oft),
      cmocka_unit_test(test_roundtrip_every_method),
      cmocka_unit_test(test_fixture_configs),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
