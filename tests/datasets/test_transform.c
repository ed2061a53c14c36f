// test_transform.c — preprocessing against float64 references and hand-computed values (bilinear
// resize, centre crop with and without resize, padding, random-resized and padded random crops,
// flips, channel mapping, normalisation), plus dataset statistics, subsets and splits.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_data.h"

// ---- float64 references ----------------------------------------------------------------------

// PyTorch's upsample_bilinear2d (align_corners=False, antialias=False), written from its formula:
// real = max(0, scale * (dst + 0.5) - 0.5), i0 = (int)real, i1 = i0 + (i0 < in - 1), l = real - i0.
static void ref_resize(const double *src, int W, int H, int C, double *dst, int ow, int oh) {
  for (int y = 0; y < oh; y++) {
    double ry = (double)H / oh * (y + 0.5) - 0.5;
    if (ry < 0) ry = 0;
    int y0 = (int)ry, y1 = y0 + (y0 < H - 1);
    double ly = ry - y0;
    for (int x = 0; x < ow; x++) {
      double rx = (double)W / ow * (x + 0.5) - 0.5;
      if (rx < 0) rx = 0;
      int x0 = (int)rx, x1 = x0 + (x0 < W - 1);
      double lx = rx - x0;
      for (int c = 0; c < C; c++) {
        double a = src[(y0 * W + x0) * C + c], b = src[(y0 * W + x1) * C + c];
        double d = src[(y1 * W + x0) * C + c], e = src[(y1 * W + x1) * C + c];
        dst[(y * ow + x) * C + c] = (1 - ly) * ((1 - lx) * a + lx * b) + ly * ((1 - lx) * d + lx * e);
      }
    }
  }
}

static void to_double(const uint8_t *p, size_t n, double *d) {
  for (size_t i = 0; i < n; i++) d[i] = p[i];
}

static uint8_t *random_image(int W, int H, int C, unsigned seed) {
  uint8_t *p = malloc((size_t)W * H * C);
  uint32_t s = seed * 2654435761u + 1;
  for (int i = 0; i < W * H * C; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = (uint8_t)(s >> 24);
  }
  return p;
}

// Compares a CHW float output with an HWC double reference in 0..255 units (out = ref / 255).
static void assert_chw_matches(const float *out, const double *ref_hwc, int ow, int oh, int C,
                               double tol) {
  for (int c = 0; c < C; c++)
    for (int y = 0; y < oh; y++)
      for (int x = 0; x < ow; x++) {
        double want = ref_hwc[(y * ow + x) * C + c] / 255.0, got = out[(c * oh + y) * ow + x];
        if (fabs(got - want) > tol)
          fail_msg("c%d y%d x%d: got %.7f want %.7f", c, y, x, got, want);
      }
}

static void test_resize_vs_reference(void **state) {
  (void)state;
  vkp_error e;
  const int sizes[][4] = {{5, 7, 9, 4}, {7, 5, 3, 2}, {4, 4, 16, 16}, {28, 28, 32, 32},
                          {13, 9, 13, 9}, {32, 24, 11, 17}, {1, 1, 3, 2}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    int W = sizes[s][0], H = sizes[s][1], ow = sizes[s][2], oh = sizes[s][3];
    for (int C = 1; C <= 4; C += 2) {
      uint8_t *img = random_image(W, H, C, (unsigned)(s * 10 + C));
      double *src = malloc(sizeof(double) * W * H * C), *ref = malloc(sizeof(double) * ow * oh * C);
      float *out = malloc(sizeof(float) * ow * oh * C);
      to_double(img, (size_t)W * H * C, src);
      ref_resize(src, W, H, C, ref, ow, oh);
      vkp_data_transform t = {.out_w = ow, .out_h = oh};
      assert_int_equal(vkp_data_transform_apply(&t, img, W, H, C, 123, out, &e), VKP_OK);
      assert_chw_matches(out, ref, ow, oh, C, 2e-6);
      free(img);
      free(src);
      free(ref);
      free(out);
    }
  }
  // A hand-computed case: a 2x1 image [0, 100] enlarged to 4x1 samples at x = -0.25 (clamped to
  // 0), 0.25, 0.75, 1.25 (clamped to 1): 0, 25, 75, 100.
  const uint8_t two[2] = {0, 100};
  vkp_data_transform t = {.out_w = 4, .out_h = 1};
  float out[4];
  assert_int_equal(vkp_data_transform_apply(&t, two, 2, 1, 1, 0, out, &e), VKP_OK);
  const float want[4] = {0, 25 / 255.f, 75 / 255.f, 100 / 255.f};
  for (int i = 0; i < 4; i++) assert_true(fabsf(out[i] - want[i]) < 1e-6f);
}

