// conv.c — 2-D convolution (groups = 1, PyTorch semantics) as im2col + matmul.
//
//   cols = im2col(x)          (N, Cin*KH*KW, OH*OW)   im2col.comp
//   y    = W2 · cols          W2 = w viewed (Cout, Cin*KH*KW), shared by the batch: (N, Cout, OH*OW)
//   y   += bias               broadcast over (N, ., OH, OW)
// The output is NCHW without any transpose. Backward comes from the parts: the matmul gives
// dW = Σ_n dY_n · cols_n^T and dcols = W2^T · dY, im2col's backward is col2im (col2im.comp, a
// gather: each input pixel sums the columns that read it, no atomics), the bias add gives
// dbias = Σ over N, OH, OW. A 1x1 convolution with stride 1 and no padding skips im2col: x viewed
// (N, Cin, H*W) is already the column matrix.
//
// Memory: cols holds Cin*KH*KW*OH*OW floats per image (a 3x3 conv at 64x64x320 needs 47 MB per
// image). It is freed after the forward matmul unless W is trainable (dW reads it); a tiled
// implicit-GEMM kernel would remove it and is the next step if memory becomes the limit.
#include <string.h>

#include "../vkp_op.h"
#include "../vkp_ops.h"
#include "../../shaders/push/conv.h"

// params.i: 0 KH, 1 KW, 2 stride, 3 pad, 4 OH, 5 OW. The image geometry (C, H, W) comes from x
// (im2col node: src x) or from the node itself (col2im node: output dx).
static void fill_pc(const vkp_tensor *params, const vkp_tensor *image, vkp_pc_conv *pc) {
  pc->C = (int32_t)image->shape[1];
  pc->H = (int32_t)image->shape[2];
  pc->W = (int32_t)image->shape[3];
  pc->KH = params->params.i[0];
  pc->KW = params->params.i[1];
  pc->stride = params->params.i[2];
  pc->pad = params->params.i[3];
  pc->OH = params->params.i[4];
  pc->OW = params->params.i[5];
}

static vkp_status im2col_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_conv pc = {0};
  fill_pc(t, t->src[0], &pc);
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  return vkp_rec_dispatch_1d(rec, "im2col", &pc, sizeof pc, pc.n, 256);
}

static vkp_status col2im_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_conv pc = {0};
  fill_pc(t, t, &pc);
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  return vkp_rec_dispatch_1d(rec, "col2im", &pc, sizeof pc, pc.n, 256);
}

static void im2col_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad);
static const vkp_op_def op_im2col = {"im2col", im2col_record, im2col_backward};
static const vkp_op_def op_col2im = {"col2im", col2im_record, NULL};

static void im2col_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *x = t->src[0];
  grad = vkp_contiguous(g, grad);
  vkp_tensor *dx = vkp_node_new(g, &op_col2im, VKP_DTYPE_F32, 4, x->shape, &grad, 1);
  if (dx) dx->params = t->params;
  vkp_grad_accumulate(g, x, dx);
}

// x (N, C, H, W) -> cols (N, C*KH*KW, OH*OW). Not in vkp_ops.h: used by vkp_conv2d and the tests.
vkp_tensor *vkp_im2col(vkp_graph *g, vkp_tensor *x, int kh, int kw, int stride, int padding);
vkp_tensor *vkp_im2col(vkp_graph *g, vkp_tensor *x, int kh, int kw, int stride, int padding) {
  if (!x) return NULL;
  if (x->ndim != 4) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "im2col: '%s' must be (N, C, H, W), has %d dims", x->name, x->ndim);
    return NULL;
  }
  if (kh < 1 || kw < 1 || stride < 1 || padding < 0) {
    vkp_graph_fail(g, VKP_ERR_INVALID, "im2col of '%s': kernel %dx%d, stride %d, padding %d are invalid", x->name, kh,
                   kw, stride, padding);
    return NULL;
  }
  int64_t oh = (x->shape[2] + 2 * (int64_t)padding - kh) / stride + 1;
  int64_t ow = (x->shape[3] + 2 * (int64_t)padding - kw) / stride + 1;
  if (x->shape[2] + 2 * (int64_t)padding < kh || x->shape[3] + 2 * (int64_t)padding < kw) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "im2col: kernel %dx%d is larger than '%s' (%lldx%lld) with padding %d", kh, kw,
                   x->name, (long long)x->shape[2], (long long)x->shape[3], padding);
    return NULL;
  }
  x = vkp_contiguous(g, vkp_cast_f32(g, x));
  if (!x) return NULL;
  int64_t shape[3] = {x->shape[0], x->shape[1] * kh * kw, oh * ow};
  vkp_tensor *t = vkp_node_new(g, &op_im2col, VKP_DTYPE_F32, 3, shape, &x, 1);
  if (!t) return NULL;
  int32_t p[6] = {kh, kw, stride, padding, (int32_t)oh, (int32_t)ow};
  memcpy(t->params.i, p, sizeof p);
  return t;
}

vkp_tensor *vkp_conv2d(vkp_graph *g, vkp_tensor *x, vkp_tensor *w, vkp_tensor *bias, int stride, int padding) {
  if (!x || !w) return NULL;
  if (x->ndim != 4 || w->ndim != 4) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "conv2d: x '%s' (N, Cin, H, W) and w '%s' (Cout, Cin, KH, KW) must be 4-D",
                   x->name, w->name);
    return NULL;
  }
  if (w->shape[1] != x->shape[1]) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "conv2d: w '%s' expects %lld input channels, x '%s' has %lld", w->name,
                   (long long)w->shape[1], x->name, (long long)x->shape[1]);
    return NULL;
  }
  int64_t N = x->shape[0], Cout = w->shape[0], K = w->shape[1] * w->shape[2] * w->shape[3];
  if (bias && (bias->ndim != 1 || bias->shape[0] != Cout)) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "conv2d: bias '%s' must be (%lld)", bias->name, (long long)Cout);
    return NULL;
  }
  int kh = (int)w->shape[2], kw = (int)w->shape[3];
  vkp_tensor *w2 = vkp_reshape(g, w, 2, (int64_t[]){Cout, K});
  vkp_tensor *cols;
  int64_t oh, ow;
  if (kh == 1 && kw == 1 && stride == 1 && padding == 0) {
    oh = x->shape[2];
    ow = x->shape[3];
    cols = vkp_reshape(g, vkp_cast_f32(g, x), 3, (int64_t[]){N, x->shape[1], oh * ow});
  } else {
    cols = vkp_im2col(g, x, kh, kw, stride, padding);
    if (!cols) return NULL;
    oh = cols->params.i[4];
    ow = cols->params.i[5];
  }
  vkp_tensor *y = vkp_reshape(g, vkp_matmul(g, w2, cols, false, false), 4, (int64_t[]){N, Cout, oh, ow});
  if (bias) y = vkp_add(g, y, vkp_reshape(g, bias, 3, (int64_t[]){Cout, 1, 1}));
  return vkp_tensor_set_name(y, "conv2d");
}
