// test_sha256.c — SHA-256 against the FIPS 180-2 appendix B vectors ("abc", the 448-bit message,
// one million 'a'), the empty message, split updates at every block boundary, and a file hashed
// from an offset (the kohya/A1111 "addnet" hash skips the safetensors header this way).
#include <stdio.h>
#include <string.h>

#include "vkp_sha256.h"
#include "vkp_test.h"

static void hex_of(const void *data, size_t n, char hex[65]) {
  vkp_sha256 s;
  uint8_t d[32];
  vkp_sha256_init(&s);
  vkp_sha256_update(&s, data, n);
  vkp_sha256_final(&s, d);
  vkp_sha256_hex(d, hex);
}

static void test_fips_vectors(void **state) {
  (void)state;
  char hex[65];
  hex_of("abc", 3, hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  hex_of(m2, strlen(m2), hex);
  assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  hex_of("", 0, hex);
  assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // One million 'a', fed in uneven pieces.
  static char a[1000000];
  memset(a, 'a', sizeof a);
  vkp_sha256 s;
  uint8_t d[32];
  vkp_sha256_init(&s);
  size_t off = 0, piece = 1;
  while (off < sizeof a) {
    size_t k = piece < sizeof a - off ? piece : sizeof a - off;
    vkp_sha256_update(&s, a + off, k);
    off += k;
    piece = piece * 3 % 997 + 1;
  }
  vkp_sha256_final(&s, d);
  vkp_sha256_hex(d, hex);
  assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Every split point of messages around the padding boundaries gives the one-shot digest.
static void test_splits(void **state) {
  (void)state;
  uint8_t msg[200];
  for (int i = 0; i < 200; i++) msg[i] = (uint8_t)(i * 37 + 11);
  const size_t lens[] = {55, 56, 63, 64, 65, 119, 120, 128, 200};
  for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
    char want[65], got[65];
    hex_of(msg, lens[l], want);
    for (size_t cut = 0; cut <= lens[l]; cut++) {
      vkp_sha256 s;
      uint8_t d[32];
      vkp_sha256_init(&s);
      vkp_sha256_update(&s, msg, cut);
      vkp_sha256_update(&s, msg + cut, lens[l] - cut);
      vkp_sha256_final(&s, d);
      vkp_sha256_hex(d, got);
      assert_string_equal(got, want);
    }
  }
}

static void test_file(void **state) {
  char path[1024], hex[65];
  vkp_test_dir_path(state, "f.bin", path, sizeof path);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs("HEADER--abc", f);
  fclose(f);
  vkp_error err = {0};
  assert_int_equal(vkp_sha256_file(path, 8, hex, &err), VKP_OK);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_int_equal(vkp_sha256_file(path, 12, hex, &err), VKP_ERR_IO);
  assert_non_null(strstr(err.msg, path));
  vkp_test_dir_path(state, "missing.bin", path, sizeof path);
  assert_int_equal(vkp_sha256_file(path, 0, hex, &err), VKP_ERR_IO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fips_vectors),
      cmocka_unit_test(test_splits),
      cmocka_unit_test_setup_teardown(test_file, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
