#version 450
// attention_dkv.comp — attention backward, dK and dV. One workgroup per (key block of R rows,
// head, batch); query blocks of C rows stream through shared memory. P is recomputed from q, k
// and the saved lse; dV = P^T dO, dK = scale * dS^T Q with dS = P * (dP - delta), dP = dO V^T.
// dst is (2, B, H, Tk, D): dK first, then dV. Shared memory: (2R + 2C) * DMAX * 4 + ... = 25 KiB.
#include "common.glsl"
#include "push/attention.h"
layout(local_size_x = 64) in;

#define DMAX 128
#define D4MAX (DMAX / 4)
#define R 16               // keys per workgroup
#define C 8                // queries per block
#define LANES 4            // invocations per key row: 64 / R
#define NV (D4MAX / LANES)

shared vec4 sK[R][D4MAX];
shared vec4 sV[R][D4MAX];
shared vec4 sQ[C][D4MAX];
shared vec4 sdO[C][D4MAX];
shared float sP[R][C];
shared float sdS[R][C];
shared float sL[C];
shared float sDelta[C];

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
  int k0 = int(gl_WorkGroupID.x) * R;
  int h = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z), B = int(gl_NumWorkGroups.z);
  int D = pc.D, D4 = (pc.D + 3) / 4, Tq = pc.Tq, Tk = pc.Tk;
  int qbase = b * pc.q_stride[0] + h * pc.q_stride[1];
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  int qrows0 = (b * pc.H + h) * Tq;   // first row of this (b, h) in dO, lse, delta
  int krows0 = (b * pc.H + h) * Tk;   // first row of this (b, h) in dK, dV

  [[dont_unroll]] for (int e = tid; e < R * D4; e += 64) {
    int jj = e / D4, c4 = e % D4, key = k0 + jj;
    bool ok = key < Tk;
    sK[jj][c4] = ok ? load4(pc.k, kbase + key * pc.k_stride[2], c4, D) : vec4(0.0);
    sV[jj][c4] = ok ? load4(pc.v, vbase + key * pc.v_stride[2], c4, D) : vec4(0.0);
  }

  int j = tid / LANES, sub = tid % LANES, key = k0 + j;
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  bool mask_rows = (pc.flags & VKP_ATTN_MASK_ROWS) != 0u;
  int mbase = ((pc.flags & VKP_ATTN_MASK_BCAST) != 0u ? 0 : b) * (mask_rows ? Tq * Tk : Tk);
  int qstart = causal ? (k0 / C) * C : 0;   // queries before k0 see none of these keys

  vec4 accK[NV], accV[NV];
  [[unroll]] for (int v = 0; v < NV; v++) accK[v] = accV[v] = vec4(0.0);

  [[dont_unroll]] for (int qb = qstart; qb < Tq; qb += C) {
    barrier();
    [[dont_unroll]] for (int e = tid; e < C * D4; e += 64) {
      int ii = e / D4, c4 = e % D4, qi = qb + ii;
      bool ok = qi < Tq;
      sQ[ii][c4] = ok ? load4(pc.q, qbase + qi * pc.q_stride[2], c4, D) * pc.scale : vec4(0.0);
      sdO[ii][c4] = ok ? load4(pc.dout, (qrows0 + qi) * D, c4, D) : vec4(0.0);
    }
    if (tid < C) {
      bool ok = qb + tid < Tq;
      sL[tid] = ok ? pc.lse.v[qrows0 + qb + tid] : 0.0;
      sDelta[tid] = ok ? pc.delta.v[qrows0 + qb + tid] : 0.0;
    }
    barrier();
    [[dont_unroll]] for (int ii = 0; ii < C / LANES; ii++) {
      int i = sub + ii * LANES, qi = qb + i;
      float p = 0.0, ds = 0.0;
      if (qi < Tq && key < Tk && !(causal && key > qi)) {
        float s = 0.0, dp = 0.0;
        [[dont_unroll]] for (int c4 = 0; c4 < D4; c4++) {
          s += dot(sQ[i][c4], sK[j][c4]);
          dp += dot(sdO[i][c4], sV[j][c4]);
        }
        if (has_mask) s += pc.mask.v[mbase + (mask_rows ? qi * Tk : 0) + key];
        p = exp(s - sL[i]);
        ds = p * (dp - sDelta[i]);
      }
      sP[j][i] = p;
      sdS[j][i] = ds;
    }
    barrier();
    [[dont_unroll]] for (int i = 0; i < C; i++) {
      float p = sP[j][i], ds = sdS[j][i];
      [[unroll]] for (int v = 0; v < NV; v++) {
        int c4 = sub + v * LANES;
        if (c4 < D4) {
          accV[v] += p * sdO[i][c4];
          accK[v] += ds * sQ[i][c4];
        }
      }
    }
  }

  if (key >= Tk) return;
  int dk = (krows0 + key) * D, dv = (B * pc.H * Tk + krows0 + key) * D;
  [[unroll]] for (int v = 0; v < NV; v++) {
    int c4 = sub + v * LANES;
    if (c4 >= D4) continue;
    for (int e = 0; e < 4; e++)
      if (c4 * 4 + e < D) {
        pc.dst.v[dk + c4 * 4 + e] = accK[v][e];
        pc.dst.v[dv + c4 * 4 + e] = accV[v][e];
      }
  }
}
