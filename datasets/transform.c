// transform.c — one uint8 HWC image -> one normalised float CHW tensor: crop, bilinear resize,
// flip, channel mapping, normalisation, in a single pass.
//
// Every crop mode reduces to a window in the source image and a per-axis scale: output pixel o
// samples the source at s = origin + (o + 0.5) * scale - 0.5 (half-pixel centres, PyTorch's
// align_corners=False). Positions are clamped to the pixels the reference pipeline would resize
// (the whole image, or the crop for RandomResizedCrop), so results equal torchvision's
// "crop, then resize" (or "resize, then crop") up to float rounding. Samples whose position lies
// outside the image (padding) take the fill value.
#include <math.h>
#include <string.h>

#include "data_internal.h"
#include "vkp_data.h"

uint64_t vkp_data_sample_key(uint64_t seed, int64_t epoch, size_t index) {
  return vkp_rng_key(seed ^ VKP_DATA_STREAM_AUG, (uint64_t)epoch, (uint64_t)index);
}

uint64_t vkp_data_sample_copy_key(uint64_t seed, int64_t epoch, size_t index, uint32_t copy) {
  uint64_t k = vkp_data_sample_key(seed, epoch, index);
  return copy ? vkp_rng_key(k, VKP_DATA_STREAM_REPEAT, copy) : k;
}

int vkp_data_transform_channels(const vkp_data_transform *t, int in_channels) {
  return t->out_channels > 0 ? t->out_channels : in_channels;
}

vkp_status vkp_data_transform_check(const vkp_data_transform *t, int in_channels, vkp_error *err) {
  if (!t) return vkp_error_set(err, VKP_ERR_INVALID, "transform: NULL");
  if (t->out_w <= 0 || t->out_h <= 0 || t->out_w > (1 << 16) || t->out_h > (1 << 16))
    return vkp_error_set(err, VKP_ERR_INVALID, "transform: output size %dx%d must be in 1..65536",
                         t->out_w, t->out_h);
  if (in_channels != 1 && in_channels != 3 && in_channels != 4)
    return vkp_error_set(err, VKP_ERR_INVALID, "transform: images have %d channels (want 1, 3, 4)",
                         in_channels);
  int oc = vkp_data_transform_channels(t, in_channels);
  bool ok = oc == in_channels || (in_channels == 1 && oc == 3) || (oc == 1) ||
            (in_channels == 4 && oc == 3);
  if (!ok || oc < 1 || oc > 4)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "transform: cannot map %d-channel images to %d channels", in_channels, oc);
  switch (t->crop) {
    case VKP_CROP_NONE: break;
    case VKP_CROP_CENTER:
      if (t->resize_short < 0)
        return vkp_error_set(err, VKP_ERR_INVALID, "transform: resize_short %d < 0",
                             t->resize_short);
      break;
    case VKP_CROP_RANDOM_RESIZED: {
      float s0 = t->scale_min, s1 = t->scale_max, r0 = t->ratio_min, r1 = t->ratio_max;
      if (s0 == 0 && s1 == 0) s0 = 0.08f, s1 = 1.0f;
      if (r0 == 0 && r1 == 0) r0 = 0.75f, r1 = 4.0f / 3.0f;
      if (!(s0 > 0 && s0 <= s1 && s1 <= 1.0f))
        return vkp_error_set(err, VKP_ERR_INVALID,
                             "transform: crop scale range [%g, %g] must satisfy 0 < min <= max <= 1",
                             s0, s1);
      if (!(r0 > 0 && r0 <= r1))
        return vkp_error_set(err, VKP_ERR_INVALID,
                             "transform: crop ratio range [%g, %g] must satisfy 0 < min <= max", r0,
                             r1);
      break;
    }
    case VKP_CROP_RANDOM_PAD:
      if (t->pad < 0 || t->pad > (1 << 16))
        return vkp_error_set(err, VKP_ERR_INVALID, "transform: pad %d outside 0..65536", t->pad);
      break;
    default: return vkp_error_set(err, VKP_ERR_INVALID, "transform: unknown crop mode %d", t->crop);
  }
  if (!(t->hflip >= 0 && t->hflip <= 1))
    return vkp_error_set(err, VKP_ERR_INVALID, "transform: flip probability %g outside [0, 1]",
                         t->hflip);
  for (int c = 0; c < oc; c++)
    if (!(t->std[c] >= 0) || !isfinite(t->mean[c]) || !isfinite(t->std[c]))
      return vkp_error_set(err, VKP_ERR_INVALID, "transform: bad mean/std for channel %d (%g, %g)",
                           c, t->mean[c], t->std[c]);
  return VKP_OK;
}

