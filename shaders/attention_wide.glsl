#version 450
// attention_wide.glsl — fused attention for head dims past attention.glsl's register rows
// (D > 160: the VAE's single 512-wide head). Each attention_<kernel>_w<DV> row of variants.cmake
// compiles this file with -D: DV (head-dim capacity, a multiple of 2G; the host picks the smallest
// DV >= D), RB (rows per lane group) and one of ATTN_FWD, ATTN_DQ, ATTN_DKV. Same math and
// outputs as attention.glsl.
//
// Layout: a row (a query row for forward and dQ, a key row for dK/dV) is split over a group of
// G = 8 consecutive lanes of a subgroup: lane g owns the column pairs 2 (G t + g), t < NP, of every
// vector of its row (q, O, dO, the gradient accumulators). A group owns RB rows (consecutive), so
// the rows of the other side, which stream past with every lane loading its own pairs of them
// (the group reads 8G contiguous bytes per step), are loaded once for RB rows: on lavapipe each
// such load is a gather, which costs more than the arithmetic it feeds, and a lane's registers
// spill to the stack cheaply; a lane holds RB times what attention.glsl's kernel of capacity
// DV / 8 holds. A dot product of two rows
// is a partial sum per lane, completed by log2(G) subgroupShuffleXor steps, after which every lane
// of the group has the same score, so the online-softmax state (m, l) is the same in each lane and
// no lane waits for another. No shared memory, no barriers, no (Tq, Tk) matrix.
//
// Host guarantees (core/ops/attention.c): D is even, row bases and strides are even and buffers
// 8-byte aligned (64-bit pair loads), the subgroup size is a multiple of G, D <= DV.
#if !defined(DV) || !defined(RB) || !(defined(ATTN_FWD) || defined(ATTN_DQ) || defined(ATTN_DKV))
#error "attention_wide.glsl: define DV, RB and one of ATTN_FWD, ATTN_DQ, ATTN_DKV"
#endif
#include "attention_common.glsl"
layout(local_size_x = 64) in;

#define G 8               // lanes per row (ATTN_WIDE_LANES in core/ops/attention.c)
#define ROWS (64 / G * RB) // rows per workgroup (ATTN_WIDE_ROWS)
#define NP (DV / (2 * G)) // column pairs per lane

// Lane index within the workgroup, counted through the subgroups so that the G lanes of a row are
// consecutive invocations of one subgroup whatever the local-id-to-subgroup mapping.
int wg_lane() { return int(gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID); }

int col(int t, int g) { return 2 * (G * t + g); }

// This lane's pairs of a row the group owns: zeros past D.
void load_own(F32Buf buf, int base, int g, out vec2 r[NP]) {
  [[unroll]] for (int t = 0; t < NP; t++) r[t] = col(t, g) < pc.D ? load_pair(buf, base + col(t, g)) : vec2(0.0);
}

// This lane's pairs of a streamed row. Columns past D re-read the last pair: they only meet the
// zero padding of the owned rows or feed accumulator columns that are never stored.
void load_part(F32Buf buf, int base, int g, out vec2 r[NP]) {
  [[unroll]] for (int t = 0; t < NP; t++) r[t] = load_pair(buf, base + min(col(t, g), pc.D - 2));
}

void store_own(int base, int g, vec2 r[NP], float scale) {
  [[unroll]] for (int t = 0; t < NP; t++)
    if (col(t, g) < pc.D) {
      pc.dst.v[base + col(t, g)] = r[t].x * scale;
      pc.dst.v[base + col(t, g) + 1] = r[t].y * scale;
    }
}

float dot_part(vec2 a[NP], vec2 b[NP]) {
  vec2 d = vec2(0.0);
  [[unroll]] for (int t = 0; t < NP; t++) d = fma(a[t], b[t], d);
  return d.x + d.y;
}

// Sums over the G lanes of a row (every lane gets the total).
vec2 group_sum(vec2 x) {
  [[unroll]] for (uint s = 1u; s < uint(G); s <<= 1) x += subgroupShuffleXor(x, s);
  return x;
}
vec4 group_sum(vec4 x) {
  [[unroll]] for (uint s = 1u; s < uint(G); s <<= 1) x += subgroupShuffleXor(x, s);
  return x;
}

