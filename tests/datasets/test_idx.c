// test_idx.c — IDX reader (raw and gzip, hand-made files with known values, every rejection path),
// the real Fashion-MNIST and MNIST files (checked against bytes read here with zlib), the sklearn
// digits CSV reader and data-set location.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "vkp_data.h"

static char g_dir[256];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb, (void)flag, (void)f;
  return remove(p);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/vkp-test-idx-XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n, int gz) {
  if (gz) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(gzwrite(f, p, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
  } else {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
  }
}

static size_t file_size(const char *path) {
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  return (size_t)sb.st_size;
}

// Header bytes: 0 0 type ndim, then big-endian dims.
static size_t idx_header(unsigned char *h, int type, int ndim, const uint32_t *dims) {
  h[0] = 0, h[1] = 0, h[2] = (unsigned char)type, h[3] = (unsigned char)ndim;
  for (int d = 0; d < ndim; d++) {
    h[4 + 4 * d] = (unsigned char)(dims[d] >> 24);
    h[5 + 4 * d] = (unsigned char)(dims[d] >> 16);
    h[6 + 4 * d] = (unsigned char)(dims[d] >> 8);
    h[7 + 4 * d] = (unsigned char)dims[d];
  }
  return 4 + 4 * (size_t)ndim;
}

static void write_idx(const char *path, int type, int ndim, const uint32_t *dims, const void *data,
                      size_t nbytes, int gz) {
  unsigned char buf[4096];
  size_t h = idx_header(buf, type, ndim, dims);
  assert_true(h + nbytes <= sizeof buf);
  memcpy(buf + h, data, nbytes);
  write_bytes(path, buf, h + nbytes, gz);
}

// 3 images of 2 rows x 4 columns, values 10*i + pixel; labels 2, 0, 1.
static const uint8_t IMG[3 * 8] = {0,  1,  2,  3,  4,  5,  6,  7,  10, 11, 12, 13,
                                   14, 15, 16, 17, 20, 21, 22, 23, 24, 25, 26, 27};
static const uint8_t LAB[3] = {2, 0, 1};

static void write_small_pair(const char *im, const char *lb, int gz) {
  write_idx(im, 0x08, 3, (uint32_t[]){3, 2, 4}, IMG, sizeof IMG, gz);
  write_idx(lb, 0x08, 1, (uint32_t[]){3}, LAB, sizeof LAB, gz);
}

static void check_small(const vkp_dataset *ds) {
  assert_int_equal(ds->count, 3);
  assert_int_equal(ds->width, 4);
  assert_int_equal(ds->height, 2);
  assert_int_equal(ds->channels, 1);
  assert_int_equal(ds->n_classes, 3);
  assert_string_equal(ds->class_names[0], "0");
  assert_string_equal(ds->class_names[2], "2");
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ds->labels[i], LAB[i]);
    assert_int_equal(ds->widths[i], 4);
    assert_int_equal(ds->heights[i], 2);
    assert_memory_equal(vkp_dataset_image(ds, (size_t)i), IMG + 8 * i, 8);
  }
  assert_null(ds->paths);
}

static void test_idx_raw_and_gzip(void **state) {
  (void)state;
  for (int gz = 0; gz < 2; gz++) {
    const char *im = tmp_path(gz ? "small-images.gz" : "small-images");
    const char *lb = tmp_path(gz ? "small-labels.gz" : "small-labels");
    write_small_pair(im, lb, gz);
    vkp_dataset *ds = NULL;
    vkp_error e;
    vkp_status st = vkp_data_load_idx(im, lb, NULL, 0, &ds, &e);
    if (st != VKP_OK) fail_msg("%s", e.msg);
    check_small(ds);
    vkp_dataset_free(ds);
    // With class names.
    const char *names[] = {"zero", "one", "two", "three"};
    assert_int_equal(vkp_data_load_idx(im, lb, names, 4, &ds, &e), VKP_OK);
    assert_int_equal(ds->n_classes, 4);
    assert_string_equal(ds->class_names[3], "three");
    assert_int_equal(vkp_dataset_find_class(ds, "two"), 2);
    vkp_dataset_free(ds);
  }
  vkp_dataset_free(NULL);
}

