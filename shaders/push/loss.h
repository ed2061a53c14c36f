// Push constants of the loss family: cross_entropy.comp (per-row log-sum-exp and NLL),
// cross_entropy_mean.comp (mean over counted rows), cross_entropy_backward.comp, mse.comp
// (partial and final sums) and mse_backward.comp.
#include "vkp_push.h"

VKP_PUSH(vkp_pc_loss) {
  VKP_PTR(F32Buf) a;        // logits (N, C) / prediction
  VKP_PTR(I32Buf) labels;   // (N) class indices; outside [0, C) = ignored (incl. -100)
  VKP_PTR(F32Buf) b;        // MSE target
  VKP_PTR(F32Buf) aux;      // CE: [loss (N) | logsumexp (N) | count]; MSE: partial sums
  VKP_PTR(F32Buf) grad;     // backward: upstream gradient of the scalar loss ([1])
  VKP_PTR(F32Buf) dst;
  uint32_t rows;            // CE: N; MSE: number of partial sums
  uint32_t cols;            // CE: C
  uint32_t n;               // MSE: elements
  uint32_t chunk;           // MSE: elements per partial sum
  uint32_t mode;            // mse.comp: 0 partial sums of (a-b)^2, 1 sum of the partials;
                            // CE row kernels: 1 = one row per workgroup, 0 = per subgroup
  float alpha;              // result scale (1/n for MSE, +-2/n in its backward)
} VKP_PUSH_END(vkp_pc_loss);
VKP_PUSH_CHECK(vkp_pc_loss, 72)
