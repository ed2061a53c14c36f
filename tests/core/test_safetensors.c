// test_safetensors.c — safetensors reader/writer and atomic file writes.
//
// Files are written byte by byte where the test needs to control the layout (hand-made headers,
// corrupt and hostile files), and through the writer for round trips. Expected values are written
// out by hand (little-endian bytes, IEEE bit patterns), not computed by the code under test.
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_dtype.h"
#include "vkp_fileio.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

// ---- helpers ------------------------------------------------------------------------------------


static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (n) assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static void put_le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

// Writes a safetensors file: length field `hlen` (0: the header's length), the header text, then
// `ndata` data bytes (data, or 0x11 filler when data is NULL).
static void write_st(const char *path, uint64_t hlen, const char *header, const void *data,
                     size_t ndata) {
  size_t hn = strlen(header);
  size_t total = 8 + hn + ndata;
  unsigned char *buf = malloc(total);
  assert_non_null(buf);
  put_le64(buf, hlen ? hlen : hn);
  memcpy(buf + 8, header, hn);
  if (data)
    memcpy(buf + 8 + hn, data, ndata);
  else
    memset(buf + 8 + hn, 0x11, ndata);
  write_bytes(path, buf, total);
  free(buf);
}

static unsigned char *slurp(const char *path, size_t *n) {
  char *buf = NULL;
  vkp_error err = {0};
  vkp_status s = vkp_file_read_all(path, 1u << 30, &buf, n, &err);
  if (s != VKP_OK) fail_msg("%s", err.msg);
  return (unsigned char *)buf;
}

static void check_err(const vkp_error *e, vkp_status st, vkp_status want, const char *path,
                      const char *s1, const char *s2, const char *s3) {
  if (st != want)
    fail_msg("%s: status %d (%s), want %d (%s); message: %s", path, st, vkp_status_name(st), want,
             vkp_status_name(want), e->msg);
  assert_int_equal(e->status, want);
  if (path && !strstr(e->msg, path))
    fail_msg("message does not name the file %s: %s", path, e->msg);
  const char *subs[] = {s1, s2, s3};
  for (int i = 0; i < 3; i++) {
    if (subs[i] && !strstr(e->msg, subs[i])) fail_msg("message lacks \"%s\": %s", subs[i], e->msg);
  }
  if (strchr(e->msg, '\n') || strchr(e->msg, '\r')) fail_msg("message is not one line: %s", e->msg);
}

// Counts directory entries whose name contains ".tmp." (left-over temporary files).
static int count_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

// ---- round trip through the writer --------------------------------------------------------------

