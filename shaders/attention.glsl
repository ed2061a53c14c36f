#version 450
// attention.glsl — bodies of the fused attention kernels. Each attention_<kernel>_d<DV> row of
// variants.cmake compiles this file with -D: DV (head-dim capacity: 16, 32, 64, 128 or 160 —
// SD 1.5 uses 40, 80, 160; the host picks the smallest DV >= D) and one of ATTN_FWD, ATTN_DQ,
// ATTN_DKV.
//
// Layout: one invocation owns one row — a query row (forward, dQ) or a key row (dK/dV) — and
// keeps that row's operands and accumulators in registers. The rows of the other side stream past
// in a loop whose row index is the same for the whole subgroup. Rows are packed across heads on a
// 1-D grid: head (b, h) owns the slots [(b H + h) Tp, (b H + h + 1) Tp), Tp = T rounded up to a
// multiple of 4 (so each group of 4 lanes below stays within one head), instead of every head
// starting a fresh 64-row workgroup (a ViT's 197 rows filled 4 workgroups to 77 %, the demo's 17
// one to 27 %). Such a row is read cooperatively:
// in each group of 4 consecutive lanes, lane g loads the 64-bit pairs at columns 8t + 2g (one
// 8-lane gather yields 8 distinct values on lavapipe, where a load every lane makes from the same
// address costs a full gather per value), and every lane takes the values it needs with
// subgroupShuffle (a vpermd on lavapipe, a register exchange on GPUs). No shared memory, no
// barriers. The softmax is online over blocks of KB keys (forward) or recomputed from the saved
// logsumexp (backward), so no (Tq, Tk) matrix is ever stored.
//
// Host guarantees (core/ops/attention.c): D is even, row bases and strides are even and buffers
// 8-byte aligned (64-bit pair loads), the subgroup size is a multiple of 4.
#if !defined(DV) || !(defined(ATTN_FWD) || defined(ATTN_DQ) || defined(ATTN_DKV))
#error "attention.glsl: define DV and one of ATTN_FWD, ATTN_DQ, ATTN_DKV"
#endif
#include "attention_common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
layout(local_size_x = 64) in;

#define NC (DV / 2)    // column pairs of a register row
#define NP (DV / 8)    // pairs this lane loads of a shared row

// This invocation's row: head (b, h) and row i < Tp of T rows (i >= T: padding, not stored).
// Returns false for slots past the last head (they compute on the last head's rows, unstored).
bool row_slot(int T, out int b, out int h, out int i) {
  int Tp = (T + 3) & ~3, BH = pc.B * pc.H;
  int s = int(vkp_global_index()), bh = s / Tp;
  i = s - bh * Tp;
  bool live = bh < BH;
  bh = min(bh, BH - 1);
  b = bh / pc.H;
  h = bh - b * pc.H;
  return live && i < T;
}

// A row this invocation owns: zeros past D.
void load_own(F32Buf buf, int base, out vec2 r[NC]) {
  [[unroll]] for (int c = 0; c < NC; c++) r[c] = 2 * c < pc.D ? load_pair(buf, base + 2 * c) : vec2(0.0);
}

void store_own(int base, vec2 r[NC], float scale) {
  [[unroll]] for (int c = 0; c < NC; c++)
    if (2 * c < pc.D) {
      pc.dst.v[base + 2 * c] = r[c].x * scale;
      pc.dst.v[base + 2 * c + 1] = r[c].y * scale;
    }
}

// This lane's share of a row every invocation reads: pairs at columns 8t + 2g, g = lane % 4.
// Columns past D re-read the last pair: they only meet the zero padding of the owned rows or feed
// accumulator columns that are never stored.
void load_share(F32Buf buf, int base, out vec2 sh[NP]) {
  int g = 2 * int(gl_SubgroupInvocationID & 3u);
  [[unroll]] for (int t = 0; t < NP; t++) sh[t] = load_pair(buf, base + min(8 * t + g, pc.D - 2));
}