#ifdef ATTN_FWD
// Forward: a lane group = query rows i0 .. i0 + RB - 1. Writes O and lse = m + log(l) (+inf when
// every key of a row is masked: the output row is zeros and the backward sees P = 0).
void main() {
  int Tq = pc.Tq, Tk = pc.Tk;
  int h = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
  int lane = wg_lane(), g = lane & (G - 1);
  int q0 = int(gl_WorkGroupID.x) * ROWS, i0 = q0 + lane / G * RB;
  vec2 q[RB][NP], o[RB][NP];
  float m[RB], l[RB];
  int mrow[RB];
  [[unroll]] for (int r = 0; r < RB; r++) {
    int ic = min(i0 + r, Tq - 1);
    load_own(pc.q, b * pc.q_stride[0] + h * pc.q_stride[1] + ic * pc.q_stride[2], g, q[r]);
    [[unroll]] for (int t = 0; t < NP; t++) q[r][t] *= pc.scale, o[r][t] = vec2(0.0);
    m[r] = NEG_INF, l[r] = 0.0;
    mrow[r] = mask_row(b, ic);
  }
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  int kend = causal ? min(Tk, q0 + ROWS) : Tk;   // later keys are invisible to the whole block

  [[dont_unroll]] for (int kb = 0; kb < kend; kb += KB) {
    vec4 s[RB];
    [[unroll]] for (int u = 0; u < KB; u++) {
      vec2 kr[NP];
      load_part(pc.k, kbase + min(kb + u, Tk - 1) * pc.k_stride[2], g, kr);
      [[unroll]] for (int r = 0; r < RB; r++) s[r][u] = dot_part(q[r], kr);
    }
    vec4 p[RB];
    [[unroll]] for (int r = 0; r < RB; r++) {
      s[r] = group_sum(s[r]);
      [[unroll]] for (int u = 0; u < KB; u++) {
        int key = kb + u;
        if (has_mask) s[r][u] += pc.mask.v[mrow[r] + min(key, Tk - 1)];
        if (key >= Tk || (causal && key > i0 + r)) s[r][u] = NEG_INF;
      }
      float mnew = max(max(m[r], max(s[r][0], s[r][1])), max(s[r][2], s[r][3]));
      float msafe = mnew == NEG_INF ? 0.0 : mnew;   // nothing visible yet: the state stays zero
      float alpha = exp(m[r] - msafe);
      p[r] = exp(s[r] - vec4(msafe));
      l[r] = fma(l[r], alpha, (p[r][0] + p[r][1]) + (p[r][2] + p[r][3]));
      [[unroll]] for (int t = 0; t < NP; t++) o[r][t] *= alpha;
      m[r] = mnew;
    }
    [[unroll]] for (int u = 0; u < KB; u++) {
      vec2 vr[NP];
      load_part(pc.v, vbase + min(kb + u, Tk - 1) * pc.v_stride[2], g, vr);
      [[unroll]] for (int r = 0; r < RB; r++)
        [[unroll]] for (int t = 0; t < NP; t++) o[r][t] = fma(vec2(p[r][u]), vr[t], o[r][t]);
    }
  }
  [[unroll]] for (int r = 0; r < RB; r++) {
    if (i0 + r >= Tq) break;
    int row = (b * pc.H + h) * Tq + i0 + r;
    store_own(io_row(b, h, i0 + r, Tq, VKP_ATTN_O_BTHD), g, o[r], l[r] > 0.0 ? 1.0 / l[r] : 0.0);
    if (g == 0) pc.lse.v[row] = l[r] > 0.0 ? m[r] + log(l[r]) : POS_INF;
  }
}
#endif

#ifdef ATTN_DQ
// dQ: a lane group = query rows i0 .. i0 + RB - 1. With P = exp(s - lse), dP = dO . v,
// dS = P (dP - delta): dQ_i = scale * sum_j dS_ij k_j.
void main() {
  int Tq = pc.Tq, Tk = pc.Tk;
  int h = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
  int lane = wg_lane(), g = lane & (G - 1);
  int q0 = int(gl_WorkGroupID.x) * ROWS, i0 = q0 + lane / G * RB;
  vec2 q[RB][NP], dout[RB][NP], acc[RB][NP];
  float lse[RB], delta[RB];
  int mrow[RB];
  [[unroll]] for (int r = 0; r < RB; r++) {
    int ic = min(i0 + r, Tq - 1), row = (b * pc.H + h) * Tq + ic;   // row of lse, delta
    load_own(pc.q, b * pc.q_stride[0] + h * pc.q_stride[1] + ic * pc.q_stride[2], g, q[r]);
    load_own(pc.dout, io_row(b, h, ic, Tq, VKP_ATTN_O_BTHD), g, dout[r]);
    [[unroll]] for (int t = 0; t < NP; t++) q[r][t] *= pc.scale, acc[r][t] = vec2(0.0);
    lse[r] = pc.lse.v[row], delta[r] = pc.delta.v[row];
    mrow[r] = mask_row(b, ic);
  }
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  int kend = causal ? min(Tk, q0 + ROWS) : Tk;

  [[dont_unroll]] for (int key = 0; key < kend; key++) {
    vec2 kr[NP], vr[NP];
    load_part(pc.k, kbase + key * pc.k_stride[2], g, kr);
    load_part(pc.v, vbase + key * pc.v_stride[2], g, vr);
    [[unroll]] for (int r = 0; r < RB; r++) {
      vec2 sd = group_sum(vec2(dot_part(q[r], kr), dot_part(dout[r], vr)));   // (s, dP)
      float s = sd.x;
      if (has_mask) s += pc.mask.v[mrow[r] + key];
      float ds = (i0 + r < Tq && !(causal && key > i0 + r)) ? exp(s - lse[r]) * (sd.y - delta[r]) : 0.0;
      [[unroll]] for (int t = 0; t < NP; t++) acc[r][t] = fma(vec2(ds), kr[t], acc[r][t]);
    }
  }
  [[unroll]] for (int r = 0; r < RB; r++) {
    if (i0 + r >= Tq) break;
    store_own(io_row(b, h, i0 + r, Tq, VKP_ATTN_DQ_BTHD), g, acc[r], pc.scale);
  }
}
#endif

