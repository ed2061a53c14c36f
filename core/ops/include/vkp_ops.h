// vkp_ops.h — tensor operations (graph builders). Each returns a new tensor, or NULL after
// recording an error on the graph (see vkp_graph.h). All compute in f32 unless stated; f16/bf16
// tensors are accepted where noted (converted on load, accumulation in f32).
// Every differentiable op has a backward kernel wired into vkp_graph_backward.
#ifndef VKP_OPS_H
#define VKP_OPS_H

#include "vkp_graph.h"

// ---- views and copies (core/ops/views.c, core/ops/copy.c) -----------------------------------
// Views share storage with their source (no copy).
vkp_tensor *vkp_reshape(vkp_graph *g, vkp_tensor *t, int ndim, const int64_t *shape);  // -1 infers one dim
vkp_tensor *vkp_permute(vkp_graph *g, vkp_tensor *t, const int *perm);                 // out dim i = in dim perm[i]
vkp_tensor *vkp_transpose(vkp_graph *g, vkp_tensor *t, int d0, int d1);
vkp_tensor *vkp_slice(vkp_graph *g, vkp_tensor *t, int dim, int64_t start, int64_t len);
// Same values, no gradient flows back through it (torch's .detach()).
vkp_tensor *vkp_detach(vkp_graph *g, vkp_tensor *t);
// Copies.
vkp_tensor *vkp_contiguous(vkp_graph *g, vkp_tensor *t);   // returns t itself when already contiguous
vkp_tensor *vkp_concat(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, int dim);

// Gradient of a slice: grad placed at [start, start+len) of dim in zeros shaped like `full`.
vkp_tensor *vkp_pad_slice_grad(vkp_graph *g, vkp_tensor *grad, const vkp_tensor *full, int dim, int64_t start);

// ---- autograd (core/ops/autograd.c) ---------------------------------------------------------
// Appends gradient nodes of `loss` (a scalar) for each of params[0..n) (marked trainable) and
// returns them in grads[i] (NULL when loss does not depend on params[i]). Nothing is created for
// tensors that are not on a path from a trainable tensor to the loss. The seed gradient is
// vkp_step_scalars.loss_scale.
vkp_status vkp_graph_backward(vkp_graph *g, vkp_tensor *loss, vkp_tensor *const *params, int n, vkp_tensor **grads);

// For op implementations: adds `g` to t->grad (creating it, or an add node). Ignored when t
// does not require grad.
void vkp_grad_accumulate(vkp_graph *gr, vkp_tensor *t, vkp_tensor *g);

// ---- elementwise (core/ops/elementwise.c) ---------------------------------------------------
// Broadcasting follows numpy: shapes right-aligned, dims of size 1 stretch.
vkp_tensor *vkp_add(vkp_graph *g, vkp_tensor *a, vkp_tensor *b);
vkp_tensor *vkp_sub(vkp_graph *g, vkp_tensor *a, vkp_tensor *b);
vkp_tensor *vkp_mul(vkp_graph *g, vkp_tensor *a, vkp_tensor *b);
vkp_tensor *vkp_div(vkp_graph *g, vkp_tensor *a, vkp_tensor *b);
vkp_tensor *vkp_scale(vkp_graph *g, vkp_tensor *a, float alpha);             // alpha * a
vkp_tensor *vkp_affine(vkp_graph *g, vkp_tensor *a, float alpha, float beta); // alpha * a + beta
vkp_tensor *vkp_gelu(vkp_graph *g, vkp_tensor *a);        // erf form (HF "gelu")
vkp_tensor *vkp_gelu_tanh(vkp_graph *g, vkp_tensor *a);   // tanh approximation ("gelu_new")
vkp_tensor *vkp_silu(vkp_graph *g, vkp_tensor *a);
vkp_tensor *vkp_relu(vkp_graph *g, vkp_tensor *a);
vkp_tensor *vkp_sigmoid(vkp_graph *g, vkp_tensor *a);
vkp_tensor *vkp_tanh(vkp_graph *g, vkp_tensor *a);
vkp_tensor *vkp_exp(vkp_graph *g, vkp_tensor *a);
vkp_tensor *vkp_log(vkp_graph *g, vkp_tensor *a);
vkp_tensor *vkp_sqr(vkp_graph *g, vkp_tensor *a);
vkp_tensor *vkp_sqrt(vkp_graph *g, vkp_tensor *a);
// Constant tensor (not differentiable).
vkp_tensor *vkp_fill(vkp_graph *g, vkp_dtype dtype, int ndim, const int64_t *shape, float value);
// Seed gradient of a scalar loss: a tensor like `loss` holding vkp_step_scalars.loss_scale.
vkp_tensor *vkp_loss_seed(vkp_graph *g, vkp_tensor *loss);
// In place: dst (an external tensor) += src. Returns a node to expand (vkp_graph_expand).
vkp_tensor *vkp_accumulate(vkp_graph *g, vkp_tensor *dst, vkp_tensor *src);
// In place: dst (external) = src (copy with dtype conversion is not done: same dtype).
vkp_tensor *vkp_assign(vkp_graph *g, vkp_tensor *dst, vkp_tensor *src);

