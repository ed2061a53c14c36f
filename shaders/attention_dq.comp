#version 450
// attention_dq.comp — attention backward, dQ. One workgroup per (query block of R rows, head,
// batch). P is recomputed from q, k and the saved lse: P = exp(s - lse); with dP = dO V^T and
// delta = rowsum(dO * O): dS = P * (dP - delta), dQ = scale * dS K. Key/value blocks are staged
// in shared memory as in the forward. Shared memory: (2R + 2C) * DMAX * 4 + R*C*4 = 24.5 KiB.
#include "common.glsl"
#include "push/attention.h"
layout(local_size_x = 64) in;

#define DMAX 128
#define D4MAX (DMAX / 4)
#define R 8                // query rows per workgroup
#define C 16               // keys per block
#define LANES 8            // invocations per query row: 64 / R
#define NV (D4MAX / LANES)

shared vec4 sQ[R][D4MAX];
shared vec4 sdO[R][D4MAX];
shared vec4 sK[C][D4MAX];
shared vec4 sV[C][D4MAX];
shared float sdS[R][C];

vec4 load4(F32Buf buf, int base, int c4, int D) {
  int c = c4 * 4;
  if (c + 3 < D) return vec4(buf.v[base + c], buf.v[base + c + 1], buf.v[base + c + 2], buf.v[base + c + 3]);
  vec4 r = vec4(0.0);
  for (int e = 0; e < 4; e++)
    if (c + e < D) r[e] = buf.v[base + c + e];
  return r;
}

void main() {
  int tid = int(gl_LocalInvocationID.x);
  int q0 = int(gl_WorkGroupID.x) * R;
  int h = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
  int D = pc.D, D4 = (pc.D + 3) / 4, Tq = pc.Tq, Tk = pc.Tk;
  int qbase = b * pc.q_stride[0] + h * pc.q_stride[1];
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  int rows0 = (b * pc.H + h) * Tq;   // first row of this (b, h) in O, dO, lse, delta, dQ

  [[dont_unroll]] for (int e = tid; e < R * D4; e += 64) {
    int rr = e / D4, c4 = e % D4, qi = q0 + rr;
    bool ok = qi < Tq;
    sQ[rr][c4] = ok ? load4(pc.q, qbase + qi * pc.q_stride[2], c4, D) * pc.scale : vec4(0.0);
    sdO[rr][c4] = ok ? load4(pc.dout, (rows0 + qi) * D, c4, D) : vec4(0.0);
  }

  int r = tid / LANES, sub = tid % LANES, i = q0 + r;
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  int mrow = ((pc.flags & VKP_ATTN_MASK_BCAST) != 0u ? 0 : b) * ((pc.flags & VKP_ATTN_MASK_ROWS) != 0u ? Tq * Tk : Tk) +
             ((pc.flags & VKP_ATTN_MASK_ROWS) != 0u ? i * Tk : 0);
  float lse = i < Tq ? pc.lse.v[rows0 + i] : 0.0;
  float delta = i < Tq ? pc.delta.v[rows0 + i] : 0.0;
  int kend = causal ? min(Tk, q0 + R) : Tk;

  vec4 acc[NV];
  [[unroll]] for (int v = 0; v < NV; v++) acc[v] = vec4(0.0);

  [[dont_unroll]] for (int kb = 0; kb < kend; kb += C) {
    barrier();
    [[dont_unroll]] for (int e = tid; e < C * D4; e += 64) {
      int j = e / D4, c4 = e % D4, key = kb + j;
      bool ok = key < Tk;
      sK[j][c4] = ok ? load4(pc.k, kbase + key * pc.k_stride[2], c4, D) : vec4(0.0);
      sV[j][c4] = ok ? load4(pc.v, vbase + key * pc.v_stride[2], c4, D) : vec4(0.0);
    }
    barrier();
    [[dont_unroll]] for (int jj = 0; jj < C / LANES; jj++) {
      int j = sub + jj * LANES, key = kb + j;
      float ds = 0.0;
      if (key < Tk && i < Tq && !(causal && key > i)) {
        float s = 0.0, dp = 0.0;
        [[dont_unroll]] for (int c4 = 0; c4 < D4; c4++) {
          s += dot(sQ[r][c4], sK[j][c4]);
          dp += dot(sdO[r][c4], sV[j][c4]);
        }
        if (has_mask) s += pc.mask.v[mrow + key];
        ds = exp(s - lse) * (dp - delta);
      }
      sdS[r][j] = ds;
    }
    barrier();
    [[dont_unroll]] for (int j = 0; j < C; j++) {
      float ds = sdS[r][j];
      [[unroll]] for (int v = 0; v < NV; v++) {
        int c4 = sub + v * LANES;
        if (c4 < D4) acc[v] += ds * sK[j][c4];
      }
    }
  }

  if (i >= Tq) return;
  [[unroll]] for (int v = 0; v < NV; v++) {
    int c4 = sub + v * LANES;
    if (c4 >= D4) continue;
    vec4 g = acc[v] * pc.scale;
    for (int e = 0; e < 4; e++)
      if (c4 * 4 + e < D) pc.dst.v[(rows0 + i) * D + c4 * 4 + e] = g[e];
  }
}