static void test_idx_types(void **state) {
  (void)state;
  // i32 big-endian: -2, 70000; i16: -3, 300; f32: 1.5; f64: -0.25
  const unsigned char i32[] = {0xff, 0xff, 0xff, 0xfe, 0x00, 0x01, 0x11, 0x70};
  const unsigned char i16[] = {0xff, 0xfd, 0x01, 0x2c};
  const unsigned char f32[] = {0x3f, 0xc0, 0x00, 0x00};
  const unsigned char f64[] = {0xbf, 0xd0, 0, 0, 0, 0, 0, 0};
  vkp_idx a;
  vkp_error e;
  for (int gz = 0; gz < 2; gz++) {
    const char *p = tmp_path("types");
    write_idx(p, 0x0C, 1, (uint32_t[]){2}, i32, sizeof i32, gz);
    assert_int_equal(vkp_idx_read(p, &a, &e), VKP_OK);
    assert_int_equal(a.type, VKP_IDX_I32);
    assert_int_equal(a.ndim, 1);
    assert_int_equal(a.dims[0], 2);
    assert_int_equal(((int32_t *)a.data)[0], -2);
    assert_int_equal(((int32_t *)a.data)[1], 70000);
    vkp_idx_release(&a);
    write_idx(p, 0x0B, 2, (uint32_t[]){1, 2}, i16, sizeof i16, gz);
    assert_int_equal(vkp_idx_read(p, &a, &e), VKP_OK);
    assert_int_equal(((int16_t *)a.data)[0], -3);
    assert_int_equal(((int16_t *)a.data)[1], 300);
    vkp_idx_release(&a);
    write_idx(p, 0x0D, 1, (uint32_t[]){1}, f32, sizeof f32, gz);
    assert_int_equal(vkp_idx_read(p, &a, &e), VKP_OK);
    assert_true(((float *)a.data)[0] == 1.5f);
    vkp_idx_release(&a);
    write_idx(p, 0x0E, 1, (uint32_t[]){1}, f64, sizeof f64, gz);
    assert_int_equal(vkp_idx_read(p, &a, &e), VKP_OK);
    assert_true(((double *)a.data)[0] == -0.25);
    assert_int_equal(a.nbytes, 8);
    vkp_idx_release(&a);
  }
  vkp_idx_release(NULL);
}

// Expects st == want and the message to contain every given fragment.
static void expect_err(vkp_status st, const vkp_error *e, vkp_status want, const char *frag1,
                       const char *frag2) {
  if (st != want)
    fail_msg("status %s, want %s (%s)", vkp_status_name(st), vkp_status_name(want), e->msg);
  if (frag1 && !strstr(e->msg, frag1)) fail_msg("message '%s' lacks '%s'", e->msg, frag1);
  if (frag2 && !strstr(e->msg, frag2)) fail_msg("message '%s' lacks '%s'", e->msg, frag2);
}