static void test_flip_normalise_channels(void **state) {
  (void)state;
  vkp_error e;
  const int W = 6, H = 5;
  uint8_t *img = random_image(W, H, 3, 7);
  float a[3 * 30], b[3 * 30];
  vkp_data_transform t = {.out_w = W, .out_h = H};
  assert_int_equal(vkp_data_transform_apply(&t, img, W, H, 3, 1, a, &e), VKP_OK);
  // Same size: the identity (up to float rounding of v / 255).
  for (int c = 0; c < 3; c++)
    for (int p = 0; p < 30; p++) assert_true(fabsf(a[c * 30 + p] - img[p * 3 + c] / 255.0f) < 1e-6f);
  // Flip: mirrored columns.
  t.hflip = 1.0f;
  assert_int_equal(vkp_data_transform_apply(&t, img, W, H, 3, 1, b, &e), VKP_OK);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) assert_true(b[(c * H + y) * W + x] == a[(c * H + y) * W + W - 1 - x]);
  // Flip with resizing: equals flipping the resized image (bilinear is mirror-symmetric).
  vkp_data_transform r = {.out_w = 9, .out_h = 4};
  float rr[3 * 36], rf[3 * 36];
  assert_int_equal(vkp_data_transform_apply(&r, img, W, H, 3, 1, rr, &e), VKP_OK);
  r.hflip = 1.0f;
  assert_int_equal(vkp_data_transform_apply(&r, img, W, H, 3, 1, rf, &e), VKP_OK);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < 4; y++)
      for (int x = 0; x < 9; x++)
        assert_true(fabsf(rf[(c * 4 + y) * 9 + x] - rr[(c * 4 + y) * 9 + 8 - x]) < 1e-6f);
  // Probability 0.5: about half of 400 keys flip.
  t.hflip = 0.5f;
  int flips = 0;
  for (uint64_t k = 0; k < 400; k++) {
    assert_int_equal(vkp_data_transform_apply(&t, img, W, H, 3, k, b, &e), VKP_OK);
    flips += memcmp(a, b, sizeof a) != 0;
  }
  assert_true(flips > 140 && flips < 260);
  // Normalisation: (v / 255 - mean) / std; std 0 means 1.
  t = (vkp_data_transform){.out_w = W, .out_h = H, .mean = {0.5f, 0.25f, 0.1f}, .std = {0.5f, 2.0f, 0}};
  assert_int_equal(vkp_data_transform_apply(&t, img, W, H, 3, 1, b, &e), VKP_OK);
  const double m[3] = {0.5, 0.25, 0.1}, sd[3] = {0.5, 2.0, 1.0};
  for (int c = 0; c < 3; c++)
    for (int p = 0; p < 30; p++) {
      double want = (img[p * 3 + c] / 255.0 - m[c]) / sd[c];
      assert_true(fabs(b[c * 30 + p] - want) < 1e-6);
    }
  // Hand value: 255 with mean 0.5, std 0.5 -> 1; 0 -> -1.
  const uint8_t bw[2] = {0, 255};
  vkp_data_transform n1 = {.out_w = 2, .out_h = 1, .mean = {0.5f}, .std = {0.5f}};
  float o2[2];
  assert_int_equal(vkp_data_transform_apply(&n1, bw, 2, 1, 1, 0, o2, &e), VKP_OK);
  assert_true(fabsf(o2[0] + 1.0f) < 1e-6f && fabsf(o2[1] - 1.0f) < 1e-6f);
  // Channels: RGB -> grey is the BT.601 luma; grey -> RGB replicates; RGBA -> RGB drops alpha.
  t = (vkp_data_transform){.out_w = W, .out_h = H, .out_channels = 1};
  assert_int_equal(vkp_data_transform_apply(&t, img, W, H, 3, 1, b, &e), VKP_OK);
  for (int p = 0; p < 30; p++) {
    double want = (0.299 * img[p * 3] + 0.587 * img[p * 3 + 1] + 0.114 * img[p * 3 + 2]) / 255.0;
    assert_true(fabs(b[p] - want) < 1e-6);
  }
  uint8_t grey[30];
  for (int p = 0; p < 30; p++) grey[p] = img[p];
  t.out_channels = 3;
  assert_int_equal(vkp_data_transform_apply(&t, grey, W, H, 1, 1, b, &e), VKP_OK);
  for (int c = 0; c < 3; c++)
    for (int p = 0; p < 30; p++) assert_true(fabsf(b[c * 30 + p] - grey[p] / 255.0f) < 1e-6f);
  uint8_t rgba[4 * 30];
  for (int p = 0; p < 30; p++) {
    memcpy(rgba + 4 * p, img + 3 * p, 3);
    rgba[4 * p + 3] = (uint8_t)p;
  }
  assert_int_equal(vkp_data_transform_apply(&t, rgba, W, H, 4, 1, b, &e), VKP_OK);
  assert_memory_equal(a, b, sizeof a);
  assert_int_equal(vkp_data_transform_channels(&t, 4), 3);
  free(img);
}

