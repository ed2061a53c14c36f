// resample.c — antialiased resize of uint8 images (load-time resizing of file images).
//
// A separable triangle (bilinear) filter whose support grows with the downscale factor, like
// PIL's BILINEAR and torchvision's antialias=True: output pixel o of an axis of scale
// f = src / dst covers source centre c = (o + 0.5) * f; source pixel j gets the weight
// max(0, 1 - |j + 0.5 - c| / max(f, 1)), and the weights are normalised over the pixels inside
// the image. When enlarging (f <= 1) this is plain bilinear interpolation with clamped edges.
#include <math.h>
#include <stdlib.h>

#include "data_internal.h"

typedef struct weights {
  int first, n;  // first source index and tap count
} weights_span;

// Computes the taps of one output pixel into w (at most cap), returns the span.
static weights_span axis_weights(int o, int src, int dst, float *w, int cap) {
  double f = (double)src / dst, support = f > 1.0 ? f : 1.0;
  double c = (o + 0.5) * f;
  int j0 = (int)floor(c - support), j1 = (int)ceil(c + support);
  if (j0 < 0) j0 = 0;
  if (j1 > src) j1 = src;
  weights_span s = {j0, 0};
  double sum = 0;
  for (int j = j0; j < j1 && s.n < cap; j++) {
    double d = fabs(j + 0.5 - c) / support;
    double v = d < 1.0 ? 1.0 - d : 0.0;
    w[s.n++] = (float)v;
    sum += v;
  }
  if (sum > 0)
    for (int k = 0; k < s.n; k++) w[k] = (float)(w[k] / sum);
  // Drop leading zero weights so spans stay tight.
  while (s.n > 1 && w[0] == 0.0f) {
    for (int k = 1; k < s.n; k++) w[k - 1] = w[k];
    s.n--;
    s.first++;
  }
  return s;
}

void vkp_data_resize_u8(const uint8_t *src, int sw, int sh, int c, uint8_t *dst, int dw, int dh,
                         float *tmp) {
  int capx = (int)ceil(2.0 * (sw > dw ? (double)sw / dw : 1.0)) + 3;
  int capy = (int)ceil(2.0 * (sh > dh ? (double)sh / dh : 1.0)) + 3;
  int cap = capx > capy ? capx : capy;
  float *w = malloc((size_t)cap * sizeof *w);
  if (!w) {  // cannot happen for sane sizes; degrade to nearest neighbour rather than fail
    for (int y = 0; y < dh; y++)
      for (int x = 0; x < dw; x++)
        for (int k = 0; k < c; k++)
          dst[((size_t)y * dw + x) * c + k] =
              src[((size_t)(y * sh / dh) * sw + (size_t)(x * sw / dw)) * c + k];
    return;
  }
  // Horizontal pass: (sh, dw, c) floats.
  for (int x = 0; x < dw; x++) {
    weights_span s = axis_weights(x, sw, dw, w, cap);
    for (int y = 0; y < sh; y++) {
      const uint8_t *row = src + (size_t)y * sw * c;
      for (int k = 0; k < c; k++) {
        float acc = 0;
        for (int q = 0; q < s.n; q++) acc += w[q] * row[(size_t)(s.first + q) * c + k];
        tmp[((size_t)y * dw + x) * c + k] = acc;
      }
    }
  }
  // Vertical pass.
  for (int y = 0; y < dh; y++) {
    weights_span s = axis_weights(y, sh, dh, w, cap);
    for (int x = 0; x < dw; x++)
      for (int k = 0; k < c; k++) {
        float acc = 0;
        for (int q = 0; q < s.n; q++) acc += w[q] * tmp[((size_t)(s.first + q) * dw + x) * c + k];
        int v = (int)lrintf(acc);
        dst[((size_t)y * dw + x) * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
  }
  free(w);
}
