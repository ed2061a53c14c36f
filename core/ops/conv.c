// conv.c — 2-D convolution (groups = 1, PyTorch semantics) as im2col + matmul.
//
//   cols = im2col(x)          (N, Cin*KH*KW, OH*OW)   im2col.comp
//   y    = W2 · cols + bias   W2 = w viewed (Cout, Cin*KH*KW), shared by the batch: (N, Cout, OH*OW);
//                             the bias per output channel (row) added by the product's kernels
// The output is NCHW without any transpose. A 1x1 convolution with stride 1 and no padding skips
// im2col: x viewed (N, Cin, H*W) is already the column matrix.
//
// The last step is a "conv2d" node that aliases the matmul's output (a view) and owns the
// backward of the whole convolution, so the gradients are formed directly rather than through the
// parts (the matmul and im2col nodes never receive a gradient):
//   dbias = Σ over n, oh, ow of dY                      conv_bias_grad.comp, one pass
//   dW    = Σ_n dY_n · cols_n^T                         one batched matmul + conv_batch_sum.comp
//   dx    = col2im(W2^T · dY)                           col2im.comp: a gather, no atomics
// (the generic path would sum the per-image dW with vkp_sum_to, whose one-workgroup-per-output
// reduction dominated the whole backward).
//
// Memory: cols holds Cin*KH*KW*OH*OW floats per image (a 3x3 conv at 64x64x320 needs 47 MB per
// image). It is freed after the forward matmul unless W is trainable (dW reads it); a tiled
// implicit-GEMM kernel would remove it and is the next step if memory becomes the limit.
#include <string.h>

#include "ops_internal.h"
#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/conv.h"

// params.i: 0 KH, 1 KW, 2 stride, 3 pad, 4 OH, 5 OW, 6 zero row (im2col and conv2d: the columns
// have one more row, of zeros: an odd K padded to even). The image geometry (C, H, W) comes from x
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

static uint32_t groups(int64_t n, int64_t per) { return (uint32_t)((n + per - 1) / per); }

// Grids are (pixels / local size, C, N): build checks keep each count within 65535.
static vkp_status im2col_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_conv pc = {0};
  fill_pc(t, t->src[0], &pc);
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.zero_row = (uint32_t)t->params.i[6];
  return vkp_rec_dispatch(rec, "im2col", &pc, sizeof pc, groups((int64_t)pc.OH * pc.OW, 64), (uint32_t)pc.C,
                          (uint32_t)t->shape[0]);
}

static vkp_status col2im_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_conv pc = {0};
  fill_pc(t, t, &pc);
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  return vkp_rec_dispatch(rec, "col2im", &pc, sizeof pc, groups((int64_t)pc.H * pc.W, 64), (uint32_t)pc.C,
                          (uint32_t)t->shape[0]);
}

static void im2col_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad);
static const vkp_op_def op_im2col = {.name = "im2col", .record = im2col_record, .backward = im2col_backward};
static const vkp_op_def op_col2im = {.name = "col2im", .record = col2im_record, .backward = NULL};

static void im2col_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *x = t->src[0];
  grad = vkp_contiguous(g, grad);
  vkp_tensor *dx = vkp_node_new(g, &op_col2im, VKP_DTYPE_F32, 4, x->shape, &grad, 1);
  if (dx) dx->params = t->params;
  vkp_grad_accumulate(g, x, dx);
}

// x (N, C, H, W) -> cols (N, C*KH*KW, OH*OW). Not in vkp_ops.h: used by vkp_conv2d and the tests.
vkp_tensor *vkp_im2col(vkp_graph *g, vkp_tensor *x, int kh, int kw, int stride, int padding);
static vkp_tensor *im2col_node(vkp_graph *g, vkp_tensor *x, int kh, int kw, int stride, int padding, bool zero_row);
vkp_tensor *vkp_im2col(vkp_graph *g, vkp_tensor *x, int kh, int kw, int stride, int padding) {
  return im2col_node(g, x, kh, kw, stride, padding, false);
}