static void test_center_crop(void **state) {
  (void)state;
  vkp_error e;
  // No resize, 9x6 -> 4x4: left = round((9-4)/2 = 2.5) = 2 (half to even, as Python's round),
  // top = round(1.0) = 1: an exact window.
  uint8_t *img = random_image(9, 6, 1, 3);
  float o[16];
  vkp_data_transform t = {.out_w = 4, .out_h = 4, .crop = VKP_CROP_CENTER};
  assert_int_equal(vkp_data_transform_apply(&t, img, 9, 6, 1, 0, o, &e), VKP_OK);
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) assert_true(fabsf(o[y * 4 + x] - img[(y + 1) * 9 + x + 2] / 255.0f) < 1e-6f);
  // 28x28 -> 32x32: padded by 2 on each side with the fill value.
  uint8_t *m = random_image(28, 28, 1, 4);
  float p[32 * 32];
  t = (vkp_data_transform){.out_w = 32, .out_h = 32, .crop = VKP_CROP_CENTER, .fill = 51};
  assert_int_equal(vkp_data_transform_apply(&t, m, 28, 28, 1, 0, p, &e), VKP_OK);
  for (int y = 0; y < 32; y++)
    for (int x = 0; x < 32; x++) {
      int in = x >= 2 && x < 30 && y >= 2 && y < 30;
      float want = in ? m[(y - 2) * 28 + x - 2] / 255.0f : 0.2f;
      assert_true(fabsf(p[y * 32 + x] - want) < 1e-6f);
    }
  // With resize: 10x6, shorter side -> 4 gives 6x4 (6 = int(4 * 10 / 6)); a 4x4 centre crop
  // starts at column round((6 - 4) / 2) = 1, row 0. Reference: resize, then crop.
  uint8_t *r = random_image(10, 6, 3, 5);
  double src[10 * 6 * 3], rs[6 * 4 * 3], crop[4 * 4 * 3];
  to_double(r, sizeof src / sizeof src[0], src);
  ref_resize(src, 10, 6, 3, rs, 6, 4);
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++)
      for (int c = 0; c < 3; c++) crop[(y * 4 + x) * 3 + c] = rs[(y * 6 + x + 1) * 3 + c];
  float q[3 * 16];
  t = (vkp_data_transform){.out_w = 4, .out_h = 4, .crop = VKP_CROP_CENTER, .resize_short = 4};
  assert_int_equal(vkp_data_transform_apply(&t, r, 10, 6, 3, 0, q, &e), VKP_OK);
  assert_chw_matches(q, crop, 4, 4, 3, 2e-6);
  // Resize 256 / crop 224 style on a tall image: 6x10 -> short side 5 -> 5x8, crop 3x3 at
  // left round(1.0) = 1, top round(2.5) = 2.
  double src2[6 * 10], rs2[5 * 8], crop2[9];
  uint8_t *tall = random_image(6, 10, 1, 6);
  to_double(tall, 60, src2);
  ref_resize(src2, 6, 10, 1, rs2, 5, 8);
  for (int y = 0; y < 3; y++)
    for (int x = 0; x < 3; x++) crop2[y * 3 + x] = rs2[(y + 2) * 5 + x + 1];
  float q2[9];
  t = (vkp_data_transform){.out_w = 3, .out_h = 3, .crop = VKP_CROP_CENTER, .resize_short = 5};
  assert_int_equal(vkp_data_transform_apply(&t, tall, 6, 10, 1, 0, q2, &e), VKP_OK);
  assert_chw_matches(q2, crop2, 3, 3, 1, 2e-6);
  free(img);
  free(m);
  free(r);
  free(tall);
}