// One axis of the sampling plan.
typedef struct axis_plan {
  double origin, scale;  // s = origin + (o + 0.5) * scale - 0.5
  double lo, hi;         // clamp range of s (pixel indices)
  int size;              // source size (for the inside test)
} axis_plan;

typedef struct tap {
  int i0, i1;
  float w1;    // weight of i1 (i0 gets 1 - w1)
  int inside;  // 0: padding -> fill
} tap;

static void plan_taps(const axis_plan *a, int n, int flip, tap *out) {
  for (int o = 0; o < n; o++) {
    int oo = flip ? n - 1 - o : o;
    double s = a->origin + (oo + 0.5) * a->scale - 0.5;
    double u = s + 0.5;  // continuous coordinate: the image covers [0, size)
    tap t = {0, 0, 0.0f, u >= 0.0 && u < (double)a->size};
    if (t.inside) {
      if (s < a->lo) s = a->lo;
      if (s > a->hi) s = a->hi;
      double f = floor(s);
      t.i0 = (int)f;
      t.i1 = t.i0 + 1 <= (int)a->hi ? t.i0 + 1 : t.i0;
      t.w1 = (float)(s - f);
    }
    out[o] = t;
  }
}

// Python's round(): half to even, as torchvision's int(round(x)).
static int round_even(double x) { return (int)nearbyint(x); }