// Pair c (columns 2c, 2c + 1) of a shared row.
vec2 bcast(vec2 sh[NP], int c) { return subgroupShuffle(sh[c >> 2], (gl_SubgroupInvocationID & ~3u) + uint(c & 3)); }

float dot_share(vec2 r[NC], vec2 sh[NP]) {
  vec2 d = vec2(0.0);
  [[unroll]] for (int c = 0; c < NC; c++) d = fma(r[c], bcast(sh, c), d);
  return d.x + d.y;
}

#ifdef ATTN_FWD
// Forward: invocation = query row i. Writes O and lse = m + log(l) (+inf when every key of the
// row is masked: the output row is zeros and the backward sees P = 0).
void main() {
  int Tq = pc.Tq, Tk = pc.Tk, b, h, i;
  bool live = row_slot(Tq, b, h, i);
  int ic = min(i, Tq - 1);
  vec2 q[NC];
  load_own(pc.q, b * pc.q_stride[0] + h * pc.q_stride[1] + ic * pc.q_stride[2], q);
  [[unroll]] for (int c = 0; c < NC; c++) q[c] *= pc.scale;
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  int mrow = mask_row(b, ic);
  int kend = causal ? min(Tk, subgroupMax(ic) + 1) : Tk;   // later keys are invisible to the subgroup

  float m = NEG_INF, l = 0.0;
  vec2 o[NC];
  [[unroll]] for (int c = 0; c < NC; c++) o[c] = vec2(0.0);
  [[dont_unroll]] for (int kb = 0; kb < kend; kb += KB) {
    float s[KB];
    [[unroll]] for (int u = 0; u < KB; u++) {
      int key = kb + u, kc = min(key, Tk - 1);
      vec2 sh[NP];
      load_share(pc.k, kbase + kc * pc.k_stride[2], sh);
      float sv = dot_share(q, sh);
      if (has_mask) sv += pc.mask.v[mrow + kc];
      s[u] = (key < Tk && !(causal && key > i)) ? sv : NEG_INF;
    }
    float mnew = max(max(m, max(s[0], s[1])), max(s[2], s[3]));
    float msafe = mnew == NEG_INF ? 0.0 : mnew;   // nothing visible yet: the state stays zero
    float alpha = exp(m - msafe);
    float p[KB];
    [[unroll]] for (int u = 0; u < KB; u++) p[u] = exp(s[u] - msafe);
    l = fma(l, alpha, (p[0] + p[1]) + (p[2] + p[3]));
    [[unroll]] for (int c = 0; c < NC; c++) o[c] *= alpha;
    [[unroll]] for (int u = 0; u < KB; u++) {
      vec2 sh[NP];
      load_share(pc.v, vbase + min(kb + u, Tk - 1) * pc.v_stride[2], sh);
      [[unroll]] for (int c = 0; c < NC; c++) o[c] = fma(vec2(p[u]), bcast(sh, c), o[c]);
    }
    m = mnew;
  }
  if (!live) return;
  int row = (b * pc.H + h) * Tq + i;
  store_own(row * pc.D, o, l > 0.0 ? 1.0 / l : 0.0);
  pc.lse.v[row] = l > 0.0 ? m + log(l) : POS_INF;
}
#endif