static void test_idx_rejects(void **state) {
  (void)state;
  vkp_idx a;
  vkp_error e;
  unsigned char buf[256];
  const char *p = tmp_path("bad");

  // Missing file.
  expect_err(vkp_idx_read(tmp_path("nope"), &a, &e), &e, VKP_ERR_IO, "nope", "cannot open");
  // Empty file, short header.
  write_bytes(p, buf, 0, 0);
  expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "truncated");
  write_bytes(p, (unsigned char[]){0, 0, 8}, 3, 0);
  expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "truncated");
  // Bad magic: nonzero first bytes, unknown type, zero / too many dims.
  for (int gz = 0; gz < 2; gz++) {
    size_t h = idx_header(buf, 0x08, 1, (uint32_t[]){1});
    buf[h] = 5;
    buf[0] = 1;
    write_bytes(p, buf, h + 1, gz);
    expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "not an IDX file");
    buf[0] = 0;
    buf[2] = 0x07;
    write_bytes(p, buf, h + 1, gz);
    expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "not an IDX file");
    buf[2] = 0x08;
    buf[3] = 0;
    write_bytes(p, buf, h + 1, gz);
    expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "not an IDX file");
    buf[3] = 9;
    write_bytes(p, buf, h + 1, gz);
    expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "not an IDX file");
    // Truncated dims.
    idx_header(buf, 0x08, 3, (uint32_t[]){1, 2, 2});
    write_bytes(p, buf, 10, gz);
    expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "truncated");
    // Truncated data: header declares 3x2x4, 23 of 24 bytes present.
    h = idx_header(buf, 0x08, 3, (uint32_t[]){3, 2, 4});
    memcpy(buf + h, IMG, sizeof IMG);
    write_bytes(p, buf, h + sizeof IMG - 1, gz);
    expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "truncated");
    // Trailing data.
    write_bytes(p, buf, h + sizeof IMG + 0, gz);
    assert_int_equal(vkp_idx_read(p, &a, &e), VKP_OK);
    vkp_idx_release(&a);
    buf[h + sizeof IMG] = 99;
    write_bytes(p, buf, h + sizeof IMG + 1, gz);
    expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "trailing");
  }
  // A header claiming 60000x1000x1000 bytes in a tiny gzip file: rejected before allocating.
  size_t h = idx_header(buf, 0x08, 3, (uint32_t[]){60000, 1000, 1000});
  write_bytes(p, buf, h + 10, 1);
  expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "truncated");
  // Dimensions whose product overflows size_t.
  h = idx_header(buf, 0x0E, 4, (uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu, 2});
  write_bytes(p, buf, h, 0);
  expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "overflow");
  assert_null(a.data);
  // 2^63 bytes declared (it fits size_t, not a signed file size) and one byte there: truncated, not
  // "trailing data" after a signed overflow (fuzz_idx).
  h = idx_header(buf, 0x08, 4, (uint32_t[]){2048, 512, 65536, 134217728});
  write_bytes(p, buf, h + 1, 0);
  expect_err(vkp_idx_read(p, &a, &e), &e, VKP_ERR_FORMAT, p, "truncated IDX file");
  assert_non_null(strstr(e.msg, "(9223372036854775808 bytes of data)"));

  // A gzip stream cut in the middle, and one with a damaged CRC.
  unsigned char big[4096];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 7 + (i >> 5));
  const char *g = tmp_path("big.gz");
  {
    unsigned char whole[8 + 4096];
    size_t hh = idx_header(whole, 0x08, 1, (uint32_t[]){4096});
    memcpy(whole + hh, big, sizeof big);
    write_bytes(g, whole, hh + sizeof big, 1);
  }
  assert_int_equal(vkp_idx_read(g, &a, &e), VKP_OK);
  assert_memory_equal(a.data, big, sizeof big);
  vkp_idx_release(&a);
  size_t gsz = file_size(g);
  unsigned char *gzbytes = malloc(gsz);
  FILE *f = fopen(g, "rb");
  assert_int_equal(fread(gzbytes, 1, gsz, f), gsz);
  fclose(f);
  const char *cut = tmp_path("cut.gz");
  write_bytes(cut, gzbytes, gsz / 2, 0);
  expect_err(vkp_idx_read(cut, &a, &e), &e, VKP_ERR_FORMAT, cut, "truncated IDX file");
  write_bytes(cut, gzbytes, gsz - 4, 0);  // all data, but no length trailer
  expect_err(vkp_idx_read(cut, &a, &e), &e, VKP_ERR_FORMAT, cut, "truncated gzip");
  gzbytes[gsz - 6] ^= 0x55;  // CRC32 field
  write_bytes(cut, gzbytes, gsz, 0);
  expect_err(vkp_idx_read(cut, &a, &e), &e, VKP_ERR_FORMAT, cut, "corrupt gzip");
  gzbytes[gsz - 6] ^= 0x55;
  gzbytes[gsz / 2] ^= 0xff;  // damaged deflate data
  write_bytes(cut, gzbytes, gsz, 0);
  expect_err(vkp_idx_read(cut, &a, &e), &e, VKP_ERR_FORMAT, cut, NULL);
  assert_null(a.data);
  free(gzbytes);
}