// Finds (dx, dy) such that out (ow x oh, grey) is the window of img at (dx, dy) with fill outside.
static int find_window(const float *out, int ow, int oh, const uint8_t *img, int W, int H,
                       int range_lo, int range_hi, float fill, int *fdx, int *fdy) {
  for (int dy = range_lo; dy <= range_hi; dy++)
    for (int dx = range_lo; dx <= range_hi; dx++) {
      int ok = 1;
      for (int y = 0; y < oh && ok; y++)
        for (int x = 0; x < ow && ok; x++) {
          int sx = x + dx, sy = y + dy;
          float want = sx >= 0 && sx < W && sy >= 0 && sy < H ? img[sy * W + sx] / 255.0f : fill / 255.0f;
          ok = fabsf(out[y * ow + x] - want) < 1e-6f;
        }
      if (ok) {
        *fdx = dx;
        *fdy = dy;
        return 1;
      }
    }
  return 0;
}

static void test_random_crops(void **state) {
  (void)state;
  vkp_error e;
  // Padded random crop: 6x6, pad 2 -> every output is a window at offset in [-2, 2]^2, all 25
  // offsets occur, and the same key gives the same window.
  uint8_t *img = random_image(6, 6, 1, 9);
  float o[36], o2[36];
  vkp_data_transform t = {.out_w = 6, .out_h = 6, .crop = VKP_CROP_RANDOM_PAD, .pad = 2, .fill = 0};
  int seen[5][5] = {{0}};
  for (uint64_t k = 0; k < 1000; k++) {
    assert_int_equal(vkp_data_transform_apply(&t, img, 6, 6, 1, k, o, &e), VKP_OK);
    int dx, dy;
    if (!find_window(o, 6, 6, img, 6, 6, -2, 2, 0, &dx, &dy)) fail_msg("key %d: not a window", (int)k);
    seen[dy + 2][dx + 2]++;
    assert_int_equal(vkp_data_transform_apply(&t, img, 6, 6, 1, k, o2, &e), VKP_OK);
    assert_memory_equal(o, o2, sizeof o);
  }
  for (int i = 0; i < 25; i++) assert_true(seen[i / 5][i % 5] > 10);
  // RandomResizedCrop with scale 1/4 and ratio 1 on 8x8 -> 4x4: an exact 4x4 window at a random
  // position in [0, 4]^2 (no resampling); all 25 positions occur.
  uint8_t *big = random_image(8, 8, 1, 10);
  float w[16];
  vkp_data_transform rr = {.out_w = 4, .out_h = 4, .crop = VKP_CROP_RANDOM_RESIZED,
                           .scale_min = 0.25f, .scale_max = 0.25f, .ratio_min = 1, .ratio_max = 1};
  memset(seen, 0, sizeof seen);
  for (uint64_t k = 0; k < 1000; k++) {
    assert_int_equal(vkp_data_transform_apply(&rr, big, 8, 8, 1, k, w, &e), VKP_OK);
    int dx, dy;
    if (!find_window(w, 4, 4, big, 8, 8, 0, 4, 0, &dx, &dy)) fail_msg("key %d: not a window", (int)k);
    seen[dy][dx]++;
  }
  for (int i = 0; i < 25; i++) assert_true(seen[i / 5][i % 5] > 10);
  // Scale 1, ratio 1 on a square image is the whole image: equals a plain resize.
  rr.scale_min = rr.scale_max = 1.0f;
  float full[16], plain[16];
  assert_int_equal(vkp_data_transform_apply(&rr, big, 8, 8, 1, 5, full, &e), VKP_OK);
  vkp_data_transform pl = {.out_w = 4, .out_h = 4};
  assert_int_equal(vkp_data_transform_apply(&pl, big, 8, 8, 1, 5, plain, &e), VKP_OK);
  assert_memory_equal(full, plain, sizeof full);
  // Defaults (scale 0.08..1, ratio 3/4..4/3): values stay in the image's range, keys differ.
  vkp_data_transform d = {.out_w = 5, .out_h = 5, .crop = VKP_CROP_RANDOM_RESIZED};
  float d1[25], d2[25];
  int differ = 0;
  for (uint64_t k = 0; k < 50; k++) {
    assert_int_equal(vkp_data_transform_apply(&d, big, 8, 8, 1, k, d1, &e), VKP_OK);
    assert_int_equal(vkp_data_transform_apply(&d, big, 8, 8, 1, k + 1000, d2, &e), VKP_OK);
    differ += memcmp(d1, d2, sizeof d1) != 0;
    for (int i = 0; i < 25; i++) assert_true(d1[i] >= 0.0f && d1[i] <= 1.0f);
  }
  assert_true(differ > 40);
  // An impossible ratio falls back to a central crop (no failure).
  d.ratio_min = d.ratio_max = 10.0f;
  assert_int_equal(vkp_data_transform_apply(&d, big, 8, 8, 1, 1, d1, &e), VKP_OK);
  free(img);
  free(big);
}

