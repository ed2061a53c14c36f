// test_peft_presets.c — the comparison table that `vkpeft compare` and `vkpeft bench peft` run is
// the PEFT method table's presets (plus a hybrid): every method has one, each resolves its module
// roles on a ViT and attaches, and OFT is among them.
#include <stdio.h>
#include <string.h>

#include "vkp_classify.h"
#include "vkp_compare.h"
#include "vkp_peft_method.h"
#include "vkp_test.h"
#include "vkp_vit.h"

static void test_every_method_in_compare(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  // Every method of the table appears among compare's entries.
  for (int m = 0; m < VKP_PEFT_METHOD_COUNT; m++) {
    bool found = false;
    for (int i = 0; i < vkp_compare_method_count() && !found; i++) {
      vkp_error err = {0};
      cJSON *list = vkp_compare_method_peft(i, &err);
      if (!list) fail_msg("%s: %s", vkp_compare_method_name(i), err.msg);
      const cJSON *e;
      cJSON_ArrayForEach(e, list) {
        vkp_peft_config c;
        if (vkp_peft_config_from_entry(e, vkp_compare_method_name(i), &c, &err)) fail_msg("%s", err.msg);
        found = found || c.method == (vkp_peft_method)m;
        vkp_peft_config_clear(&c);
      }
      cJSON_Delete(list);
    }
    if (!found) fail_msg("method %s has no entry in vkpeft compare", vkp_peft_methods[m]->name);
  }
  assert_true(vkp_compare_method_find("oft", 3) >= 0);
  // Each entry attaches to a small ViT.
  vkp_vit_config vc;
  vkp_vit_config_default(&vc);
  vc.image_size = 16, vc.patch_size = 4, vc.hidden_size = 32, vc.num_hidden_layers = 2, vc.num_attention_heads = 4;
  vc.intermediate_size = 64, vc.num_labels = 3;
  for (int i = 0; i < vkp_compare_method_count(); i++) {
    vkp_vit *v;
    VKP_ASSERT_OK(ctx, vkp_vit_new(ctx, &vc, 1, &v));
    vkp_error err = {0};
    cJSON *list = vkp_compare_method_peft(i, &err);
    if (vkp_classify_attach(v, list, 3, &err)) fail_msg("%s: %s", vkp_compare_method_name(i), err.msg);
    vkp_peft_report r = vkp_peft_get_report(v->model);
    printf("  %-13s %s trainable %lld\n", vkp_compare_method_name(i), vkp_compare_method_default(i) ? "        " : "(extra) ",
           (long long)r.trainable_params);
    assert_true(r.trainable_params > 0);
    cJSON_Delete(list);
    vkp_vit_free(v);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_method_in_compare)};
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