// ---- reductions (core/ops/reduce.c) ---------------------------------------------------------
// Sums `a` down to `shape` (the inverse of broadcasting: dims of size 1 in shape are summed).
vkp_tensor *vkp_sum_to(vkp_graph *g, vkp_tensor *a, int ndim, const int64_t *shape);
vkp_tensor *vkp_sum(vkp_graph *g, vkp_tensor *a);                  // all elements -> [1]
vkp_tensor *vkp_mean(vkp_graph *g, vkp_tensor *a);                 // all elements -> [1]
vkp_tensor *vkp_sum_axis(vkp_graph *g, vkp_tensor *a, int axis);   // keepdim
vkp_tensor *vkp_mean_axis(vkp_graph *g, vkp_tensor *a, int axis);  // keepdim

// ---- matmul (core/ops/matmul.c) -------------------------------------------------------------
// Batched matmul: a (..., M, K) or (..., K, M) if trans_a; b (..., K, N) or (..., N, K) if
// trans_b; batch dims broadcast (a 2-D b is shared by every batch: x @ W^T with trans_b for
// nn.Linear weights (out, in)). b may be f16/bf16 (frozen weights). Result (..., M, N) f32.
vkp_tensor *vkp_matmul(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, bool trans_a, bool trans_b);
// nn.Linear: x (..., in) @ w (out, in)^T + bias (out) (bias may be NULL).
vkp_tensor *vkp_linear(vkp_graph *g, vkp_tensor *x, vkp_tensor *w, vkp_tensor *bias);
// y + scale · (xd @ A^T) @ B^T for y = vkp_linear(x, w, bias): LoRA on a linear layer. A (r, in),
// B (out, r), xd shaped like x (x itself, or x after dropout). When y is such a linear node, the
// result is one node whose low-rank term accumulates into the base product's output (no separate
// scale or add) and whose backward forms dx = dy·W + scale·(dy·B)·A as one node; otherwise it is
// y + scale · linear(linear(xd, A), B) built from plain ops.
vkp_tensor *vkp_linear_add_lora(vkp_graph *g, vkp_tensor *y, vkp_tensor *xd, vkp_tensor *A, vkp_tensor *B, float scale);