static void test_transform_rejects(void **state) {
  (void)state;
  vkp_error e;
  const vkp_data_transform bad[] = {
      {.out_w = 0, .out_h = 4},
      {.out_w = 4, .out_h = 4, .crop = (vkp_crop_mode)9},
      {.out_w = 4, .out_h = 4, .crop = VKP_CROP_RANDOM_RESIZED, .scale_min = 0.5f, .scale_max = 0.2f},
      {.out_w = 4, .out_h = 4, .crop = VKP_CROP_RANDOM_RESIZED, .ratio_min = -1, .ratio_max = 1},
      {.out_w = 4, .out_h = 4, .hflip = 2.0f},
      {.out_w = 4, .out_h = 4, .std = {-1.0f}},
      {.out_w = 4, .out_h = 4, .out_channels = 4},
      {.out_w = 4, .out_h = 4, .crop = VKP_CROP_RANDOM_PAD, .pad = -1},
      {.out_w = 4, .out_h = 4, .crop = VKP_CROP_CENTER, .resize_short = -3},
  };
  uint8_t img[16 * 3] = {0};
  float out[16 * 4];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(vkp_data_transform_check(&bad[i], 3, &e), VKP_ERR_INVALID);
    assert_int_equal(vkp_data_transform_apply(&bad[i], img, 4, 4, 3, 0, out, &e), VKP_ERR_INVALID);
    assert_true(strlen(e.msg) > 0);
  }
  vkp_data_transform ok = {.out_w = 4, .out_h = 4};
  assert_int_equal(vkp_data_transform_check(&ok, 2, &e), VKP_ERR_INVALID);
  assert_int_equal(vkp_data_transform_apply(&ok, NULL, 4, 4, 3, 0, out, &e), VKP_ERR_INVALID);
}

static vkp_dataset *labelled(size_t n, const int *labels, int n_classes) {
  vkp_dataset *ds = NULL;
  assert_int_equal(vkp_dataset_new(n, 2, 1, 1, n_classes, &ds, NULL), VKP_OK);
  for (size_t i = 0; i < n; i++) {
    ds->labels[i] = labels ? labels[i] : 0;
    ds->pixels[2 * i] = (uint8_t)i;
    ds->pixels[2 * i + 1] = (uint8_t)(i >> 8);
  }
  return ds;
}