// Chooses the source window. Returns the two axis plans and whether to flip.
static void choose_window(const vkp_data_transform *t, int W, int H, vkp_rng *r,
                          axis_plan *ax, axis_plan *ay) {
  int ow = t->out_w, oh = t->out_h;
  *ax = (axis_plan){0.0, (double)W / ow, 0.0, W - 1.0, W};
  *ay = (axis_plan){0.0, (double)H / oh, 0.0, H - 1.0, H};
  switch (t->crop) {
    case VKP_CROP_NONE: break;
    case VKP_CROP_CENTER: {
      int rw = W, rh = H;  // size after the resize step
      if (t->resize_short > 0) {
        // torchvision Resize(int): the shorter side becomes resize_short, the longer is truncated.
        if (W <= H) {
          rw = t->resize_short;
          rh = (int)((double)t->resize_short * H / W);
        } else {
          rh = t->resize_short;
          rw = (int)((double)t->resize_short * W / H);
        }
        if (rw < 1) rw = 1;
        if (rh < 1) rh = 1;
      }
      int left = ow > rw ? -((ow - rw) / 2) : round_even((rw - ow) / 2.0);
      int top = oh > rh ? -((oh - rh) / 2) : round_even((rh - oh) / 2.0);
      double fx = (double)W / rw, fy = (double)H / rh;
      ax->scale = fx;
      ax->origin = left * fx;
      ay->scale = fy;
      ay->origin = top * fy;
      break;
    }
    case VKP_CROP_RANDOM_RESIZED: {
      double s0 = t->scale_min, s1 = t->scale_max, r0 = t->ratio_min, r1 = t->ratio_max;
      if (s0 == 0 && s1 == 0) s0 = 0.08, s1 = 1.0;
      if (r0 == 0 && r1 == 0) r0 = 3.0 / 4.0, r1 = 4.0 / 3.0;
      double area = (double)W * H, lr0 = log(r0), lr1 = log(r1);
      int cw = 0, ch = 0, cx = 0, cy = 0, found = 0;
      for (int attempt = 0; attempt < 10 && !found; attempt++) {
        double target = area * (s0 + (s1 - s0) * vkp_rng_uniform(r));
        double aspect = exp(lr0 + (lr1 - lr0) * vkp_rng_uniform(r));
        int w = round_even(sqrt(target * aspect)), h = round_even(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
          cy = (int)vkp_rng_int(r, 0, H - h + 1);
          cx = (int)vkp_rng_int(r, 0, W - w + 1);
          cw = w;
          ch = h;
          found = 1;
        }
      }
      if (!found) {  // torchvision's fallback: a central crop with the ratio clamped
        double in_ratio = (double)W / H;
        if (in_ratio < r0) {
          cw = W;
          ch = round_even(cw / r0);
        } else if (in_ratio > r1) {
          ch = H;
          cw = round_even(ch * r1);
        } else {
          cw = W;
          ch = H;
        }
        if (cw < 1) cw = 1;
        if (ch < 1) ch = 1;
        if (cw > W) cw = W;
        if (ch > H) ch = H;
        cx = (W - cw) / 2;
        cy = (H - ch) / 2;
      }
      *ax = (axis_plan){cx, (double)cw / ow, cx, cx + cw - 1.0, W};
      *ay = (axis_plan){cy, (double)ch / oh, cy, cy + ch - 1.0, H};
      break;
    }
    case VKP_CROP_RANDOM_PAD: {
      int p = t->pad;
      int x = W + 2 * p >= ow ? (int)vkp_rng_int(r, 0, W + 2 * p - ow + 1) - p
                              : -((ow - W) / 2);
      int y = H + 2 * p >= oh ? (int)vkp_rng_int(r, 0, H + 2 * p - oh + 1) - p
                              : -((oh - H) / 2);
      ax->origin = x;
      ax->scale = 1.0;
      ay->origin = y;
      ay->scale = 1.0;
      break;
    }
  }
}

vkp_status vkp_data_transform_apply(const vkp_data_transform *t, const uint8_t *img, int w, int h,
                                    int c, uint64_t key, float *dst, vkp_error *err) {
  VKP_TRY(vkp_data_transform_check(t, c, err));
  if (!img || !dst || w <= 0 || h <= 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "transform: bad image %dx%d or NULL buffer", w, h);
  vkp_rng r = vkp_rng_new(key);
  axis_plan ax, ay;
  choose_window(t, w, h, &r, &ax, &ay);
  int flip = t->hflip > 0 && vkp_rng_uniform(&r) < t->hflip;
  int ow = t->out_w, oh = t->out_h, oc = vkp_data_transform_channels(t, c);
  // Per-axis taps, planned for CHUNK output rows/columns at a time so the stack stays small.
  enum { CHUNK = 1024 };
  tap ty[CHUNK], tx[CHUNK];
  float scale[4], bias[4];
  for (int k = 0; k < oc; k++) {
    float sd = t->std[k] > 0 ? t->std[k] : 1.0f;
    scale[k] = 1.0f / (255.0f * sd);
    bias[k] = -t->mean[k] / sd;
  }
  size_t plane = (size_t)ow * (size_t)oh;
  const float fill = t->fill;
  for (int y0 = 0; y0 < oh; y0 += CHUNK) {
    int ny = oh - y0 < CHUNK ? oh - y0 : CHUNK;
    axis_plan ayc = ay;
    ayc.origin = ay.origin + y0 * ay.scale;
    plan_taps(&ayc, ny, 0, ty);
    for (int x0 = 0; x0 < ow; x0 += CHUNK) {
      int nx = ow - x0 < CHUNK ? ow - x0 : CHUNK;
      axis_plan axc = ax;
      // With a flip, output column o samples column ow-1-o of the unflipped output.
      if (flip) axc.origin = ax.origin + (ow - x0 - nx) * ax.scale;
      else axc.origin = ax.origin + x0 * ax.scale;
      plan_taps(&axc, nx, flip, tx);
      for (int j = 0; j < ny; j++) {
        const tap *yt = &ty[j];
        const uint8_t *r0 = img + (size_t)yt->i0 * w * c, *r1 = img + (size_t)yt->i1 * w * c;
        float wy = yt->w1;
        float *o = dst + (size_t)(y0 + j) * ow + x0;
        for (int i = 0; i < nx; i++) {
          const tap *xt = &tx[i];
          float s[4];
          if (yt->inside && xt->inside) {
            const uint8_t *p00 = r0 + (size_t)xt->i0 * c, *p01 = r0 + (size_t)xt->i1 * c;
            const uint8_t *p10 = r1 + (size_t)xt->i0 * c, *p11 = r1 + (size_t)xt->i1 * c;
            float wx = xt->w1;
            for (int k = 0; k < c; k++) {
              float top = p00[k] + wx * (p01[k] - p00[k]);
              float bot = p10[k] + wx * (p11[k] - p10[k]);
              s[k] = top + wy * (bot - top);
            }
          } else {
            for (int k = 0; k < c; k++) s[k] = fill;
          }
          float v[4];
          if (oc == c) {
            for (int k = 0; k < c; k++) v[k] = s[k];
          } else if (oc == 1) {
            v[0] = 0.299f * s[0] + 0.587f * s[1] + 0.114f * s[2];
          } else if (c == 1) {
            v[0] = v[1] = v[2] = s[0];
          } else {  // 4 -> 3
            v[0] = s[0], v[1] = s[1], v[2] = s[2];
          }
          for (int k = 0; k < oc; k++) o[(size_t)k * plane + i] = v[k] * scale[k] + bias[k];
        }
      }
    }
  }
  return VKP_OK;
}