static void test_idx_dataset_rejects(void **state) {
  (void)state;
  vkp_dataset *ds = (vkp_dataset *)1;
  vkp_error e;
  const char *im = tmp_path("r-images"), *lb = tmp_path("r-labels");
  write_small_pair(im, lb, 0);
  // Count mismatch: 2 labels for 3 images.
  write_idx(lb, 0x08, 1, (uint32_t[]){2}, LAB, 2, 0);
  expect_err(vkp_data_load_idx(im, lb, NULL, 0, &ds, &e), &e, VKP_ERR_FORMAT, lb, "2 labels");
  assert_null(ds);
  // Label out of range of the given names.
  write_idx(lb, 0x08, 1, (uint32_t[]){3}, LAB, 3, 0);
  const char *two[] = {"a", "b"};
  expect_err(vkp_data_load_idx(im, lb, two, 2, &ds, &e), &e, VKP_ERR_FORMAT, lb, "label 2");
  // Images with 2 dims; labels with 2 dims; labels as floats.
  write_idx(im, 0x08, 2, (uint32_t[]){3, 8}, IMG, sizeof IMG, 0);
  expect_err(vkp_data_load_idx(im, lb, NULL, 0, &ds, &e), &e, VKP_ERR_FORMAT, im, "not an image");
  write_small_pair(im, lb, 0);
  write_idx(lb, 0x08, 2, (uint32_t[]){3, 1}, LAB, 3, 0);
  expect_err(vkp_data_load_idx(im, lb, NULL, 0, &ds, &e), &e, VKP_ERR_FORMAT, lb, "not a label");
  write_idx(lb, 0x0D, 1, (uint32_t[]){1}, (unsigned char[]){0x3f, 0x80, 0, 0}, 4, 0);
  expect_err(vkp_data_load_idx(im, lb, NULL, 0, &ds, &e), &e, VKP_ERR_FORMAT, lb, "not a label");
  // Images swapped with labels.
  write_small_pair(im, lb, 0);
  expect_err(vkp_data_load_idx(lb, im, NULL, 0, &ds, &e), &e, VKP_ERR_FORMAT, lb, NULL);
  // i32 labels work.
  write_idx(lb, 0x0C, 1, (uint32_t[]){3},
            (unsigned char[]){0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1}, 12, 1);
  assert_int_equal(vkp_data_load_idx(im, lb, NULL, 0, &ds, &e), VKP_OK);
  check_small(ds);
  vkp_dataset_free(ds);
  assert_int_equal(vkp_data_load_idx(im, lb, NULL, 0, NULL, &e), VKP_ERR_INVALID);
}

// Reads `n` bytes at `offset` of the decompressed gzip (or plain) file with zlib directly.
static void zread_at(const char *path, size_t offset, void *dst, size_t n) {
  gzFile f = gzopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(gzseek(f, (z_off_t)offset, SEEK_SET), (z_off_t)offset);
  assert_int_equal(gzread(f, dst, (unsigned)n), (int)n);
  gzclose(f);
}