static void test_stats_subset(void **state) {
  (void)state;
  vkp_error e;
  vkp_dataset *ds = NULL;
  assert_int_equal(vkp_dataset_new(2, 2, 1, 1, 2, &ds, &e), VKP_OK);
  ds->pixels[0] = 0, ds->pixels[1] = 255, ds->pixels[2] = 255, ds->pixels[3] = 255;
  float m, s;
  assert_int_equal(vkp_dataset_mean_std(ds, NULL, 0, &m, &s, &e), VKP_OK);
  // Values on [0,1]: 0, 1, 1, 1 -> mean 3/4, variance 3/4 - 9/16 = 3/16.
  assert_true(fabsf(m - 0.75f) < 1e-7f);
  assert_true(fabsf(s - sqrtf(3.0f / 16.0f)) < 1e-7f);
  size_t first = 0;
  assert_int_equal(vkp_dataset_mean_std(ds, &first, 1, &m, &s, &e), VKP_OK);
  assert_true(fabsf(m - 0.5f) < 1e-7f && fabsf(s - 0.5f) < 1e-7f);
  size_t bad = 7;
  assert_int_equal(vkp_dataset_mean_std(ds, &bad, 1, &m, &s, &e), VKP_ERR_INVALID);
  vkp_dataset_free(ds);
  // RGB, per channel.
  assert_int_equal(vkp_dataset_new(1, 1, 2, 3, 1, &ds, &e), VKP_OK);
  const uint8_t px[6] = {0, 51, 255, 255, 51, 255};
  memcpy(ds->pixels, px, 6);
  float m3[3], s3[3];
  assert_int_equal(vkp_dataset_mean_std(ds, NULL, 0, m3, s3, &e), VKP_OK);
  assert_true(fabsf(m3[0] - 0.5f) < 1e-7f && fabsf(s3[0] - 0.5f) < 1e-7f);
  assert_true(fabsf(m3[1] - 0.2f) < 1e-7f && fabsf(s3[1]) < 1e-7f);
  assert_true(fabsf(m3[2] - 1.0f) < 1e-7f && fabsf(s3[2]) < 1e-7f);
  const char *names[] = {"only"};
  assert_int_equal(vkp_dataset_set_class_names(ds, names, 1, &e), VKP_OK);
  assert_int_equal(vkp_dataset_set_class_names(ds, names, 2, &e), VKP_ERR_INVALID);
  vkp_dataset_free(ds);
  // Subsets copy pixels and labels in the given order.
  int labels[5] = {0, 1, 2, 1, 0};
  ds = labelled(5, labels, 3);
  vkp_dataset *sub = NULL;
  size_t idx[3] = {4, 1, 1};
  assert_int_equal(vkp_dataset_subset(ds, idx, 3, &sub, &e), VKP_OK);
  assert_int_equal(sub->count, 3);
  assert_int_equal(sub->n_classes, 3);
  assert_int_equal(sub->labels[0], 0);
  assert_int_equal(sub->labels[1], 1);
  assert_int_equal(vkp_dataset_image(sub, 0)[0], 4);
  assert_int_equal(vkp_dataset_image(sub, 2)[0], 1);
  vkp_dataset_free(sub);
  idx[0] = 5;
  assert_int_equal(vkp_dataset_subset(ds, idx, 3, &sub, &e), VKP_ERR_INVALID);
  assert_null(sub);
  vkp_dataset_free(ds);
  assert_int_equal(vkp_dataset_new(3, 0, 1, 1, 1, &ds, &e), VKP_ERR_INVALID);
  assert_int_equal(vkp_dataset_new(3, 1, 1, 2, 1, &ds, &e), VKP_ERR_INVALID);
}

static void test_split(void **state) {
  (void)state;
  vkp_error e;
  // Classes of 10, 20, 30 images, interleaved.
  int labels[60];
  for (int i = 0; i < 60; i++) labels[i] = i % 6 == 0 ? 0 : (i % 6 < 3 ? 1 : 2);
  int counts[3] = {0};
  for (int i = 0; i < 60; i++) counts[labels[i]]++;
  assert_int_equal(counts[0], 10);
  assert_int_equal(counts[1], 20);
  assert_int_equal(counts[2], 30);
  vkp_dataset *ds = labelled(60, labels, 3);
  size_t *tr = NULL, *va = NULL, nt = 0, nv = 0;
  assert_int_equal(vkp_dataset_split(ds, 0.2, 42, true, &tr, &nt, &va, &nv, &e), VKP_OK);
  assert_int_equal(nv, 12);
  assert_int_equal(nt, 48);
  int vc[3] = {0};
  char seen[60] = {0};
  for (size_t k = 0; k < nv; k++) {
    vc[labels[va[k]]]++;
    seen[va[k]]++;
    if (k) assert_true(va[k] > va[k - 1]);  // sorted
  }
  for (size_t k = 0; k < nt; k++) seen[tr[k]]++;
  for (int i = 0; i < 60; i++) assert_int_equal(seen[i], 1);  // a partition
  assert_int_equal(vc[0], 2);
  assert_int_equal(vc[1], 4);
  assert_int_equal(vc[2], 6);
  // Same seed: same split; another seed: another split.
  size_t *tr2, *va2, nt2, nv2;
  assert_int_equal(vkp_dataset_split(ds, 0.2, 42, true, &tr2, &nt2, &va2, &nv2, &e), VKP_OK);
  assert_memory_equal(va, va2, nv * sizeof *va);
  free(tr2);
  free(va2);
  assert_int_equal(vkp_dataset_split(ds, 0.2, 43, true, &tr2, &nt2, &va2, &nv2, &e), VKP_OK);
  assert_true(memcmp(va, va2, nv * sizeof *va) != 0);
  free(tr2);
  free(va2);
  free(tr);
  free(va);
  // Largest remainder: 0.25 of (10, 20, 30) = 2.5, 5, 7.5 -> 15 in all; the two halves go to the
  // lower class id first (tie), so 3 + 5 + 7.
  assert_int_equal(vkp_dataset_split(ds, 0.25, 1, true, &tr, &nt, &va, &nv, &e), VKP_OK);
  assert_int_equal(nv, 15);
  memset(vc, 0, sizeof vc);
  for (size_t k = 0; k < nv; k++) vc[labels[va[k]]]++;
  assert_int_equal(vc[0], 3);
  assert_int_equal(vc[1], 5);
  assert_int_equal(vc[2], 7);
  free(tr);
  free(va);
  // Unstratified, and the edges 0 and 1.
  assert_int_equal(vkp_dataset_split(ds, 0.5, 1, false, &tr, &nt, &va, &nv, &e), VKP_OK);
  assert_int_equal(nv, 30);
  free(tr);
  free(va);
  assert_int_equal(vkp_dataset_split(ds, 0.0, 1, true, &tr, &nt, &va, &nv, &e), VKP_OK);
  assert_int_equal(nv, 0);
  assert_null(va);
  assert_int_equal(nt, 60);
  free(tr);
  assert_int_equal(vkp_dataset_split(ds, 1.0, 1, false, &tr, &nt, &va, &nv, &e), VKP_OK);
  assert_int_equal(nt, 0);
  free(va);
  assert_int_equal(vkp_dataset_split(ds, 1.5, 1, false, &tr, &nt, &va, &nv, &e), VKP_ERR_INVALID);
  assert_int_equal(vkp_dataset_split(ds, NAN, 1, false, &tr, &nt, &va, &nv, &e), VKP_ERR_INVALID);
  vkp_dataset_free(ds);
}

