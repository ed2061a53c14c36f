#version 450
// attention_fwd.comp — fused scaled-dot-product attention, forward (flash-attention style).
// One workgroup per (query block of R rows, head, batch); LANES invocations share a query row.
// Key/value blocks of C rows are staged in shared memory; each row keeps a running max m, a
// running denominator l and its output accumulator (online softmax), so the (Tq, Tk) score
// matrix is never stored. Writes O and lse = m + log(l) per row for the backward pass.
// Shared memory: (R + 2C) * DMAX * 4 + R*C*4 bytes = 25 KiB for DMAX 128 (lavapipe allows 32).
#include "common.glsl"
#include "push/attention.h"
layout(local_size_x = 64) in;

#define DMAX 128
#define D4MAX (DMAX / 4)
#define R 16               // query rows per workgroup
#define C 16               // keys per block
#define LANES 4            // invocations per query row: 64 / R
#define NV (D4MAX / LANES) // vec4 output columns per invocation

shared vec4 sQ[R][D4MAX];
shared vec4 sK[C][D4MAX];
shared vec4 sV[C][D4MAX];
shared float sS[R][C];

#define NEG_INF (-uintBitsToFloat(0x7f800000u))

// Four consecutive elements of a row starting at `base` (zeros past D).
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

  [[dont_unroll]] for (int e = tid; e < R * D4; e += 64) {
    int rr = e / D4, c4 = e % D4, qi = q0 + rr;
    sQ[rr][c4] = qi < Tq ? load4(pc.q, qbase + qi * pc.q_stride[2], c4, D) * pc.scale : vec4(0.0);
  }

  int r = tid / LANES, sub = tid % LANES, i = q0 + r;
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  int mrow = ((pc.flags & VKP_ATTN_MASK_BCAST) != 0u ? 0 : b) * ((pc.flags & VKP_ATTN_MASK_ROWS) != 0u ? Tq * Tk : Tk) +
             ((pc.flags & VKP_ATTN_MASK_ROWS) != 0u ? i * Tk : 0);
  int kend = causal ? min(Tk, q0 + R) : Tk;   // later keys are invisible to every row of the block

  float m = NEG_INF, l = 0.0;
  vec4 acc[NV];
  [[unroll]] for (int v = 0; v < NV; v++) acc[v] = vec4(0.0);

  [[dont_unroll]] for (int kb = 0; kb < kend; kb += C) {
    barrier();   // previous block's sK/sV/sS fully consumed (and sQ visible on the first pass)
    [[dont_unroll]] for (int e = tid; e < C * D4; e += 64) {
      int j = e / D4, c4 = e % D4, key = kb + j;
      bool ok = key < Tk;
      sK[j][c4] = ok ? load4(pc.k, kbase + key * pc.k_stride[2], c4, D) : vec4(0.0);
      sV[j][c4] = ok ? load4(pc.v, vbase + key * pc.v_stride[2], c4, D) : vec4(0.0);
    }
    barrier();
    [[dont_unroll]] for (int jj = 0; jj < C / LANES; jj++) {
      int j = sub + jj * LANES, key = kb + j;
      float s = NEG_INF;
      if (key < Tk && i < Tq && !(causal && key > i)) {
        float d = 0.0;
        [[dont_unroll]] for (int c4 = 0; c4 < D4; c4++) d += dot(sQ[r][c4], sK[j][c4]);
        if (has_mask) d += pc.mask.v[mrow + key];
        s = d;
      }
      sS[r][j] = s;
    }
    barrier();
    float mblk = NEG_INF;
    [[dont_unroll]] for (int j = 0; j < C; j++) mblk = max(mblk, sS[r][j]);
    float mnew = max(m, mblk);
    if (mnew > NEG_INF) {   // otherwise nothing is visible yet: keep the zero state
      float alpha = exp(m - mnew);
      l *= alpha;
      [[unroll]] for (int v = 0; v < NV; v++) acc[v] *= alpha;
      [[dont_unroll]] for (int j = 0; j < C; j++) {
        float p = exp(sS[r][j] - mnew);
        l += p;
        [[unroll]] for (int v = 0; v < NV; v++) {
          int c4 = sub + v * LANES;
          if (c4 < D4) acc[v] += p * sV[j][c4];
        }
      }
      m = mnew;
    }
  }

  if (i >= Tq) return;
  int row = (b * pc.H + h) * Tq + i;
  float inv = l > 0.0 ? 1.0 / l : 0.0;   // a row whose keys are all masked outputs zeros
  [[unroll]] for (int v = 0; v < NV; v++) {
    int c4 = sub + v * LANES;
    if (c4 >= D4) continue;
    vec4 o = acc[v] * inv;
    for (int e = 0; e < 4; e++)
      if (c4 * 4 + e < D) pc.dst.v[row * D + c4 * 4 + e] = o[e];
  }
  if (sub == 0) pc.lse.v[row] = l > 0.0 ? m + log(l) : uintBitsToFloat(0x7f800000u);
}
