// test_status.c — vkp_error: a message may be prefixed with its own text
// (`vkp_error_set(err, st, "%s: %s", path, err->msg)`, as callers add the file name to an error
// from a lower layer), messages longer than VKP_ERROR_MSG_MAX are cut, not overrun, and a NULL
// error only returns the status.
#include <string.h>

#include "vkp_status.h"
#include "vkp_test.h"

static void test_prefix_own_message(void **state) {
  (void)state;
  vkp_error err = {0};
  assert_int_equal(vkp_error_set(&err, VKP_ERR_INVALID, "transform: images have %d channels", 2), VKP_ERR_INVALID);
  assert_int_equal(vkp_error_set(&err, VKP_ERR_FORMAT, "%s: %s", "/tmp/init.png", err.msg), VKP_ERR_FORMAT);
  assert_string_equal(err.msg, "/tmp/init.png: transform: images have 2 channels");
  assert_int_equal(err.status, VKP_ERR_FORMAT);
}

static void test_long_message_cut(void **state) {
  (void)state;
  static char long_text[3 * VKP_ERROR_MSG_MAX];
  memset(long_text, 'x', sizeof long_text - 1);
  vkp_error err = {0};
  vkp_error_set(&err, VKP_ERR_IO, "%s", long_text);
  assert_int_equal(strlen(err.msg), VKP_ERROR_MSG_MAX - 1);
  vkp_error_set(&err, VKP_ERR_IO, "a: %s", err.msg);   // its own (full-length) text again
  assert_int_equal(strlen(err.msg), VKP_ERROR_MSG_MAX - 1);
  assert_memory_equal(err.msg, "a: xxx", 6);
  assert_int_equal(vkp_error_set(NULL, VKP_ERR_OOM, "ignored %d", 1), VKP_ERR_OOM);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_prefix_own_message), cmocka_unit_test(test_long_message_cut)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
