// Push constants and device tables of the optimizer family: grad_norm_partial.comp,
// grad_norm.comp, adamw.comp, sgd.comp (see core/optim.c).
//
// The optimizer works on all its parameters in one dispatch per stage ("multi-tensor apply"):
// a table of per-parameter entries (addresses of value, gradient and state buffers) and a list of
// chunks; workgroup c handles elements [start, start + chunk_elems) of parameter chunks[c].x.
// Hyper-parameters live in a small device buffer (vkp_optim_hparams) read at run time, so a
// recorded graph picks up vkp_optimizer_set_config / vkp_optimizer_load without re-recording.
#include "vkp_push.h"

#ifdef VKP_GLSL
struct OptParam {
  uint64_t p;    // value (f32)
  uint64_t g;    // accumulated gradient (f32), zeroed by the update
  uint64_t s1;   // AdamW: exp_avg (m); SGD: momentum buffer. 8-bit: m's codes, 4 per uint
  uint64_t s2;   // AdamW: exp_avg_sq (v); SGD: unused. 8-bit: v's codes
  uint64_t a1;   // 8-bit only: absmax of m per block of VKP_OPTIM_QBLOCK elements (f32)
  uint64_t a2;   // 8-bit only: absmax of v per block
  uint n;        // elements
  uint flags;    // VKP_OPTIM_FLAG_*
  uint pad0, pad1;
};
layout(buffer_reference, std430, buffer_reference_align = 8) buffer OptParams { OptParam v[]; };
layout(buffer_reference, std430, buffer_reference_align = 8) buffer OptChunks { uvec2 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer OptHparams {
  float beta1;          // AdamW
  float beta2;
  float one_minus_beta1;   // computed in double on the host, as torch does
  float one_minus_beta2;
  float log_beta1;      // for the bias corrections 1 - beta^t = -expm1(t log beta)
  float log_beta2;
  float eps;
  float weight_decay;   // AdamW: decoupled; SGD: added to the gradient (L2)
  float momentum;       // SGD
  float dampening;
  uint nesterov;
  float max_grad_norm;  // > 0: clip the global gradient norm to this
  float pad[4];
};
#else
typedef struct vkp_optim_entry {
  uint64_t p, g, s1, s2, a1, a2;
  uint32_t n, flags, pad0, pad1;
} vkp_optim_entry;
_Static_assert(sizeof(vkp_optim_entry) == 64, "vkp_optim_entry must match GLSL std430 OptParam");

typedef struct vkp_optim_hparams {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, log_beta1, log_beta2, eps, weight_decay;
  float momentum, dampening;
  uint32_t nesterov;
  float max_grad_norm;
  float pad[4];
} vkp_optim_hparams;
_Static_assert(sizeof(vkp_optim_hparams) == 64, "vkp_optim_hparams must match GLSL OptHparams");
#endif

#define VKP_OPTIM_GROUP 256          // invocations per workgroup (all optimizer shaders)
#define VKP_OPTIM_CHUNK 2048         // elements per chunk (8 per invocation)
// Block-wise 8-bit AdamW state (bitsandbytes' Adam8bit): m and v stored as 8-bit codes into the
// dynamic quantisation maps (signed for m, unsigned for v) scaled by each block's absmax.
#define VKP_OPTIM_QBLOCK 256         // elements per quantisation block (a chunk holds 8)
#define VKP_OPTIM_FLAG_8BIT 1u

VKP_PUSH(vkp_pc_optim) {
  VKP_PTR(OptParams) params;     // per-parameter entries
  VKP_PTR(OptChunks) chunks;     // per chunk: (parameter index, first element)
  VKP_PTR(OptHparams) hparams;
  VKP_PTR(StepScalars) scalars;  // lr, step, apply_update
  VKP_PTR(F32Buf) partial;       // per-chunk sums of squared gradients
  VKP_PTR(F32Buf) norm;          // [1]: global L2 norm of the gradients (before clipping)
  uint32_t n_chunks;
  uint32_t chunk_elems;
  VKP_PTR(F32Buf) qmap;          // 8-bit state: 256 signed then 256 unsigned code values (0: none)
} VKP_PUSH_END(vkp_pc_optim);
VKP_PUSH_CHECK(vkp_pc_optim, 64)