// ---- normalisation and softmax (core/ops/norm.c, core/ops/softmax.c) ------------------------
vkp_tensor *vkp_layer_norm(vkp_graph *g, vkp_tensor *x, vkp_tensor *weight, vkp_tensor *bias, float eps);  // over last dim; weight/bias may be NULL
// x (N, C, H, W) or (N, C, L); weight/bias (C) may be NULL.
vkp_tensor *vkp_group_norm(vkp_graph *g, vkp_tensor *x, int groups, vkp_tensor *weight, vkp_tensor *bias, float eps);
// silu(vkp_group_norm(...)) as one op: one forward dispatch, SiLU's derivative folded into the
// group norm backward kernels (the pre-SiLU tensor is recomputed, never stored).
vkp_tensor *vkp_group_norm_silu(vkp_graph *g, vkp_tensor *x, int groups, vkp_tensor *weight, vkp_tensor *bias,
                                float eps);
vkp_tensor *vkp_softmax(vkp_graph *g, vkp_tensor *x);      // last axis
vkp_tensor *vkp_log_softmax(vkp_graph *g, vkp_tensor *x);  // last axis

// ---- losses (core/ops/loss.c) ---------------------------------------------------------------
// logits (N, C), labels (N) int32; mean over rows whose label is not ignore_index (-100); -> [1].
// Any other label outside [0, C) is ignored the same way; no counted row gives loss 0, gradient 0.
vkp_tensor *vkp_cross_entropy(vkp_graph *g, vkp_tensor *logits, vkp_tensor *labels);
vkp_tensor *vkp_mse(vkp_graph *g, vkp_tensor *pred, vkp_tensor *target);   // mean -> [1]

// ---- convolution and resampling (core/ops/conv.c) -------------------------------------------
// x (N, Cin, H, W), w (Cout, Cin, KH, KW), bias (Cout) or NULL; groups = 1.
vkp_tensor *vkp_conv2d(vkp_graph *g, vkp_tensor *x, vkp_tensor *w, vkp_tensor *bias, int stride, int padding);
vkp_tensor *vkp_upsample_nearest2x(vkp_graph *g, vkp_tensor *x);   // (N, C, H, W) -> (N, C, 2H, 2W)

// ---- embedding, attention, dropout, timesteps (core/ops/*.c) --------------------------------
// table (V, D), ids int32 (any shape S) -> (S..., D). Out-of-range ids produce zeros.
vkp_tensor *vkp_embedding(vkp_graph *g, vkp_tensor *table, vkp_tensor *ids);
// Scaled dot-product attention: q (B, H, Tq, D), k, v (B, H, Tk, D) -> (B, H, Tq, D).
// mask: NULL, or additive (B, 1, 1, Tk) / (B, 1, Tq, Tk) f32 (0 keep, -inf drop). scale 0 = 1/sqrt(D).
vkp_tensor *vkp_attention(vkp_graph *g, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v, vkp_tensor *mask,
                          bool causal, float scale);
// Inverted dropout with probability p from a device RNG keyed by (step seed, salt, index).
vkp_tensor *vkp_dropout(vkp_graph *g, vkp_tensor *x, float p, uint32_t salt);
// Sinusoidal timestep embedding as diffusers `get_timestep_embedding` (flip_sin_to_cos,
// downscale_freq_shift): t (N) f32 -> (N, dim).
vkp_tensor *vkp_timestep_embedding(vkp_graph *g, vkp_tensor *t, int dim, bool flip_sin_to_cos,
                                   float downscale_freq_shift, float max_period);
// base + scatter of `values` at the unique flat element indices `index` (I32), for masked
// (sparse) tuning; gradients flow to values (gather) and base.
vkp_tensor *vkp_sparse_add(vkp_graph *g, vkp_tensor *base, vkp_tensor *values, vkp_tensor *index);
// Converts to f32 (from f16/bf16/f32).
vkp_tensor *vkp_cast_f32(vkp_graph *g, vkp_tensor *x);

// ---- small dense linear algebra (core/ops/linalg.c) -----------------------------------------
// Inverse of each (n, n) matrix of a (..., n, n) tensor, 1 <= n <= 64 (Gauss-Jordan with partial
// pivoting); differentiable (dA = -A^-T dY A^-T).
vkp_tensor *vkp_inverse(vkp_graph *g, vkp_tensor *a);

#endif