// Fills sample k of a batch: image idx[k] with key keys[k], or vkp_data_sample_key(seed, epoch,
// idx[k]) when keys is NULL.
static vkp_status batch_fill(const vkp_dataset *ds, const vkp_data_transform *t, const size_t *idx,
                             const uint64_t *keys, size_t n, uint64_t seed, int64_t epoch,
                             float *pixels, int32_t *labels, vkp_error *err) {
  if (!ds || !t || (n && !idx))
    return vkp_error_set(err, VKP_ERR_INVALID, "batch: NULL dataset, transform or indices");
  VKP_TRY(vkp_data_transform_check(t, ds->channels, err));
  size_t per = (size_t)vkp_data_transform_channels(t, ds->channels) * t->out_w * t->out_h;
  for (size_t k = 0; k < n; k++) {
    size_t i = idx[k];
    if (i >= ds->count)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: batch index %zu out of range (%zu images)",
                           ds->name, i, ds->count);
    if (labels) labels[k] = ds->labels[i];
    uint64_t key = keys ? keys[k] : vkp_data_sample_key(seed, epoch, i);
    if (pixels)
      VKP_TRY(vkp_data_transform_apply(t, vkp_dataset_image(ds, i), ds->widths[i], ds->heights[i],
                                       ds->channels, key, pixels + k * per, err));
  }
  return VKP_OK;
}

vkp_status vkp_data_batch_fill(const vkp_dataset *ds, const vkp_data_transform *t,
                               const size_t *idx, size_t n, uint64_t seed, int64_t epoch,
                               float *pixels, int32_t *labels, vkp_error *err) {
  return batch_fill(ds, t, idx, NULL, n, seed, epoch, pixels, labels, err);
}

vkp_status vkp_data_batch_fill_keys(const vkp_dataset *ds, const vkp_data_transform *t,
                                    const size_t *idx, const uint64_t *keys, size_t n,
                                    float *pixels, int32_t *labels, vkp_error *err) {
  return batch_fill(ds, t, idx, keys, n, 0, 0, pixels, labels, err);
}