static vkp_tensor *im2col_node(vkp_graph *g, vkp_tensor *x, int kh, int kw, int stride, int padding, bool zero_row) {
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
  const int64_t max_px = 65535ll * 64;   // pixels a grid row of 64-wide workgroups covers
  if (x->shape[0] > 65535 || x->shape[1] > 65535 || x->shape[2] * x->shape[3] > max_px || oh * ow > max_px) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "im2col: '%s' exceeds 65535 images, 65535 channels or 4M pixels", x->name);
    return NULL;
  }
  x = vkp_contiguous(g, vkp_cast_f32(g, x));
  if (!x) return NULL;
  int64_t shape[3] = {x->shape[0], x->shape[1] * kh * kw + zero_row, oh * ow};
  vkp_tensor *t = vkp_node_new(g, &op_im2col, VKP_DTYPE_F32, 3, shape, &x, 1);
  if (!t) return NULL;
  int32_t p[7] = {kh, kw, stride, padding, (int32_t)oh, (int32_t)ow, zero_row};
  memcpy(t->params.i, p, sizeof p);
  return t;
}

// ---- conv2d ---------------------------------------------------------------------------------
// node srcs: y_mm (N, Cout, L) (storage owner), x, w (as given: f32, f16 or bf16), cols (N, K, L),
// [bias]; params as im2col.

static vkp_status conv_record(vkp_recorder *rec, const vkp_tensor *t) {
  (void)rec, (void)t;
  return VKP_OK;   // the matmul wrote the result, bias included
}

// dbias (Cout) from dY (N, Cout, OH, OW).
static vkp_status bias_grad_record(vkp_recorder *rec, const vkp_tensor *t) {
  const vkp_tensor *dy = t->src[0];
  vkp_pc_conv pc = {0};
  pc.src = vkp_rec_addr(rec, dy);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(dy);
  pc.batch = (int32_t)dy->shape[0];
  pc.C = (int32_t)dy->shape[1];
  pc.OH = (int32_t)dy->shape[2];
  pc.OW = (int32_t)dy->shape[3];
  return vkp_rec_dispatch_1d(rec, "conv_bias_grad", &pc, sizeof pc, (uint64_t)pc.C, 1);
}
static const vkp_op_def op_conv_bias_grad = {.name = "conv2d_bias_grad", .record = bias_grad_record, .backward = NULL};

// (batch, M, K) -> (M, K)
static vkp_status batch_sum_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_conv pc = {0};
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.batch = (int32_t)t->src[0]->shape[0];
  return vkp_rec_dispatch_1d(rec, "conv_batch_sum", &pc, sizeof pc, pc.n, 256);
}
static const vkp_op_def op_conv_batch_sum = {
    .name = "conv2d_weight_grad_sum", .record = batch_sum_record, .backward = NULL};