#ifdef ATTN_DQ
// dQ: invocation = query row i. With P = exp(s - lse), dP = dO . v, dS = P (dP - delta):
// dQ_i = scale * sum_j dS_ij k_j.
void main() {
  int Tq = pc.Tq, Tk = pc.Tk, b, h, i;
  bool live = row_slot(Tq, b, h, i);
  int ic = min(i, Tq - 1);
  int row = (b * pc.H + h) * Tq + ic;   // row of O, dO, lse, delta, dQ
  vec2 q[NC], dout[NC], acc[NC];
  load_own(pc.q, b * pc.q_stride[0] + h * pc.q_stride[1] + ic * pc.q_stride[2], q);
  [[unroll]] for (int c = 0; c < NC; c++) q[c] *= pc.scale;
  load_own(pc.dout, row * pc.D, dout);
  [[unroll]] for (int c = 0; c < NC; c++) acc[c] = vec2(0.0);
  float lse = pc.lse.v[row], delta = pc.delta.v[row];
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  int mrow = mask_row(b, ic);
  int kend = causal ? min(Tk, subgroupMax(ic) + 1) : Tk;

  [[dont_unroll]] for (int key = 0; key < kend; key++) {
    vec2 ks[NP], vs[NP];
    load_share(pc.k, kbase + key * pc.k_stride[2], ks);
    load_share(pc.v, vbase + key * pc.v_stride[2], vs);
    float s = dot_share(q, ks), dp = dot_share(dout, vs);
    if (has_mask) s += pc.mask.v[mrow + key];
    float ds = (live && !(causal && key > i)) ? exp(s - lse) * (dp - delta) : 0.0;
    [[unroll]] for (int c = 0; c < NC; c++) acc[c] = fma(vec2(ds), bcast(ks, c), acc[c]);
  }
  if (!live) return;
  store_own(row * pc.D, acc, pc.scale);
}
#endif

#ifdef ATTN_DKV
// dK, dV: invocation = key row j. dV_j = sum_i P_ij dO_i, dK_j = scale * sum_i dS_ij q_i.
// dst is (2, B, H, Tk, D): dK then dV.
void main() {
  int Tq = pc.Tq, Tk = pc.Tk, b, h, j;
  bool live = row_slot(Tk, b, h, j);
  int jc = min(j, Tk - 1);
  vec2 k[NC], v[NC], dk[NC], dv[NC];
  load_own(pc.k, b * pc.k_stride[0] + h * pc.k_stride[1] + jc * pc.k_stride[2], k);
  [[unroll]] for (int c = 0; c < NC; c++) k[c] *= pc.scale;
  load_own(pc.v, b * pc.v_stride[0] + h * pc.v_stride[1] + jc * pc.v_stride[2], v);
  [[unroll]] for (int c = 0; c < NC; c++) dk[c] = dv[c] = vec2(0.0);
  int qbase = b * pc.q_stride[0] + h * pc.q_stride[1];
  int rows0 = (b * pc.H + h) * Tq;   // first row of this (b, h) in dO, lse, delta
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  bool mask_rows = (pc.flags & VKP_ATTN_MASK_ROWS) != 0u;
  int mcol = mask_row(b, 0) + jc;
  float mkey = 0.0;
  if (has_mask && !mask_rows) mkey = pc.mask.v[mcol];
  int qstart = causal ? subgroupMin(jc) : 0;   // earlier queries see none of the subgroup's keys

  [[dont_unroll]] for (int qi = qstart; qi < Tq; qi++) {
    vec2 qs[NP], ds_[NP];
    load_share(pc.q, qbase + qi * pc.q_stride[2], qs);
    load_share(pc.dout, (rows0 + qi) * pc.D, ds_);
    float lse = pc.lse.v[rows0 + qi], delta = pc.delta.v[rows0 + qi];
    float s = dot_share(k, qs) + mkey;
    if (mask_rows) s += pc.mask.v[mcol + qi * Tk];
    float dp = dot_share(v, ds_);
    float p = (live && !(causal && j > qi)) ? exp(s - lse) : 0.0;
    float dsv = p * (dp - delta);
    [[unroll]] for (int c = 0; c < NC; c++) {
      dv[c] = fma(vec2(p), bcast(ds_, c), dv[c]);
      dk[c] = fma(vec2(dsv), bcast(qs, c), dk[c]);
    }
  }
  if (!live) return;
  int krow = (b * pc.H + h) * Tk + j;
  store_own(krow * pc.D, dk, pc.scale);
  store_own((pc.B * pc.H * Tk + krow) * pc.D, dv, 1.0);
}
#endif