static void test_roundtrip(void **state) {
  char path[256];
  vkp_test_dir_path(state, "round.safetensors", path, sizeof path);
  vkp_error err = {0};
  vkp_safetensors_writer *w = NULL;
  assert_int_equal(vkp_safetensors_writer_new(&w, &err), VKP_OK);

  const float wf32[6] = {1.0f, -2.0f, 0.5f, 3.25f, -0.125f, 1e-3f};
  const int64_t s23[2] = {2, 3};
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "w.f32", VKP_DTYPE_F32, 2, s23, wf32, &err),
                   VKP_OK);
  const float wf16[4] = {1.0f, -2.0f, 65504.0f, 0.1f};
  const int64_t s4[1] = {4};
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "w.f16", VKP_DTYPE_F16, 1, s4, wf16, &err),
                   VKP_OK);
  const float wbf[4] = {1.0f, -2.0f, 3.14159265f, 1e-3f};
  const int64_t s22[2] = {2, 2};
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "w.bf16", VKP_DTYPE_BF16, 2, s22, wbf, &err),
                   VKP_OK);
  const int64_t labels[3] = {-1, 0, (int64_t)1 << 40};
  const int64_t s3[1] = {3};
  assert_int_equal(vkp_safetensors_writer_add(w, "labels", VKP_DTYPE_I64, 1, s3, labels, &err),
                   VKP_OK);
  const uint8_t mask[2] = {0, 1};
  const int64_t s2[1] = {2};
  assert_int_equal(vkp_safetensors_writer_add(w, "mask", VKP_DTYPE_BOOL, 1, s2, mask, &err),
                   VKP_OK);
  const float scalar = 42.0f;
  assert_int_equal(
      vkp_safetensors_writer_add_f32(w, "scalar", VKP_DTYPE_F32, 0, NULL, &scalar, &err), VKP_OK);
  const int64_t s05[2] = {0, 5};
  assert_int_equal(vkp_safetensors_writer_add(w, "empty", VKP_DTYPE_F32, 2, s05, NULL, &err),
                   VKP_OK);

  const char *note = "quote \" backslash \\ newline \n tab \t \xc3\xbcnicode \xe2\x9c\x93";
  assert_int_equal(vkp_safetensors_writer_set_metadata(w, "format", "np", &err), VKP_OK);
  assert_int_equal(vkp_safetensors_writer_set_metadata(w, "note", note, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_writer_set_metadata(w, "format", "pt", &err),
                   VKP_OK);  // replace

  assert_int_equal(vkp_safetensors_writer_save(w, path, &err), VKP_OK);

  // Byte-level layout: header length is a multiple of 8 (data aligned), the header JSON starts
  // with the metadata, and the data buffer is the tensors back to back in insertion order.
  size_t n;
  unsigned char *bytes = slurp(path, &n);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | bytes[i];
  assert_int_equal(hlen % 8, 0);
  const size_t data_bytes = 24 + 8 + 8 + 24 + 2 + 4 + 0;
  assert_int_equal(n, 8 + hlen + data_bytes);
  assert_memory_equal(bytes + 8, "{\"__metadata__\":{\"format\":\"pt\",", 31);
  const unsigned char *d = bytes + 8 + hlen;
  assert_memory_equal(d, wf32, 24);
  const unsigned char f16_bytes[8] = {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x66, 0x2e};
  assert_memory_equal(d + 24, f16_bytes, 8);
  const unsigned char bf16_bytes[8] = {0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40, 0x83, 0x3a};
  assert_memory_equal(d + 32, bf16_bytes, 8);
  free(bytes);

  vkp_safetensors *st = NULL;
  assert_int_equal(vkp_safetensors_open(path, &st, &err), VKP_OK);
  assert_string_equal(vkp_safetensors_path(st), path);
  assert_int_equal(vkp_safetensors_count(st), 7);
  const char *names[7] = {"w.f32", "w.f16", "w.bf16", "labels", "mask", "scalar", "empty"};
  const vkp_dtype dts[7] = {VKP_DTYPE_F32,  VKP_DTYPE_F16, VKP_DTYPE_BF16, VKP_DTYPE_I64,
                            VKP_DTYPE_BOOL, VKP_DTYPE_F32, VKP_DTYPE_F32};
  const size_t nbytes[7] = {24, 8, 8, 24, 2, 4, 0};
  for (size_t i = 0; i < 7; i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(st, i);
    assert_non_null(t);
    assert_string_equal(t->name, names[i]);
    assert_int_equal(t->dtype, dts[i]);
    assert_int_equal(t->nbytes, nbytes[i]);
    assert_ptr_equal(vkp_safetensors_find(st, names[i]), t);
  }
  assert_null(vkp_safetensors_at(st, 7));
  assert_null(vkp_safetensors_find(st, "nope"));
  assert_null(vkp_safetensors_find(st, "w.f3"));

  const vkp_st_tensor *t = vkp_safetensors_find(st, "w.f32");
  assert_int_equal(t->ndim, 2);
  assert_true(t->shape[0] == 2 && t->shape[1] == 3);
  assert_int_equal((uintptr_t)t->data % 8, 0);  // first tensor sits at the aligned data start
  float out[6];
  assert_int_equal(vkp_safetensors_read_f32(st, "w.f32", out, 6, &err), VKP_OK);
  assert_memory_equal(out, wf32, sizeof wf32);

  assert_int_equal(vkp_safetensors_read_f32(st, "w.f16", out, 4, &err), VKP_OK);
  assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 65504.0f);
  assert_true(out[3] == 0.0999755859375f);  // 0x2e66 = (1024 + 614) / 1024 * 2^-4

  assert_int_equal(vkp_safetensors_read_f32(st, "w.bf16", out, 4, &err), VKP_OK);
  assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 3.140625f);
  assert_true(out[3] == 0.00099945068359375f);  // 0x3a83 = (1 + 3/128) * 2^-10

  t = vkp_safetensors_find(st, "labels");
  assert_memory_equal(t->data, labels, sizeof labels);
  assert_int_equal(vkp_safetensors_read_f32(st, "labels", out, 3, &err), VKP_OK);
  assert_true(out[0] == -1.0f && out[1] == 0.0f && out[2] == 1099511627776.0f);

  assert_int_equal(vkp_safetensors_read_f32(st, "mask", out, 2, &err), VKP_OK);
  assert_true(out[0] == 0.0f && out[1] == 1.0f);

  t = vkp_safetensors_find(st, "scalar");
  assert_int_equal(t->ndim, 0);
  assert_int_equal(vkp_st_tensor_numel(t), 1);
  assert_int_equal(vkp_safetensors_read_f32(st, "scalar", out, 1, &err), VKP_OK);
  assert_true(out[0] == 42.0f);

  t = vkp_safetensors_find(st, "empty");
  assert_true(t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 5);
  assert_int_equal(vkp_st_tensor_numel(t), 0);
  assert_int_equal(vkp_safetensors_read_f32(st, "empty", NULL, 0, &err), VKP_OK);

  assert_string_equal(vkp_safetensors_metadata(st, "format"), "pt");
  assert_string_equal(vkp_safetensors_metadata(st, "note"), note);
  assert_null(vkp_safetensors_metadata(st, "missing"));
  assert_int_equal(vkp_safetensors_metadata_count(st), 2);
  const char *v = NULL;
  assert_string_equal(vkp_safetensors_metadata_at(st, 1, &v), "note");
  assert_string_equal(v, note);
  assert_null(vkp_safetensors_metadata_at(st, 2, &v));
  assert_null(v);

  // read_f32 errors name the file, the tensor and both shapes.
  vkp_status s = vkp_safetensors_read_f32(st, "w.f32", out, 5, &err);
  check_err(&err, s, VKP_ERR_SHAPE, path, "'w.f32'", "[2, 3]", "expected 5");
  s = vkp_safetensors_read_f32(st, "w.nope", out, 5, &err);
  check_err(&err, s, VKP_ERR_NOT_FOUND, path, "'w.nope'", "not found", NULL);
  s = vkp_safetensors_read_f32(st, "w.f32", NULL, 6, &err);
  check_err(&err, s, VKP_ERR_INVALID, path, "'w.f32'", NULL, NULL);
  vkp_safetensors_free(st);

  // Saving the same writer again replaces the file with identical content.
  size_t n2;
  bytes = slurp(path, &n);
  assert_int_equal(vkp_safetensors_writer_save(w, path, &err), VKP_OK);
  unsigned char *bytes2 = slurp(path, &n2);
  assert_int_equal(n, n2);
  assert_memory_equal(bytes, bytes2, n);
  free(bytes);
  free(bytes2);
  vkp_safetensors_writer_free(w);
}

// ---- a hand-made file: every integer dtype, unaligned data, odd key order, padding --------------

