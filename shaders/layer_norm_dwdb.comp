#version 450
// layer_norm_dwdb.comp — weight and bias gradients of layer norm: column sums over rows.
// mode 0: workgroup (x: 64 columns, y: chunk p) sums rows [p*chunk, (p+1)*chunk) of dy * xhat
//         (xhat as in group_norm.comp) and dy per column into scratch[p][0][c] and
//         scratch[p][1][c]; lanes read adjacent columns (coalesced), no barriers;
// mode 1: dst[e] = sum_p scratch[p][e] for e in [0, 2*D): [dweight; dbias].
#include "common.glsl"
#include "push/norm.h"
layout(local_size_x = 64) in;

void main() {
  uint D = pc.channels;
  if (pc.mode == 0u) {
    uint c = gl_WorkGroupID.x * 64u + gl_LocalInvocationID.x;
    if (c >= D) return;
    uint p = gl_WorkGroupID.y;
    uint r0 = p * pc.chunk, r1 = min(pc.rows, r0 + pc.chunk);
    float aw = 0.0, ab = 0.0;
    for (uint r = r0; r < r1; r++) {
      float d = pc.dy.v[r * D + c];
      aw += d * ((pc.x.v[r * D + c] - pc.x.v[r * D]) - pc.stats.v[2u * r]) * pc.stats.v[2u * r + 1u];
      ab += d;
    }
    pc.scratch.v[(2u * p) * D + c] = aw;
    pc.scratch.v[(2u * p + 1u) * D + c] = ab;
  } else {
    uint e = vkp_global_index();
    if (e >= 2u * D) return;
    float s = 0.0;
    for (uint p = 0u; p < pc.chunks; p++) s += pc.scratch.v[p * 2u * D + e];
    pc.dst.v[e] = s;
  }
}