#ifdef ATTN_DKV
// dK, dV: a lane group = key rows j0 .. j0 + RB - 1. dV_j = sum_i P_ij dO_i,
// dK_j = scale * sum_i dS_ij q_i. dst is (2, B, H, Tk, D): dK then dV.
void main() {
  int Tq = pc.Tq, Tk = pc.Tk;
  int h = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z), B = int(gl_NumWorkGroups.z);
  int lane = wg_lane(), g = lane & (G - 1);
  int k0 = int(gl_WorkGroupID.x) * ROWS, j0 = k0 + lane / G * RB;
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  bool mask_rows = (pc.flags & VKP_ATTN_MASK_ROWS) != 0u;
  vec2 k[RB][NP], v[RB][NP], dk[RB][NP], dv[RB][NP];
  int mcol[RB];
  float mkey[RB];
  [[unroll]] for (int r = 0; r < RB; r++) {
    int jc = min(j0 + r, Tk - 1);
    load_own(pc.k, b * pc.k_stride[0] + h * pc.k_stride[1] + jc * pc.k_stride[2], g, k[r]);
    load_own(pc.v, b * pc.v_stride[0] + h * pc.v_stride[1] + jc * pc.v_stride[2], g, v[r]);
    [[unroll]] for (int t = 0; t < NP; t++) k[r][t] *= pc.scale, dk[r][t] = dv[r][t] = vec2(0.0);
    mcol[r] = mask_row(b, 0) + jc;
    mkey[r] = has_mask && !mask_rows ? pc.mask.v[mcol[r]] : 0.0;
  }
  int qbase = b * pc.q_stride[0] + h * pc.q_stride[1];
  int rows0 = (b * pc.H + h) * Tq;   // first row of this (b, h) in lse, delta
  int qstart = causal ? k0 : 0;   // earlier queries see none of this block's keys

  [[dont_unroll]] for (int qi = qstart; qi < Tq; qi++) {
    vec2 qr[NP], dr[NP];
    load_part(pc.q, qbase + qi * pc.q_stride[2], g, qr);
    load_part(pc.dout, io_row(b, h, qi, Tq, VKP_ATTN_O_BTHD), g, dr);
    float lse = pc.lse.v[rows0 + qi], delta = pc.delta.v[rows0 + qi];
    [[unroll]] for (int r = 0; r < RB; r++) {
      vec2 sd = group_sum(vec2(dot_part(k[r], qr), dot_part(v[r], dr)));   // (s, dP)
      float s = sd.x + mkey[r];
      if (mask_rows) s += pc.mask.v[mcol[r] + qi * Tk];
      float p = (j0 + r < Tk && !(causal && j0 + r > qi)) ? exp(s - lse) : 0.0;
      float dsv = p * (sd.y - delta);
      [[unroll]] for (int t = 0; t < NP; t++) {
        dv[r][t] = fma(vec2(p), dr[t], dv[r][t]);
        dk[r][t] = fma(vec2(dsv), qr[t], dk[r][t]);
      }
    }
  }
  [[unroll]] for (int r = 0; r < RB; r++) {
    if (j0 + r >= Tk) break;
    int krow = io_row(b, h, j0 + r, Tk, VKP_ATTN_DKV_BTHD);
    store_own(krow, g, dk[r], pc.scale);
    store_own(B * pc.H * Tk * pc.D + krow, g, dv[r], 1.0);
  }
}
#endif