static void test_read_handmade(void **state) {
  char path[256];
  vkp_test_dir_path(state, "handmade.safetensors", path, sizeof path);
  // JSON key order differs from data order; __metadata__ in the middle; whitespace and trailing
  // padding; header length 7 (mod 8), so the data buffer is unaligned.
  const char *header =
      "{ \"e\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [16, 24]},\n"
      "  \"a\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [0, 8]},\n"
      "  \"__metadata__\": {\"format\": \"pt\", \"empty\": \"\"},\n"
      "  \"b\": {\"shape\": [2], \"dtype\": \"I16\", \"data_offsets\": [8, 12]},\n"
      "  \"c\": {\"dtype\": \"U8\", \"shape\": [3, 1], \"data_offsets\": [12, 15]},\n"
      "  \"d\": {\"dtype\": \"BOOL\", \"shape\": [], \"data_offsets\": [15, 16]},\n"
      "  \"f\": {\"dtype\": \"I8\", \"shape\": [2], \"data_offsets\": [24, 26]},\n"
      "  \"g\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [26, 28]},\n"
      "  \"h\": {\"dtype\": \"BF16\", \"shape\": [1], \"data_offsets\": [28, 30]},\n"
      "  \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [30, 30]},\n"
      "  \"i\": {\"dtype\": \"I64\", \"shape\": [1, 1], \"data_offsets\": [30, 38]}\n"
      "}  \t\n      ";
  assert_int_equal(strlen(header) % 8, 7);
  const unsigned char data[38] = {
      0xfb, 0xff, 0xff, 0xff, 0x70, 0x11, 0x01, 0x00,  // a: I32 {-5, 70000}
      0xfe, 0xff, 0x2c, 0x01,                          // b: I16 {-2, 300}
      0x00, 0x80, 0xff,                                // c: U8 {0, 128, 255}
      0x01,                                            // d: BOOL true
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f,  // e: F64 1.5
      0x80, 0x05,                                      // f: I8 {-128, 5}
      0x00, 0xc0,                                      // g: F16 -2.0
      0x80, 0x3f,                                      // h: BF16 1.0
      0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // i: I64 -3
  };
  write_st(path, 0, header, data, sizeof data);

  vkp_error err = {0};
  vkp_safetensors *st = NULL;
  vkp_status s = vkp_safetensors_open(path, &st, &err);
  if (s != VKP_OK) fail_msg("%s", err.msg);
  assert_int_equal(vkp_safetensors_count(st), 10);
  const char *order = "eabcdfghzi";
  for (size_t i = 0; i < 10; i++) assert_int_equal(vkp_safetensors_at(st, i)->name[0], order[i]);
  assert_string_equal(vkp_safetensors_metadata(st, "format"), "pt");
  assert_string_equal(vkp_safetensors_metadata(st, "empty"), "");

  float out[3];
  assert_int_equal(vkp_safetensors_read_f32(st, "a", out, 2, &err), VKP_OK);
  assert_true(out[0] == -5.0f && out[1] == 70000.0f);
  assert_int_equal(vkp_safetensors_read_f32(st, "b", out, 2, &err), VKP_OK);
  assert_true(out[0] == -2.0f && out[1] == 300.0f);
  assert_int_equal(vkp_safetensors_read_f32(st, "c", out, 3, &err), VKP_OK);
  assert_true(out[0] == 0.0f && out[1] == 128.0f && out[2] == 255.0f);
  const vkp_st_tensor *c = vkp_safetensors_find(st, "c");
  assert_true(c->ndim == 2 && c->shape[0] == 3 && c->shape[1] == 1 && c->dtype == VKP_DTYPE_U8);
  assert_int_equal(vkp_safetensors_read_f32(st, "d", out, 1, &err), VKP_OK);
  assert_true(out[0] == 1.0f);
  assert_int_equal(vkp_safetensors_find(st, "d")->ndim, 0);
  assert_int_equal(vkp_safetensors_read_f32(st, "e", out, 1, &err), VKP_OK);
  assert_true(out[0] == 1.5f);
  assert_int_equal(vkp_safetensors_read_f32(st, "f", out, 2, &err), VKP_OK);
  assert_true(out[0] == -128.0f && out[1] == 5.0f);
  assert_int_equal(vkp_safetensors_read_f32(st, "g", out, 1, &err), VKP_OK);
  assert_true(out[0] == -2.0f);
  assert_int_equal(vkp_safetensors_read_f32(st, "h", out, 1, &err), VKP_OK);
  assert_true(out[0] == 1.0f);
  assert_int_equal(vkp_safetensors_read_f32(st, "z", NULL, 0, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_read_f32(st, "i", out, 1, &err), VKP_OK);
  assert_true(out[0] == -3.0f);
  const vkp_st_tensor *a = vkp_safetensors_find(st, "a");
  assert_memory_equal(a->data, data, 8);  // raw pointer into the mapping
  assert_int_equal((uintptr_t)a->data % 8, 7);
  vkp_safetensors_free(st);

  // A file with only metadata and one with nothing at all are valid.
  write_st(path, 0, "{\"__metadata__\":{}}", NULL, 0);
  assert_int_equal(vkp_safetensors_open(path, &st, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_count(st), 0);
  vkp_safetensors_free(st);
  write_st(path, 0, "{}", NULL, 0);
  assert_int_equal(vkp_safetensors_open(path, &st, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_count(st), 0);
  assert_null(vkp_safetensors_find(st, "x"));
  vkp_safetensors_free(st);
}

// ---- corrupt and hostile files ------------------------------------------------------------------

typedef struct corrupt_case {
  const char *file;    // file name in the temp dir
  const char *header;  // JSON header text (NULL: write `raw` instead)
  uint64_t hlen;       // length field (0: strlen(header))
  size_t ndata;        // data bytes after the header
  const char *raw;     // exact file bytes when header is NULL
  size_t raw_len;
  vkp_status want;
  const char *msg1, *msg2, *msg3;  // substrings the message must contain
} corrupt_case;

#define F32_1(name, b, e) \
  "\"" name "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" #b "," #e "]}"

static const corrupt_case corrupt_cases[] = {
    {"empty.safetensors", NULL, 0, 0, "", 0, VKP_ERR_FORMAT, "0 bytes", "too short", NULL},
    {"seven.safetensors", NULL, 0, 0, "\x02\0\0\0\0\0\0", 7, VKP_ERR_FORMAT, "7 bytes", NULL, NULL},
    {"hlen_huge.safetensors", "{}", UINT64_MAX, 0, NULL, 0, VKP_ERR_FORMAT,
     "header length 18446744073709551615", "limit", NULL},
    {"hlen_cap.safetensors", "{}", 100000001, 0, NULL, 0, VKP_ERR_FORMAT, "100000001", "limit",
     NULL},
    {"hlen_beyond.safetensors", "{}", 1000, 4, NULL, 0, VKP_ERR_FORMAT, "header length 1000",
     "6 bytes", NULL},
    {"nonjson.safetensors", "{this is not json}", 0, 0, NULL, 0, VKP_ERR_FORMAT, "not valid JSON",
     NULL, NULL},
    {"backslash_end.safetensors", "{\"a\\", 0, 0, NULL, 0, VKP_ERR_FORMAT, "not valid JSON", NULL,
     NULL},
    {"array_root.safetensors", "[1, 2]", 0, 0, NULL, 0, VKP_ERR_FORMAT, "an array",
     "not a JSON object", NULL},
    {"string_root.safetensors", "\"x\"", 0, 0, NULL, 0, VKP_ERR_FORMAT, "not a JSON object", NULL,
     NULL},
    {"trailing.safetensors", "{} {}", 0, 0, NULL, 0, VKP_ERR_FORMAT, "trailing", NULL, NULL},
    {"nul.safetensors", NULL, 0, 0, "\x04\0\0\0\0\0\0\0{}\0 ", 12, VKP_ERR_FORMAT, "NUL", NULL,
     NULL},
    {"utf8.safetensors", "{\"\xff\":{}}", 0, 0, NULL, 0, VKP_ERR_FORMAT, "UTF-8", NULL, NULL},
    {"entry_num.safetensors", "{\"t\":5}", 0, 0, NULL, 0, VKP_ERR_FORMAT, "tensor 't'",
     "not an object", NULL},
    {"no_dtype.safetensors", "{\"vit.x.weight\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4,
     NULL, 0, VKP_ERR_FORMAT, "tensor 'vit.x.weight'", "missing field 'dtype'", NULL},
    {"no_shape.safetensors", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 0, 4, NULL, 0,
     VKP_ERR_FORMAT, "tensor 't'", "missing field 'shape'", NULL},
    {"no_offsets.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 4, NULL, 0,
     VKP_ERR_FORMAT, "tensor 't'", "missing field 'data_offsets'", NULL},
    {"extra_field.safetensors",
     "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 0, 4, NULL, 0,
     VKP_ERR_FORMAT, "tensor 't'", "unexpected field 'x'", NULL},
    {"dup_field.safetensors",
     "{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4,
     NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "'dtype' appears twice", NULL},
    {"unknown_dtype.safetensors",
     "{\"t\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, NULL, 0,
     VKP_ERR_FORMAT, "tensor 't'", "unknown dtype 'F17'", NULL},
    {"f8_dtype.safetensors", "{\"t\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     0, 1, NULL, 0, VKP_ERR_UNSUPPORTED, "tensor 't'", "'F8_E4M3' is not supported", NULL},
    {"dtype_num.safetensors", "{\"t\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4,
     NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "dtype is 4", NULL},
    {"neg_shape.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}",
     0, 4, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "shape[1] = -1", "negative"},
    {"frac_shape.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
     0, 4, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "shape[0] = 1.5", "not an integer"},
    {"str_shape.safetensors",
     "{\"t\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 0, 4, NULL, 0,
     VKP_ERR_FORMAT, "tensor 't'", "shape[0]", "not a number"},
    {"shape_obj.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 0,
     4, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "shape is an object", NULL},
    {"shape_9d.safetensors",
     "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 0, 4, NULL,
     0, VKP_ERR_FORMAT, "tensor 't'", "9 dims", NULL},
    {"shape_overflow.safetensors",
     "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 0,
     4, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "[4294967296, 4294967296, 16]", "overflows"},
    {"bytes_overflow.safetensors",
     "{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,536870912],\"data_offsets\":[0,4]}}", 0, 4,
     NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "byte size overflows", NULL},
    {"shape_huge.safetensors",
     "{\"t\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 0, 4, NULL, 0,
     VKP_ERR_FORMAT, "tensor 't'", "too large", NULL},
    {"reversed.safetensors",
     "{\"vit.x.weight\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[10,8]}}", 0, 10, NULL, 0,
     VKP_ERR_FORMAT, "tensor 'vit.x.weight'", "data_offsets [10, 8] are reversed", NULL},
    {"beyond.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}",
     0, 16, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "[0, 1000]", "data buffer of 16 bytes"},
    {"offsets_huge.safetensors",
     "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e20]}}", 0, 1, NULL, 0,
     VKP_ERR_FORMAT, "tensor 't'", "data_offsets[1]", "too large"},
    {"offsets_neg.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}",
     0, 4, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "data_offsets[0] = -4", "negative"},
    {"offsets_one.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 0,
     1, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "data_offsets", "2 integers"},
    {"mismatch.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0,
     4, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "needs 8 bytes", "span 4"},
    {"overlap.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     0, 12, NULL, 0, VKP_ERR_FORMAT, "tensor 'b'", "overlap", "tensor 'a'"},
    {"overlap_same.safetensors", "{" F32_1("a", 0, 4) "," F32_1("b", 0, 4) "}", 0, 4, NULL, 0,
     VKP_ERR_FORMAT, "tensor 'b'", "overlap", "tensor 'a'"},
    {"hole.safetensors", "{" F32_1("a", 0, 4) "," F32_1("b", 8, 12) "}", 0, 12, NULL, 0,
     VKP_ERR_FORMAT, "tensor 'b'", "hole", "[4, 8)"},
    {"hole_start.safetensors", "{" F32_1("a", 4, 8) "}", 0, 8, NULL, 0, VKP_ERR_FORMAT,
     "tensor 'a'", "hole", "[0, 4)"},
    {"hole_end.safetensors", "{" F32_1("a", 0, 4) "}", 0, 8, NULL, 0, VKP_ERR_FORMAT, "'a'",
     "[4, 8)", "belong to no tensor"},
    {"no_tensors_data.safetensors", "{}", 0, 4, NULL, 0, VKP_ERR_FORMAT, "4 bytes",
     "lists no tensors", NULL},
    {"truncated.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
     0, 12, NULL, 0, VKP_ERR_FORMAT, "tensor 't'", "data buffer of 12 bytes", "truncated"},
    {"meta_num.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}", 0, 0, NULL, 0,
     VKP_ERR_FORMAT, "__metadata__ 'epoch'", "not a string", NULL},
    {"meta_str.safetensors", "{\"__metadata__\":\"pt\"}", 0, 0, NULL, 0, VKP_ERR_FORMAT,
     "__metadata__ is", "not an object", NULL},
    {"meta_dup_key.safetensors", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, 0, NULL, 0,
     VKP_ERR_FORMAT, "__metadata__ key 'k'", "twice", NULL},
    {"meta_twice.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, NULL, 0,
     VKP_ERR_FORMAT, "__metadata__ appears twice", NULL, NULL},
    {"dup_tensor.safetensors", "{" F32_1("a", 0, 4) "," F32_1("a", 4, 8) "}", 0, 8, NULL, 0,
     VKP_ERR_FORMAT, "tensor 'a'", "appears twice", NULL},
    {"ctrl_name.safetensors", "{\"a\\nb\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     0, 1, NULL, 0, VKP_ERR_FORMAT, "tensor 'a?b'", "unknown dtype 'X'", NULL},
};

static void test_corrupt_files(void **state) {
  for (size_t i = 0; i < sizeof corrupt_cases / sizeof corrupt_cases[0]; i++) {
    const corrupt_case *c = &corrupt_cases[i];
    char path[256];
    vkp_test_dir_path(state, c->file, path, sizeof path);
    if (c->header)
      write_st(path, c->hlen, c->header, NULL, c->ndata);
    else
      write_bytes(path, c->raw, c->raw_len);
    vkp_error err = {0};
    vkp_safetensors *st = (vkp_safetensors *)(uintptr_t)1;  // must be reset to NULL
    vkp_status s = vkp_safetensors_open(path, &st, &err);
    assert_null(st);
    check_err(&err, s, c->want, path, c->msg1, c->msg2, c->msg3);
    print_message("  %-28s %s\n", c->file, err.msg + strlen(path));
  }
}

static void test_open_io_errors(void **state) {
  char path[256];
  vkp_error err = {0};
  vkp_safetensors *st = NULL;
  vkp_test_dir_path(state, "does-not-exist.safetensors", path, sizeof path);
  vkp_status s = vkp_safetensors_open(path, &st, &err);
  check_err(&err, s, VKP_ERR_IO, path, "cannot open", NULL, NULL);
  assert_null(st);
  vkp_test_dir *env = *state;
  s = vkp_safetensors_open(env->dir, &st, &err);  // a directory
  check_err(&err, s, VKP_ERR_IO, env->dir, "not a regular file", NULL, NULL);
  char fifo[256];
  vkp_test_dir_path(state, "fifo.safetensors", fifo, sizeof fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  s = vkp_safetensors_open(fifo, &st, &err);  // must not block waiting for a writer
  check_err(&err, s, VKP_ERR_IO, fifo, "not a regular file", NULL, NULL);
  s = vkp_safetensors_open(NULL, &st, &err);
  assert_int_equal(s, VKP_ERR_INVALID);
  s = vkp_safetensors_open(path, NULL, NULL);  // err may be NULL
  assert_int_equal(s, VKP_ERR_INVALID);
  assert_int_equal(vkp_safetensors_open(path, &st, NULL), VKP_ERR_IO);
}

static void test_deep_nesting(void **state) {
  char path[256];
  vkp_test_dir_path(state, "deep.safetensors", path, sizeof path);
  enum { DEPTH = 5000 };
  char *h = malloc(2 * DEPTH + 32);
  assert_non_null(h);
  size_t n = 0;
  n += (size_t)sprintf(h, "{\"t\":");
  for (int i = 0; i < DEPTH; i++) h[n++] = '[';
  for (int i = 0; i < DEPTH; i++) h[n++] = ']';
  h[n++] = '}';
  h[n] = '\0';
  write_st(path, 0, h, NULL, 0);
  free(h);
  vkp_error err = {0};
  vkp_safetensors *st = NULL;
  vkp_status s = vkp_safetensors_open(path, &st, &err);
  assert_int_equal(s, VKP_ERR_FORMAT);
  assert_null(st);
  assert_non_null(strstr(err.msg, path));
}

// Every truncation and many single-byte corruptions of a valid file: never a crash or a leak;
// truncations always fail; corruptions either fail with a message or yield a consistent file.
static void test_mutations(void **state) {
  char path[256], mpath[256];
  vkp_test_dir_path(state, "base.safetensors", path, sizeof path);
  vkp_test_dir_path(state, "mutant.safetensors", mpath, sizeof mpath);
  vkp_error err = {0};
  vkp_safetensors_writer *w = NULL;
  assert_int_equal(vkp_safetensors_writer_new(&w, &err), VKP_OK);
  const float v[6] = {1, 2, 3, 4, 5, 6};
  const int64_t s23[2] = {2, 3}, s3[1] = {3};
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "a.weight", VKP_DTYPE_F32, 2, s23, v, &err),
                   0);
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "a.bias", VKP_DTYPE_F16, 1, s3, v, &err), 0);
  assert_int_equal(vkp_safetensors_writer_set_metadata(w, "format", "pt", &err), 0);
  assert_int_equal(vkp_safetensors_writer_save(w, path, &err), VKP_OK);
  vkp_safetensors_writer_free(w);
  size_t n;
  unsigned char *bytes = slurp(path, &n);

  for (size_t len = 0; len < n; len++) {
    write_bytes(mpath, bytes, len);
    vkp_safetensors *st = NULL;
    vkp_status s = vkp_safetensors_open(mpath, &st, &err);
    if (s != VKP_ERR_FORMAT) fail_msg("truncated to %zu bytes: status %d: %s", len, s, err.msg);
    assert_non_null(strstr(err.msg, mpath));
  }

  static const unsigned char repl[] = {0x00, 0xff, '"', '{', '}', '[',  ']', ',',
                                       ':',  '0',  '9', '-', ' ', '\\', 'e', '.'};
  int ok = 0, bad = 0;
  for (size_t pos = 0; pos < n; pos++) {
    for (size_t r = 0; r < sizeof repl; r++) {
      if (bytes[pos] == repl[r]) continue;
      unsigned char saved = bytes[pos];
      bytes[pos] = repl[r];
      write_bytes(mpath, bytes, n);
      bytes[pos] = saved;
      vkp_safetensors *st = NULL;
      vkp_status s = vkp_safetensors_open(mpath, &st, &err);
      if (s != VKP_OK) {
        assert_null(st);
        assert_non_null(strstr(err.msg, mpath));
        bad++;
        continue;
      }
      ok++;  // e.g. a changed data byte or metadata character: the result must be consistent
      for (size_t i = 0; i < vkp_safetensors_count(st); i++) {
        const vkp_st_tensor *t = vkp_safetensors_at(st, i);
        assert_ptr_equal(vkp_safetensors_find(st, t->name), t);
        size_t numel = vkp_st_tensor_numel(t);
        assert_int_equal(numel * vkp_dtype_size(t->dtype), t->nbytes);
        float *buf = malloc((numel ? numel : 1) * sizeof *buf);
        assert_non_null(buf);
        assert_int_equal(vkp_safetensors_read_f32(st, t->name, buf, numel, &err), VKP_OK);
        free(buf);
      }
      vkp_safetensors_free(st);
    }
  }
  assert_true(ok > 0 && bad > 0);
  free(bytes);
}

// ---- the real fixture ---------------------------------------------------------------------------

static void test_fixture_vit(void **state) {
  (void)state;
  const char *path = vkp_fixture_path("vit/model/model.safetensors");
  if (access(path, R_OK) != 0) fail_msg("fixture %s is missing (the reference fixtures are required)", path);
  vkp_error err = {0};
  vkp_safetensors *st = NULL;
  vkp_status s = vkp_safetensors_open(path, &st, &err);
  if (s != VKP_OK) fail_msg("%s", err.msg);
  assert_int_equal(vkp_safetensors_count(st), 40);
  assert_string_equal(vkp_safetensors_metadata(st, "format"), "pt");

  const vkp_st_tensor *cls = vkp_safetensors_find(st, "vit.embeddings.cls_token");
  assert_non_null(cls);
  assert_int_equal(cls->dtype, VKP_DTYPE_F32);
  assert_int_equal(cls->ndim, 3);
  assert_true(cls->shape[0] == 1 && cls->shape[1] == 1 && cls->shape[2] == 48);
  const vkp_st_tensor *pw =
      vkp_safetensors_find(st, "vit.embeddings.patch_embeddings.projection.weight");
  assert_non_null(pw);
  assert_true(pw->ndim == 4 && pw->shape[0] == 48 && pw->shape[1] == 3 && pw->shape[2] == 8 &&
              pw->shape[3] == 8);
  const vkp_st_tensor *cw = vkp_safetensors_find(st, "classifier.weight");
  assert_non_null(cw);
  assert_true(cw->ndim == 2 && cw->shape[0] == 5 && cw->shape[1] == 48);

  size_t total = 0;
  for (size_t i = 0; i < vkp_safetensors_count(st); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(st, i);
    size_t numel = vkp_st_tensor_numel(t);
    total += t->nbytes;
    float *buf = malloc(numel * sizeof *buf);
    assert_non_null(buf);
    assert_int_equal(vkp_safetensors_read_f32(st, t->name, buf, numel, &err), VKP_OK);
    double sumsq = 0;
    for (size_t k = 0; k < numel; k++) {
      if (!isfinite(buf[k])) fail_msg("%s[%zu] = %g is not finite", t->name, k, (double)buf[k]);
      sumsq += (double)buf[k] * buf[k];
    }
    // Every tensor of a trained model has some non-zero entry except possibly biases.
    if (strstr(t->name, "weight") && !strstr(t->name, "layernorm")) assert_true(sumsq > 0);
    free(buf);
  }
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_true(total < (size_t)sb.st_size);  // data buffer + header = file
  vkp_safetensors_free(st);
}

// ---- many tensors: the hash index ---------------------------------------------------------------

static void test_many_tensors(void **state) {
  char path[256];
  vkp_test_dir_path(state, "many.safetensors", path, sizeof path);
  enum { N = 5000 };
  vkp_error err = {0};
  vkp_safetensors_writer *w = NULL;
  assert_int_equal(vkp_safetensors_writer_new(&w, &err), VKP_OK);
  char name[64];
  const int64_t shape[1] = {1};
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "encoder.layer.%d.weight", i);
    float v = (float)i;
    assert_int_equal(vkp_safetensors_writer_add_f32(w, name, VKP_DTYPE_F32, 1, shape, &v, &err),
                     VKP_OK);
  }
  vkp_status s = vkp_safetensors_writer_add_f32(w, "encoder.layer.17.weight", VKP_DTYPE_F32, 1,
                                                shape, &(float){0}, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'encoder.layer.17.weight'", "twice", NULL);
  assert_int_equal(vkp_safetensors_writer_save(w, path, &err), VKP_OK);
  vkp_safetensors_writer_free(w);

  vkp_safetensors *st = NULL;
  assert_int_equal(vkp_safetensors_open(path, &st, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_count(st), N);
  for (int i = N - 1; i >= 0; i--) {
    snprintf(name, sizeof name, "encoder.layer.%d.weight", i);
    const vkp_st_tensor *t = vkp_safetensors_find(st, name);
    if (!t) fail_msg("%s not found", name);
    assert_ptr_equal(t, vkp_safetensors_at(st, (size_t)i));
    float v;
    assert_int_equal(vkp_safetensors_read_f32(st, name, &v, 1, &err), VKP_OK);
    assert_true(v == (float)i);
  }
  assert_null(vkp_safetensors_find(st, "encoder.layer.5000.weight"));
  assert_null(vkp_safetensors_find(st, "encoder.layer.1.weigh"));
  assert_null(vkp_safetensors_find(st, ""));
  vkp_safetensors_free(st);
}

// ---- writer argument checks ---------------------------------------------------------------------

static void test_writer_rejects(void **state) {
  (void)state;
  vkp_error err = {0};
  vkp_safetensors_writer *w = NULL;
  assert_int_equal(vkp_safetensors_writer_new(&w, &err), VKP_OK);
  const int64_t good[2] = {2, 2}, neg[2] = {2, -2}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  const int64_t huge[3] = {INT64_MAX, INT64_MAX, 2};
  const float v[4] = {1, 2, 3, 4};
  vkp_status s;

  s = vkp_safetensors_writer_add(w, "x", VKP_DTYPE_F32, 2, neg, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'x'", "shape[1] = -2", NULL);
  s = vkp_safetensors_writer_add(w, "x", VKP_DTYPE_F32, 9, nine, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'x'", "ndim 9", NULL);
  s = vkp_safetensors_writer_add(w, "x", VKP_DTYPE_F32, -1, good, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'x'", "ndim -1", NULL);
  s = vkp_safetensors_writer_add(w, "x", VKP_DTYPE_U8, 3, huge, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'x'", "overflow", NULL);
  s = vkp_safetensors_writer_add(w, "x", VKP_DTYPE_F32, 2, good, NULL, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'x'", "NULL", NULL);
  s = vkp_safetensors_writer_add(w, "x", VKP_DTYPE_COUNT, 2, good, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'x'", "dtype", NULL);
  s = vkp_safetensors_writer_add_f32(w, "x", VKP_DTYPE_I32, 2, good, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'x'", "I32", NULL);
  s = vkp_safetensors_writer_add(w, "", VKP_DTYPE_F32, 2, good, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "empty", NULL, NULL);
  s = vkp_safetensors_writer_add(w, "__metadata__", VKP_DTYPE_F32, 2, good, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "__metadata__", "reserved", NULL);
  s = vkp_safetensors_writer_add(w, "bad\xc3", VKP_DTYPE_F32, 2, good, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "UTF-8", NULL, NULL);
  s = vkp_safetensors_writer_set_metadata(w, "k", "\xed\xa0\x80", &err);  // a UTF-16 surrogate
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'k'", "UTF-8", NULL);
  s = vkp_safetensors_writer_set_metadata(w, "k", NULL, &err);
  assert_int_equal(s, VKP_ERR_INVALID);

  assert_int_equal(vkp_safetensors_writer_add(w, "x", VKP_DTYPE_F32, 2, good, v, NULL), VKP_OK);
  s = vkp_safetensors_writer_add(w, "x", VKP_DTYPE_F32, 2, good, v, &err);
  check_err(&err, s, VKP_ERR_INVALID, NULL, "'x'", "twice", NULL);
  vkp_safetensors_writer_free(w);

  // NULL-safe accessors and frees.
  vkp_safetensors_writer_free(NULL);
  vkp_safetensors_free(NULL);
  assert_int_equal(vkp_safetensors_count(NULL), 0);
  assert_null(vkp_safetensors_at(NULL, 0));
  assert_null(vkp_safetensors_find(NULL, "x"));
  assert_null(vkp_safetensors_metadata(NULL, "x"));
  assert_null(vkp_safetensors_path(NULL));
  assert_int_equal(vkp_safetensors_writer_new(NULL, &err), VKP_ERR_INVALID);
}

// ---- atomic writes ------------------------------------------------------------------------------

static vkp_safetensors_writer *small_writer(size_t nfloats, float fill) {
  vkp_safetensors_writer *w = NULL;
  assert_int_equal(vkp_safetensors_writer_new(&w, NULL), VKP_OK);
  float *v = malloc(nfloats * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < nfloats; i++) v[i] = fill;
  const int64_t shape[1] = {(int64_t)nfloats};
  assert_int_equal(vkp_safetensors_writer_add_f32(w, "t", VKP_DTYPE_F32, 1, shape, v, NULL),
                   VKP_OK);
  free(v);
  return w;
}

static void test_atomic_missing_dir(void **state) {
  char dir[200], path[256];
  vkp_test_dir_path(state, "no-such-dir", dir, sizeof dir);
  snprintf(path, sizeof path, "%s/sub/model.safetensors", dir);
  vkp_safetensors_writer *w = small_writer(4, 1.0f);
  vkp_error err = {0};
  vkp_status s = vkp_safetensors_writer_save(w, path, &err);
  check_err(&err, s, VKP_ERR_IO, path, "temporary file", NULL, NULL);
  struct stat sb;
  assert_int_equal(stat(dir, &sb), -1);  // nothing was created
  assert_int_equal(errno, ENOENT);
  vkp_safetensors_writer_free(w);
}

static void test_atomic_replace(void **state) {
  char path[256];
  vkp_test_dir_path(state, "replace.safetensors", path, sizeof path);
  vkp_test_dir *env = *state;
  vkp_error err = {0};

  // A new file gets 0666 & ~umask.
  const char *old_text = "old contents";
  const void *chunks[1] = {old_text};
  size_t sizes[1] = {strlen(old_text)};
  assert_int_equal(vkp_file_write_atomic(path, chunks, sizes, 1, &err), VKP_OK);
  mode_t mask = umask(022);
  umask(mask);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0666 & ~mask);

  // A successful save replaces the file and keeps its permissions.
  assert_int_equal(chmod(path, 0640), 0);
  vkp_safetensors_writer *w = small_writer(4, 2.0f);
  assert_int_equal(vkp_safetensors_writer_save(w, path, &err), VKP_OK);
  vkp_safetensors_writer_free(w);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0640);
  vkp_safetensors *st = NULL;
  assert_int_equal(vkp_safetensors_open(path, &st, &err), VKP_OK);
  float v[4];
  assert_int_equal(vkp_safetensors_read_f32(st, "t", v, 4, &err), VKP_OK);
  assert_true(v[0] == 2.0f && v[3] == 2.0f);
  vkp_safetensors_free(st);
  assert_int_equal(count_tmp_files(env->dir), 0);

  // A save that fails half-way (the file-size limit makes write() fail with EFBIG, even as root)
  // leaves the existing file byte-for-byte intact and no temporary file behind.
  size_t n_before;
  unsigned char *before = slurp(path, &n_before);
  w = small_writer(1 << 16, 3.0f);  // 256 KiB of data
  struct rlimit old_lim, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = old_lim;
  lim.rlim_cur = 4096;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  vkp_status s = vkp_safetensors_writer_save(w, path, &err);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
  signal(SIGXFSZ, old_handler);
  check_err(&err, s, VKP_ERR_IO, path, "write failed", NULL, NULL);
  size_t n_after;
  unsigned char *after = slurp(path, &n_after);
  assert_int_equal(n_before, n_after);
  assert_memory_equal(before, after, n_before);
  assert_int_equal(count_tmp_files(env->dir), 0);
  free(before);
  free(after);

  // The same writer saves fine once the limit is gone.
  assert_int_equal(vkp_safetensors_writer_save(w, path, &err), VKP_OK);
  vkp_safetensors_writer_free(w);
  assert_int_equal(vkp_safetensors_open(path, &st, &err), VKP_OK);
  assert_int_equal(vkp_safetensors_find(st, "t")->nbytes, (size_t)4 << 16);
  vkp_safetensors_free(st);
}

static void test_fileio(void **state) {
  char path[256];
  vkp_test_dir_path(state, "chunks.bin", path, sizeof path);
  vkp_error err = {0};
  const void *chunks[4] = {"ab", NULL, "", "cde"};
  size_t sizes[4] = {2, 0, 0, 3};
  assert_int_equal(vkp_file_write_atomic(path, chunks, sizes, 4, &err), VKP_OK);
  char *buf = NULL;
  size_t len = 0;
  assert_int_equal(vkp_file_read_all(path, 5, &buf, &len, &err), VKP_OK);  // exactly at limit
  assert_int_equal(len, 5);
  assert_string_equal(buf, "abcde");  // NUL-terminated
  free(buf);

  vkp_status s = vkp_file_read_all(path, 4, &buf, &len, &err);
  check_err(&err, s, VKP_ERR_FORMAT, path, "limit of 4 bytes", NULL, NULL);
  assert_null(buf);
  assert_int_equal(len, 0);

  // Empty file; zero chunks.
  assert_int_equal(vkp_file_write_atomic(path, NULL, NULL, 0, &err), VKP_OK);
  assert_int_equal(vkp_file_read_all(path, 0, &buf, &len, &err), VKP_OK);
  assert_int_equal(len, 0);
  assert_string_equal(buf, "");
  free(buf);

  // Bad chunk: rejected before anything is created or replaced.
  char path2[256];
  vkp_test_dir_path(state, "never.bin", path2, sizeof path2);
  const void *bad[1] = {NULL};
  size_t bad_size[1] = {3};
  s = vkp_file_write_atomic(path2, bad, bad_size, 1, &err);
  check_err(&err, s, VKP_ERR_INVALID, path2, "chunk 0", NULL, NULL);
  assert_int_equal(access(path2, F_OK), -1);

  s = vkp_file_read_all(path2, 100, &buf, &len, &err);
  check_err(&err, s, VKP_ERR_IO, path2, "cannot open", NULL, NULL);
  vkp_test_dir *env = *state;
  s = vkp_file_read_all(env->dir, 100, &buf, &len, &err);
  check_err(&err, s, VKP_ERR_IO, env->dir, "directory", NULL, NULL);

  // procfs files report size 0 but have content.
  assert_int_equal(vkp_file_read_all("/proc/self/status", 1 << 20, &buf, &len, &err), VKP_OK);
  assert_true(len > 0 && strstr(buf, "Pid:") != NULL);
  free(buf);
  s = vkp_file_read_all("/proc/self/status", 16, &buf, &len, &err);
  check_err(&err, s, VKP_ERR_FORMAT, "/proc/self/status", "limit of 16 bytes", NULL, NULL);
  assert_null(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_read_handmade),
      cmocka_unit_test(test_corrupt_files),  cmocka_unit_test(test_open_io_errors),
      cmocka_unit_test(test_deep_nesting),   cmocka_unit_test(test_mutations),
      cmocka_unit_test(test_fixture_vit),    cmocka_unit_test(test_many_tensors),
      cmocka_unit_test(test_writer_rejects), cmocka_unit_test(test_atomic_missing_dir),
      cmocka_unit_test(test_atomic_replace), cmocka_unit_test(test_fileio),
  };
  return cmocka_run_group_tests(tests, vkp_test_dir_setup, vkp_test_dir_teardown);
}