static void check_real(const char *name, const char *split, size_t want_count, int per_class) {
  vkp_dataset *ds = NULL;
  vkp_error e;
  vkp_data_files files;
  vkp_status st = vkp_data_locate(name, split, &files, &e);
  if (st != VKP_OK) fail_msg("%s is installed by scripts/setup but: %s", name, e.msg);
  st = vkp_data_load_named(name, split, &ds, &e);
  if (st != VKP_OK) fail_msg("%s", e.msg);
  assert_int_equal(ds->count, want_count);
  assert_int_equal(ds->width, 28);
  assert_int_equal(ds->height, 28);
  assert_int_equal(ds->channels, 1);
  assert_int_equal(ds->n_classes, 10);
  // Independent reads: label file header is 8 bytes, image file header 16.
  unsigned char hdr[16], lab[2], img[2][784];
  zread_at(files.labels, 0, hdr, 8);
  assert_int_equal(hdr[2], 0x08);
  assert_int_equal(hdr[3], 1);
  assert_int_equal(((size_t)hdr[4] << 24 | (size_t)hdr[5] << 16 | (size_t)hdr[6] << 8 | hdr[7]),
                   want_count);
  zread_at(files.labels, 8, lab, 1);
  zread_at(files.labels, 8 + want_count - 1, lab + 1, 1);
  zread_at(files.images, 16, img[0], 784);
  zread_at(files.images, 16 + (want_count - 1) * 784, img[1], 784);
  assert_int_equal(ds->labels[0], lab[0]);
  assert_int_equal(ds->labels[want_count - 1], lab[1]);
  assert_memory_equal(vkp_dataset_image(ds, 0), img[0], 784);
  assert_memory_equal(vkp_dataset_image(ds, want_count - 1), img[1], 784);
  if (per_class) {
    int counts[10] = {0};
    for (size_t i = 0; i < ds->count; i++) counts[ds->labels[i]]++;
    for (int c = 0; c < 10; c++) assert_int_equal(counts[c], per_class);
  }
  printf("%s/%s: %zu images, first label %d (%s)\n", name, split, ds->count, ds->labels[0],
         ds->class_names[ds->labels[0]]);
  vkp_dataset_free(ds);
}

static void test_real_fashion_mnist(void **state) {
  (void)state;
  // Fashion-MNIST's test set: 1,000 images of each class.
  check_real("fashion-mnist", "test", 10000, 1000);
  int n = 0;
  const char *const *names = vkp_data_class_names("fashion-mnist", &n);
  assert_int_equal(n, 10);
  assert_string_equal(names[0], "T-shirt/top");
  assert_string_equal(names[9], "Ankle boot");
  vkp_dataset *ds = NULL;
  vkp_error e;
  assert_int_equal(vkp_data_load_named("fashion-mnist", "test", &ds, &e), VKP_OK);
  assert_string_equal(ds->class_names[5], "Sandal");
  assert_string_equal(ds->name, "fashion-mnist/test");
  // The first test image is an ankle boot (label 9), as documented by Zalando's README.
  assert_int_equal(ds->labels[0], 9);
  vkp_dataset_free(ds);
}

static void test_real_mnist(void **state) {
  (void)state;
  check_real("mnist", "test", 10000, 0);
  check_real("mnist", "train", 60000, 0);
}

static void test_locate_errors(void **state) {
  (void)state;
  vkp_data_files f;
  vkp_error e;
  expect_err(vkp_data_locate("imagenet", NULL, &f, &e), &e, VKP_ERR_NOT_FOUND, "imagenet",
             "fashion-mnist");
  expect_err(vkp_data_locate("mnist", "val", &f, &e), &e, VKP_ERR_NOT_FOUND, "val", NULL);
  for (int i = 0; vkp_data_known_name(i); i++) assert_non_null(vkp_data_class_names(vkp_data_known_name(i), NULL));
  assert_null(vkp_data_known_name(-1));
  assert_null(vkp_data_class_names("nope", NULL));
  // Digits: either installed, or the message says which package to install.
  vkp_status st = vkp_data_locate("digits", NULL, &f, &e);
  if (st == VKP_OK) {
    vkp_dataset *ds = NULL;
    assert_int_equal(vkp_data_load_named("digits", NULL, &ds, &e), VKP_OK);
    assert_int_equal(ds->count, 1797);
    assert_int_equal(ds->width, 8);
    vkp_dataset_free(ds);
  } else {
    expect_err(st, &e, VKP_ERR_NOT_FOUND, "python3-sklearn", NULL);
  }
  // $VKPEFT_DATA_DIR comes first.
  char dir[600];
  snprintf(dir, sizeof dir, "%s/datadir", g_dir);
  mkdir(dir, 0755);
  snprintf(dir, sizeof dir, "%s/datadir/fashion-mnist", g_dir);
  mkdir(dir, 0755);
  char im[700], lb[700];
  snprintf(im, sizeof im, "%s/t10k-images-idx3-ubyte.gz", dir);
  snprintf(lb, sizeof lb, "%s/t10k-labels-idx1-ubyte", dir);
  write_small_pair(im, lb, 0);  // raw bytes under a .gz name: detected by magic, not by name
  snprintf(dir, sizeof dir, "%s/datadir", g_dir);
  setenv("VKPEFT_DATA_DIR", dir, 1);
  assert_int_equal(vkp_data_locate("fashion-mnist", "test", &f, &e), VKP_OK);
  assert_string_equal(f.images, im);
  assert_string_equal(f.labels, lb);
  vkp_dataset *ds = NULL;
  // 3 labels but 10 class names: fine (labels < 10).
  assert_int_equal(vkp_data_load_named("fashion-mnist", "test", &ds, &e), VKP_OK);
  assert_int_equal(ds->count, 3);
  assert_string_equal(ds->class_names[2], "Pullover");
  vkp_dataset_free(ds);
  unsetenv("VKPEFT_DATA_DIR");
}