static void conv_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *x = t->src[1], *w = t->src[2], *cols = t->src[3], *bias = t->nsrc > 4 ? t->src[4] : NULL;
  int64_t N = t->shape[0], Cout = t->shape[1], L = t->shape[2] * t->shape[3];
  int64_t K = cols->shape[1] - t->params.i[6];   // without the zero row
  vkp_tensor *cols_k = t->params.i[6] ? vkp_slice(g, cols, 1, 0, K) : cols;
  vkp_tensor *dy = vkp_contiguous(g, grad);
  if (bias && bias->requires_grad) {
    vkp_tensor *db = vkp_node_new(g, &op_conv_bias_grad, VKP_DTYPE_F32, 1, bias->shape, &dy, 1);
    vkp_grad_accumulate(g, bias, db);
  }
  vkp_tensor *dy3 = vkp_reshape(g, dy, 3, (int64_t[]){N, Cout, L});
  if (w->requires_grad) {
    vkp_tensor *dw;
    if (N == 1) {
      int64_t two[2] = {Cout, L}, ktwo[2] = {K, L};
      dw = vkp_matmul(g, vkp_reshape(g, dy3, 2, two), vkp_reshape(g, cols_k, 2, ktwo), false, true);
    } else {
      vkp_tensor *parts = vkp_matmul(g, dy3, cols_k, false, true);   // (N, Cout, K)
      dw = vkp_node_new(g, &op_conv_batch_sum, VKP_DTYPE_F32, 2, (int64_t[]){Cout, K}, &parts, 1);
    }
    vkp_grad_accumulate(g, w, vkp_reshape(g, dw, 4, w->shape));
  }
  if (x->requires_grad) {
    // The node keeps a 16-bit weight as it is (see vkp_conv2d): its f32 copy is made here, after
    // dY, and lives only for this product.
    vkp_tensor *w32 = w->dtype == VKP_DTYPE_F32 ? w : vkp_cast_f32(g, vkp_order_after(g, w, dy3));
    vkp_tensor *w2 = vkp_reshape(g, w32, 2, (int64_t[]){Cout, K});
    vkp_tensor *dcols = vkp_matmul(g, w2, dy3, true, false);   // (N, K, L)
    vkp_tensor *dx;
    if (cols->op == &op_im2col) {
      dx = vkp_node_new(g, &op_col2im, VKP_DTYPE_F32, 4, x->shape, &dcols, 1);
      if (dx) dx->params = cols->params;
    } else {
      dx = vkp_reshape(g, dcols, 4, x->shape);   // 1x1, stride 1: cols is x itself
    }
    vkp_grad_accumulate(g, x, dx);
  }
}
static const vkp_op_def op_conv2d = {.name = "conv2d", .record = conv_record, .backward = conv_backward};

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
  if (N > 65535 || Cout > 65535 || x->shape[2] * x->shape[3] > 65535ll * 64) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "conv2d: '%s' exceeds 65535 images, 65535 channels or 4M pixels", x->name);
    return NULL;
  }
  int kh = (int)w->shape[2], kw = (int)w->shape[3];
  x = vkp_contiguous(g, vkp_cast_f32(g, x));
  // 16-bit frozen weights: the matmul's a operand is f32. The node keeps the 16-bit tensor as its
  // source and each product casts its own copy, ordered after its other operand (x here, dY in
  // backward), so an f32 copy of the weight exists only around one product — not from the start
  // of the forward pass until backward, which would undo `base_dtype`'s saving.
  vkp_tensor *w_kept = w;
  w = w->dtype == VKP_DTYPE_F32 ? w : vkp_cast_f32(g, w->op ? w : vkp_order_after(g, w, x));
  bias = vkp_cast_f32(g, bias);
  if (!x || !w) return NULL;
  vkp_tensor *cols;
  int32_t p[7] = {kh, kw, stride, padding, 0, 0, 0};
  if (kh == 1 && kw == 1 && stride == 1 && padding == 0) {
    p[4] = (int32_t)x->shape[2];
    p[5] = (int32_t)x->shape[3];
    cols = vkp_reshape(g, x, 3, (int64_t[]){N, x->shape[1], x->shape[2] * x->shape[3]});
  } else {
    // An odd K gets a zero row in the columns and a zero column in the weight: the product's pair
    // loads then take it (the generic kernel otherwise: the demo's 7x7 one-channel patches, 3.3
    // ms per step on lavapipe).
    p[6] = K & 1;
    cols = im2col_node(g, x, kh, kw, stride, padding, p[6]);
    if (!cols) return NULL;
    p[4] = cols->params.i[4];
    p[5] = cols->params.i[5];
  }
  vkp_tensor *w2 = vkp_reshape(g, w, 2, (int64_t[]){Cout, K});
  if (p[6]) w2 = vkp_concat(g, w2, vkp_fill(g, VKP_DTYPE_F32, 2, (int64_t[]){Cout, 1}, 0.0f), 1);
  vkp_tensor *ymm = vkp_matmul_bias_rows(g, w2, cols, bias);
  vkp_tensor *srcs[5] = {ymm, x, w_kept, cols, bias};
  vkp_tensor *y = vkp_node_new(g, &op_conv2d, VKP_DTYPE_F32, 4, (int64_t[]){N, Cout, p[4], p[5]}, srcs, bias ? 5 : 4);
  if (!y) return NULL;
  memcpy(y->params.i, p, sizeof p);
  y->view_src = ymm->view_src ? ymm->view_src : ymm;   // the matmul's output
  return y;
}
