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

#ifndef RB
#define RB 1           // rows per invocation (2 in the backward kernels up to DV 64: variants.cmake)
#endif

// This invocation's rows: head (b, h) and rows i, i + 4, ..., i + 4 (RB - 1) of the head's T rows
// padded to Tp, a multiple of 4 RB (a group of 4 lanes owns 4 RB consecutive rows). Returns false
// for slots past the last head (they compute on the last head's rows; nothing is stored); a row
// is live when this returns true and it is < T.
bool row_slot(int T, out int b, out int h, out int i) {
  int Tp = (T + 4 * RB - 1) / (4 * RB) * (4 * RB), BH = pc.B * pc.H;
  int s = int(vkp_global_index()), per_head = Tp / RB, bh = s / per_head;
  int si = s - bh * per_head;
  i = (si >> 2) * (4 * RB) + (si & 3);
  bool live = bh < BH;
  bh = min(bh, BH - 1);
  b = bh / pc.H;
  h = bh - b * pc.H;
  return live;
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

// d[t] = r[t] . (a shared row), for every row this invocation owns: each broadcast pair serves all.
void dot_share(vec2 r[RB][NC], vec2 sh[NP], out float d[RB]) {
  vec2 acc[RB];
  [[unroll]] for (int t = 0; t < RB; t++) acc[t] = vec2(0.0);
  [[unroll]] for (int c = 0; c < NC; c++) {
    vec2 s = bcast(sh, c);
    [[unroll]] for (int t = 0; t < RB; t++) acc[t] = fma(r[t][c], s, acc[t]);
  }
  [[unroll]] for (int t = 0; t < RB; t++) d[t] = acc[t].x + acc[t].y;
}

#ifdef ATTN_FWD
// Forward: invocation = query rows i_t = i + 4t, t < RB. Writes O and lse = m + log(l) (+inf when
// every key of the row is masked: the output row is zeros and the backward sees P = 0). Each
// streamed key and value row serves RB query rows.
void main() {
  int Tq = pc.Tq, Tk = pc.Tk, b, h, i;
  bool head = row_slot(Tq, b, h, i);
  vec2 q[RB][NC], o[RB][NC];
  int mrow[RB];
  float m[RB], l[RB];
  [[unroll]] for (int t = 0; t < RB; t++) {
    int ic = min(i + 4 * t, Tq - 1);
    load_own(pc.q, b * pc.q_stride[0] + h * pc.q_stride[1] + ic * pc.q_stride[2], q[t]);
    [[unroll]] for (int c = 0; c < NC; c++) q[t][c] *= pc.scale;
    [[unroll]] for (int c = 0; c < NC; c++) o[t][c] = vec2(0.0);
    mrow[t] = mask_row(b, ic);
    m[t] = NEG_INF;
    l[t] = 0.0;
  }
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  // Later keys are invisible to the whole subgroup.
  int kend = causal ? min(Tk, subgroupMax(min(i + 4 * (RB - 1), Tq - 1)) + 1) : Tk;

  [[dont_unroll]] for (int kb = 0; kb < kend; kb += KB) {
    float s[RB][KB];
    [[unroll]] for (int u = 0; u < KB; u++) {
      int key = kb + u, kc = min(key, Tk - 1);
      vec2 sh[NP];
      load_share(pc.k, kbase + kc * pc.k_stride[2], sh);
      float d[RB];
      dot_share(q, sh, d);
      [[unroll]] for (int t = 0; t < RB; t++) {
        float sv = d[t];
        if (has_mask) sv += pc.mask.v[mrow[t] + kc];
        s[t][u] = (key < Tk && !(causal && key > i + 4 * t)) ? sv : NEG_INF;
      }
    }
    float p[RB][KB];
    [[unroll]] for (int t = 0; t < RB; t++) {
      float mnew = max(max(m[t], max(s[t][0], s[t][1])), max(s[t][2], s[t][3]));
      float msafe = mnew == NEG_INF ? 0.0 : mnew;   // nothing visible yet: the state stays zero
      float alpha = exp(m[t] - msafe);
      [[unroll]] for (int u = 0; u < KB; u++) p[t][u] = exp(s[t][u] - msafe);
      l[t] = fma(l[t], alpha, (p[t][0] + p[t][1]) + (p[t][2] + p[t][3]));
      [[unroll]] for (int c = 0; c < NC; c++) o[t][c] *= alpha;
      m[t] = mnew;
    }
    [[unroll]] for (int u = 0; u < KB; u++) {
      vec2 sh[NP];
      load_share(pc.v, vbase + min(kb + u, Tk - 1) * pc.v_stride[2], sh);
      [[unroll]] for (int c = 0; c < NC; c++) {
        vec2 bv = bcast(sh, c);
        [[unroll]] for (int t = 0; t < RB; t++) o[t][c] = fma(vec2(p[t][u]), bv, o[t][c]);
      }
    }
  }
  [[unroll]] for (int t = 0; t < RB; t++) {
    if (!head || i + 4 * t >= Tq) continue;
    int row = (b * pc.H + h) * Tq + i + 4 * t;
    store_own(io_row(b, h, i + 4 * t, Tq, VKP_ATTN_O_BTHD), o[t], l[t] > 0.0 ? 1.0 / l[t] : 0.0);
    pc.lse.v[row] = l[t] > 0.0 ? m[t] + log(l[t]) : POS_INF;
  }
}
#endif

#ifdef ATTN_DQ
// dQ: invocation = query rows i_t = i + 4t, t < RB. With P = exp(s - lse), dP = dO . v,
// dS = P (dP - delta): dQ_i = scale * sum_j dS_ij k_j. Each streamed key row (k, v) serves RB
// query rows.
void main() {
  int Tq = pc.Tq, Tk = pc.Tk, b, h, i;
  bool head = row_slot(Tq, b, h, i);
  vec2 q[RB][NC], dout[RB][NC], acc[RB][NC];
  bool live[RB];
  int row[RB], mrow[RB];
  float lse[RB], delta[RB];
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  [[unroll]] for (int t = 0; t < RB; t++) {
    live[t] = head && i + 4 * t < Tq;
    int ic = min(i + 4 * t, Tq - 1);
    row[t] = (b * pc.H + h) * Tq + ic;   // row of lse, delta
    load_own(pc.q, b * pc.q_stride[0] + h * pc.q_stride[1] + ic * pc.q_stride[2], q[t]);
    [[unroll]] for (int c = 0; c < NC; c++) q[t][c] *= pc.scale;
    load_own(pc.dout, io_row(b, h, ic, Tq, VKP_ATTN_O_BTHD), dout[t]);
    [[unroll]] for (int c = 0; c < NC; c++) acc[t][c] = vec2(0.0);
    lse[t] = pc.lse.v[row[t]];
    delta[t] = pc.delta.v[row[t]];
    mrow[t] = mask_row(b, ic);
  }
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  int kend = causal ? min(Tk, subgroupMax(min(i + 4 * (RB - 1), Tq - 1)) + 1) : Tk;

  [[dont_unroll]] for (int key = 0; key < kend; key++) {
    vec2 ks[NP], vs[NP];
    load_share(pc.k, kbase + key * pc.k_stride[2], ks);
    load_share(pc.v, vbase + key * pc.v_stride[2], vs);
    float sd[RB], pd[RB];   // q_t . k, dO_t . v
    dot_share(q, ks, sd);
    dot_share(dout, vs, pd);
    float ds[RB];
    [[unroll]] for (int t = 0; t < RB; t++) {
      float s = sd[t];
      if (has_mask) s += pc.mask.v[mrow[t] + key];
      ds[t] = (live[t] && !(causal && key > i + 4 * t)) ? exp(s - lse[t]) * (pd[t] - delta[t]) : 0.0;
    }
    [[unroll]] for (int c = 0; c < NC; c++) {
      vec2 bk = bcast(ks, c);
      [[unroll]] for (int t = 0; t < RB; t++) acc[t][c] = fma(vec2(ds[t]), bk, acc[t][c]);
    }
  }
  [[unroll]] for (int t = 0; t < RB; t++)
    if (live[t]) store_own(io_row(b, h, i + 4 * t, Tq, VKP_ATTN_DQ_BTHD), acc[t], pc.scale);
}
#endif

#ifdef ATTN_DKV
// dK, dV: invocation = key rows j_t = j + 4t, t < RB. dV_j = sum_i P_ij dO_i,
// dK_j = scale * sum_i dS_ij q_i. Each streamed query row (q, dO: 16 gathers of a 64-wide head)
// serves RB key rows. dst is (2, B, H, Tk, D): dK then dV.
void main() {
  int Tq = pc.Tq, Tk = pc.Tk, b, h, j;
  bool head = row_slot(Tk, b, h, j);
  vec2 k[RB][NC], v[RB][NC], dk[RB][NC], dv[RB][NC];
  bool live[RB];
  int jc[RB];
  float mkey[RB];
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  bool mask_rows = (pc.flags & VKP_ATTN_MASK_ROWS) != 0u;
  int mcol0 = mask_row(b, 0);
  [[unroll]] for (int t = 0; t < RB; t++) {
    live[t] = head && j + 4 * t < Tk;
    jc[t] = min(j + 4 * t, Tk - 1);
    load_own(pc.k, b * pc.k_stride[0] + h * pc.k_stride[1] + jc[t] * pc.k_stride[2], k[t]);
    [[unroll]] for (int c = 0; c < NC; c++) k[t][c] *= pc.scale;
    load_own(pc.v, b * pc.v_stride[0] + h * pc.v_stride[1] + jc[t] * pc.v_stride[2], v[t]);
    [[unroll]] for (int c = 0; c < NC; c++) dk[t][c] = dv[t][c] = vec2(0.0);
    mkey[t] = has_mask && !mask_rows ? pc.mask.v[mcol0 + jc[t]] : 0.0;
  }
  int qbase = b * pc.q_stride[0] + h * pc.q_stride[1];
  int rows0 = (b * pc.H + h) * Tq;   // first row of this (b, h) in lse, delta
  int qstart = causal ? subgroupMin(jc[0]) : 0;   // earlier queries see none of the subgroup's keys

  [[dont_unroll]] for (int qi = qstart; qi < Tq; qi++) {
    vec2 qs[NP], ds_[NP];
    load_share(pc.q, qbase + qi * pc.q_stride[2], qs);
    load_share(pc.dout, io_row(b, h, qi, Tq, VKP_ATTN_O_BTHD), ds_);
    float lse = pc.lse.v[rows0 + qi], delta = pc.delta.v[rows0 + qi];
    float sd[RB], pd[RB];   // k_t . q, v_t . dO
    dot_share(k, qs, sd);
    dot_share(v, ds_, pd);
    float p[RB], dsv[RB];
    [[unroll]] for (int t = 0; t < RB; t++) {
      float s = sd[t] + mkey[t];
      if (mask_rows) s += pc.mask.v[mcol0 + jc[t] + qi * Tk];
      p[t] = (live[t] && !(causal && j + 4 * t > qi)) ? exp(s - lse) : 0.0;
      dsv[t] = p[t] * (pd[t] - delta);
    }
    [[unroll]] for (int c = 0; c < NC; c++) {
      vec2 bq = bcast(qs, c), bd = bcast(ds_, c);
      [[unroll]] for (int t = 0; t < RB; t++) {
        dv[t][c] = fma(vec2(p[t]), bd, dv[t][c]);
        dk[t][c] = fma(vec2(dsv[t]), bq, dk[t][c]);
      }
    }
  }
  [[unroll]] for (int t = 0; t < RB; t++) {
    if (!live[t]) continue;
    int krow = io_row(b, h, j + 4 * t, Tk, VKP_ATTN_DKV_BTHD);
    store_own(krow, dk[t], pc.scale);
    store_own(pc.B * pc.H * Tk * pc.D + krow, dv[t], 1.0);
  }
}
#endif