static void test_digits_csv(void **state) {
  (void)state;
  char line[1024];
  char text[4096] = "";
  // Row 0: pixel k = k % 17 as floats, label 3; row 1: integers 16 then 0s, label 9.
  size_t o = 0;
  for (int k = 0; k < 64; k++) o += (size_t)snprintf(text + o, sizeof text - o, "%d.0,", k % 17);
  o += (size_t)snprintf(text + o, sizeof text - o, "3.000000000000000000e+00\n");
  o += (size_t)snprintf(text + o, sizeof text - o, "16");
  for (int k = 1; k < 64; k++) o += (size_t)snprintf(text + o, sizeof text - o, ",0");
  o += (size_t)snprintf(text + o, sizeof text - o, ",9\n\n");
  const char *p = tmp_path("digits.csv.gz");
  write_bytes(p, text, o, 1);
  vkp_dataset *ds = NULL;
  vkp_error e;
  vkp_status st = vkp_data_load_digits(p, &ds, &e);
  if (st != VKP_OK) fail_msg("%s", e.msg);
  assert_int_equal(ds->count, 2);
  assert_int_equal(ds->width, 8);
  assert_int_equal(ds->n_classes, 10);
  assert_int_equal(ds->labels[0], 3);
  assert_int_equal(ds->labels[1], 9);
  const uint8_t *a = vkp_dataset_image(ds, 0), *b = vkp_dataset_image(ds, 1);
  assert_int_equal(a[0], 0);
  assert_int_equal(a[1], 16);    // 1 * 255 / 16 = 15.94
  assert_int_equal(a[8], 128);   // 8 -> 127.5, half to even
  assert_int_equal(a[16], 255);  // 16
  assert_int_equal(b[0], 255);
  assert_int_equal(b[63], 0);
  vkp_dataset_free(ds);
  // Plain (uncompressed) works too; a short row names its line.
  snprintf(line, sizeof line, "0,1,2\n");
  memcpy(text + o - 1, line, strlen(line) + 1);
  write_bytes(p, text, strlen(text), 0);
  expect_err(vkp_data_load_digits(p, &ds, &e), &e, VKP_ERR_FORMAT, ":3:", NULL);
  write_bytes(p, "0,x\n", 4, 0);
  expect_err(vkp_data_load_digits(p, &ds, &e), &e, VKP_ERR_FORMAT, ":1:", "not a number");
  write_bytes(p, "", 0, 0);
  expect_err(vkp_data_load_digits(p, &ds, &e), &e, VKP_ERR_FORMAT, "no data", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idx_raw_and_gzip),   cmocka_unit_test(test_idx_types),
      cmocka_unit_test(test_idx_rejects),        cmocka_unit_test(test_idx_dataset_rejects),
      cmocka_unit_test(test_real_fashion_mnist), cmocka_unit_test(test_real_mnist),
      cmocka_unit_test(test_locate_errors),      cmocka_unit_test(test_digits_csv),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
