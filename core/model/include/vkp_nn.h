// vkp_nn.h — the layer calls models are written against. Each takes the module registered under
// its checkpoint name (vkp_model_add_module) and computes the plain layer; when the module carries
// adapters (mod->slots) the call hands over to the hooks the PEFT layer installed on the model
// (vkp_model.nn_hooks), so one model file serves every method:
//   weight level  vkp_nn_linear / vkp_nn_conv2d (LoRA, LoHa, LoKr, (IA)^3, VeRA, OFT, masked, ...)
//   block level   vkp_nn_block_adapter at the sites a block offers (bottleneck, AdaptFormer)
//   sequence      vkp_nn_prompts (visual prompts), vkp_nn_attention (prefix keys/values)
// core/model knows no PEFT method: it declares the hook interface below, core/peft implements it.
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
// silu(group_norm(x)) as one fused op (vkp_group_norm_silu); the module's weight and bias are the
// same parameters as vkp_nn_group_norm's, so methods that train norms (ln_tuning, full) see them.
vkp_tensor *vkp_nn_group_norm_silu(vkp_model *m, vkp_module *mod, vkp_tensor *x, int groups, float eps);
vkp_tensor *vkp_nn_embedding(vkp_model *m, vkp_module *mod, vkp_tensor *ids);
// Multi-head attention core on (B, H, T, D) tensors, self- or cross-attention (k, v from another
// sequence; register the module with mod->cross set). `attn` is the ATTENTION module prefix tuning
// attaches to (NULL: no adapters). mask: NULL or additive (B or 1, 1, 1 or Tq, Tk) as
// vkp_attention; causal: query i sees keys j <= i. Prefix keys/values are visible to every query
// (the mask and the causal rule apply to the model's own keys).
vkp_tensor *vkp_nn_attention(vkp_model *m, vkp_module *attn, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v,
                             vkp_tensor *mask, bool causal);

// Block-level adapter sites. A BLOCK module lists the sites its forward offers in mod->sites
// (0 means a transformer block: VKP_NN_AFTER_ATTN | VKP_NN_AFTER_MLP) and calls
// vkp_nn_block_adapter at each:
//   VKP_NN_AFTER_ATTN        h = the self-attention sub-layer output (before the residual add)
//   VKP_NN_AFTER_CROSS_ATTN  h = the cross-attention sub-layer output (diffusers attn2)
//   VKP_NN_AFTER_MLP         h = the MLP output, `in` = the MLP input (AdaptFormer's parallel branch)
//   VKP_NN_AFTER_BLOCK       h = a whole block's residual branch output, e.g. a ResNet block's
//                            (N, C, H, W) (adapters act on the channel dim)
// Returns h with the adapters' contributions.
enum { VKP_NN_AFTER_ATTN = 1, VKP_NN_AFTER_MLP = 2, VKP_NN_AFTER_CROSS_ATTN = 4, VKP_NN_AFTER_BLOCK = 8 };
#define VKP_NN_TRANSFORMER_SITES (VKP_NN_AFTER_ATTN | VKP_NN_AFTER_MLP)
vkp_tensor *vkp_nn_block_adapter(vkp_model *m, vkp_module *block, int site, vkp_tensor *h, vkp_tensor *in);
// The sites a block offers (mod->sites, or the transformer default).
unsigned vkp_nn_block_sites(const vkp_module *block);
// Visual prompt tuning at the input of `block`: x (B, T, C) with `n_special` leading tokens (CLS)
// kept in front. The first prompted block inserts its prompts after them; later blocks (VPT-deep)
// replace the previous layer's prompt tokens with their own.
vkp_tensor *vkp_nn_prompts(vkp_model *m, vkp_module *block, vkp_tensor *x, int n_special);

// ---- the hook interface (implemented by the PEFT layer) -----------------------------------------
// Each hook is called only for a module with adapters (mod->slots != NULL) and replaces the plain
// computation of its layer call; a hook may be NULL (the plain computation runs).
struct vkp_nn_hooks {
  // linear (stride 1, padding 0 ignored) or conv2d
  vkp_tensor *(*weight)(vkp_model *m, vkp_module *mod, vkp_tensor *x, int stride, int padding);
  vkp_tensor *(*attention)(vkp_model *m, vkp_module *attn, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v,
                           vkp_tensor *mask, bool causal);
  vkp_tensor *(*block)(vkp_model *m, vkp_module *block, int site, vkp_tensor *h, vkp_tensor *in);
  vkp_tensor *(*prompts)(vkp_model *m, vkp_module *block, vkp_tensor *x, int n_special);
};
// The plain computation of a linear / conv2d module with weight W and bias b (b may be NULL): what
// hooks call after changing the input or the weight.
vkp_tensor *vkp_nn_weight_base(vkp_model *m, vkp_module *mod, vkp_tensor *x, vkp_tensor *W, vkp_tensor *b, int stride,
                               int padding);

#endif
