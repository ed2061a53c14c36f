// vkp_nn.h — the layer calls models are written against. Each takes the module registered under
// its checkpoint name (vkp_model_add_module) and applies the PEFT adapters attached to it:
// weight-level methods inside vkp_nn_linear / vkp_nn_conv2d, block-level adapters in
// vkp_nn_block_adapter, prompts in vkp_nn_prompts and prefixes in vkp_nn_attention.
// Graph-building semantics as in vkp_ops.h: NULL in, NULL out, the first error kept on the graph.
#ifndef VKP_NN_H
#define VKP_NN_H

#include "vkp_model.h"
#include "vkp_ops.h"

// x (..., in) -> (..., out)
vkp_tensor *vkp_nn_linear(vkp_model *m, vkp_module *mod, vkp_tensor *x);
// x (N, Cin, H, W) -> (N, Cout, H', W')
vkp_tensor *vkp_nn_conv2d(vkp_model *m, vkp_module *mod, vkp_tensor *x, int stride, int padding);
vkp_tensor *vkp_nn_layer_norm(vkp_model *m, vkp_module *mod, vkp_tensor *x, float eps);
vkp_tensor *vkp_nn_group_norm(vkp_model *m, vkp_module *mod, vkp_tensor *x, int groups, float eps);
vkp_tensor *vkp_nn_embedding(vkp_model *m, vkp_module *mod, vkp_tensor *ids);
// Multi-head attention core on (B, H, T, D) tensors; prefix tuning adds learned keys/values
// (registered on the ATTENTION module `attn`, which may be NULL for no prefix).
vkp_tensor *vkp_nn_attention(vkp_model *m, vkp_module *attn, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v,
                             vkp_tensor *mask, bool causal);

// Block-level adapters. site VKP_NN_AFTER_ATTN: `h` is the attention sub-layer output (before the
// residual add); VKP_NN_AFTER_MLP: `h` is the MLP output and `mlp_in` its input (AdaptFormer's
// parallel branch reads it). Returns h with the adapters' contributions.
enum { VKP_NN_AFTER_ATTN = 1, VKP_NN_AFTER_MLP = 2 };
vkp_tensor *vkp_nn_block_adapter(vkp_model *m, vkp_module *block, int site, vkp_tensor *h, vkp_tensor *mlp_in);
// Visual prompt tuning at the input of `block`: x (B, T, C) with `n_special` leading tokens (CLS)
// kept in front. The first prompted block inserts its prompts after them; later blocks (VPT-deep)
// replace the previous layer's prompt tokens with their own.
vkp_tensor *vkp_nn_prompts(vkp_model *m, vkp_module *block, vkp_tensor *x, int n_special);

#endif
