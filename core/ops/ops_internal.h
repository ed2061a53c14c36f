// ops_internal.h — helpers shared by the op files of core/ops (not installed, not public).
#ifndef VKP_OPS_INTERNAL_H
#define VKP_OPS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vkp_op.h"

// ---- row kernels (norms, softmax, cross-entropy) ---------------------------------------------
// A row takes one subgroup, or one workgroup when wide. Barriers are expensive on lavapipe: layer
// norm forward on (12608, 384) took 241 ms with a workgroup per row and 7 ms with a subgroup per
// row, and subgroup rows still won at 64K elements (21 vs 26 ms). GPUs want a workgroup once a row
// is long. On a CPU, rows from 64K elements go wide anyway to keep each invocation's loops short
// (Mesa 22's lavapipe stops loops after 65,535 iterations). Narrow rows are VKP_ROW_WG /
// subgroup-size per workgroup; the kernels loop over rows, so a wrong guess of the subgroup size
// costs speed, never results.
#define VKP_ROW_WG 128u

// Whether rows of `len` elements take a workgroup each (the kernel's "wide" flag).
bool vkp_rows_wide(vkp_recorder *rec, uint32_t len);
// Dispatches `shader` over `rows` rows: one per workgroup when wide, else VKP_ROW_WG / subgroup
// size per workgroup.
vkp_status vkp_rec_dispatch_rows(vkp_recorder *rec, const char *shader, const void *push, uint32_t push_bytes,
                                 uint32_t rows, bool wide);

// True for a view node (reshape, permute, slice, detach): it shares its source's storage and
// executes nothing (views.c).
bool vkp_tensor_is_view(const vkp_tensor *t);
// A view of x that the scheduler places after `dep` (activation checkpointing: a segment's
// recomputation starts only once the gradient reaching the segment is computed).
vkp_tensor *vkp_order_after(vkp_graph *g, vkp_tensor *x, vkp_tensor *dep);
// a·b + bias[m] (one bias value per row of the product, added by the product's own kernels:
// a convolution's per-channel bias on (Cout, L) outputs). The bias gets no gradient through this
// node: conv2d's node owns the backward (conv.c).
vkp_tensor *vkp_matmul_bias_rows(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, vkp_tensor *bias);

#endif