static void test_batch_fill_and_keys(void **state) {
  (void)state;
  vkp_error e;
  vkp_dataset *ds = NULL;
  assert_int_equal(vkp_dataset_new(5, 6, 6, 1, 2, &ds, &e), VKP_OK);
  for (size_t i = 0; i < 5 * 36; i++) ds->pixels[i] = (uint8_t)(i * 13);
  for (int i = 0; i < 5; i++) ds->labels[i] = i % 2;
  vkp_data_transform t = {.out_w = 6, .out_h = 6, .crop = VKP_CROP_RANDOM_PAD, .pad = 2, .hflip = 0.5f};
  size_t idx[3] = {4, 0, 2};
  float batch[3 * 36], one[36];
  int32_t lab[3];
  assert_int_equal(vkp_data_batch_fill(ds, &t, idx, 3, 99, 7, batch, lab, &e), VKP_OK);
  for (int k = 0; k < 3; k++) {
    assert_int_equal(lab[k], ds->labels[idx[k]]);
    assert_int_equal(vkp_data_transform_apply(&t, vkp_dataset_image(ds, idx[k]), 6, 6, 1,
                                              vkp_data_sample_key(99, 7, idx[k]), one, &e),
                     VKP_OK);
    assert_memory_equal(batch + 36 * k, one, sizeof one);
  }
  idx[1] = 5;
  assert_int_equal(vkp_data_batch_fill(ds, &t, idx, 3, 99, 7, batch, lab, &e), VKP_ERR_INVALID);
  // Keys separate seed, epoch and index.
  uint64_t k0 = vkp_data_sample_key(1, 0, 0);
  assert_true(k0 != vkp_data_sample_key(2, 0, 0));
  assert_true(k0 != vkp_data_sample_key(1, 1, 0));
  assert_true(k0 != vkp_data_sample_key(1, 0, 1));
  assert_true(vkp_data_sample_key(1, 1, 0) != vkp_data_sample_key(1, 0, 1));
  assert_true(k0 == vkp_data_sample_key(1, 0, 0));
  vkp_dataset_free(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resize_vs_reference), cmocka_unit_test(test_flip_normalise_channels),
      cmocka_unit_test(test_center_crop),         cmocka_unit_test(test_random_crops),
      cmocka_unit_test(test_transform_rejects),   cmocka_unit_test(test_stats_subset),
      cmocka_unit_test(test_split),               cmocka_unit_test(test_batch_fill_and_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
