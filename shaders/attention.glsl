// attention.glsl — bodies of the fused attention kernels. Each attention_<kernel>_d<DV>.comp
// defines DV (head-dim capacity: 16, 32, 64 or 128; the host picks the smallest DV >= D) and one
// of ATTN_FWD, ATTN_DQ, ATTN_DKV, then includes this file.
//
// Layout (chosen for lavapipe, fine on GPUs): one invocation owns one row — a query row (forward,
// dQ) or a key row (dK/dV) — and keeps that row's operands and accumulators in registers
// (vec4[DV/4] each). The other side streams past in a loop whose row index is the same for every
// invocation, so its loads have uniform addresses: a scalar load + broadcast on lavapipe (a
// per-lane address costs an 8-lane gather there), a broadcast read on GPUs. No shared memory, no
// barriers. Softmax is online over blocks of KB keys (forward) or recomputed from the saved
// logsumexp (backward), so no (Tq, Tk) matrix is ever stored.
#include "common.glsl"
#include "push/attention.h"
layout(local_size_x = 64) in;

#define ROWS 64   // rows per workgroup = local size
#define D4 (DV / 4)
#define KB 4      // keys per online-softmax step (forward)
#define NEG_INF (-uintBitsToFloat(0x7f800000u))
#define POS_INF uintBitsToFloat(0x7f800000u)

// A row read by this invocation only (per-lane addresses): zeros past D.
void load_row(F32Buf buf, int base, out vec4 r[D4]) {
  [[unroll]] for (int c4 = 0; c4 < D4; c4++)
    [[unroll]] for (int e = 0; e < 4; e++) {
      int c = 4 * c4 + e;
      r[c4][e] = c < pc.D ? buf.v[base + c] : 0.0;
    }
}

// Four elements of a row every invocation reads (uniform address). Columns past D repeat the
// last element instead of branching: they only ever meet zeros (the padded register rows) or feed
// accumulators that are never stored.
vec4 urow4(F32Buf buf, int base, int c4) {
  int c = 4 * c4, last = pc.D - 1;
  return vec4(buf.v[base + min(c, last)], buf.v[base + min(c + 1, last)], buf.v[base + min(c + 2, last)],
              buf.v[base + min(c + 3, last)]);
}

float dot_row(vec4 r[D4], F32Buf buf, int base) {
  vec4 d = vec4(0.0);
  [[unroll]] for (int c4 = 0; c4 < D4; c4++) d = fma(r[c4], urow4(buf, base, c4), d);
  return (d.x + d.y) + (d.z + d.w);
}

// Offset of mask row (b, row) (row ignored for a (Bm, 1, 1, Tk) mask).
int mask_row(int b, int row) {
  bool rows = (pc.flags & VKP_ATTN_MASK_ROWS) != 0u;
  int mb = (pc.flags & VKP_ATTN_MASK_BCAST) != 0u ? 0 : b;
  return mb * (rows ? pc.Tq * pc.Tk : pc.Tk) + (rows ? row * pc.Tk : 0);
}

void store_row(int base, vec4 r[D4], float scale) {
  [[unroll]] for (int c4 = 0; c4 < D4; c4++)
    [[unroll]] for (int e = 0; e < 4; e++)
      if (4 * c4 + e < pc.D) pc.dst.v[base + 4 * c4 + e] = r[c4][e] * scale;
}

#ifdef ATTN_FWD
// Forward: invocation = query row i. Writes O and lse = m + log(l) (+inf when every key of the
// row is masked: its output is zeros and the backward then sees P = 0).
void main() {
  int Tq = pc.Tq, Tk = pc.Tk;
  int h = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
  int q0 = int(gl_WorkGroupID.x) * ROWS;
  int i = q0 + int(gl_LocalInvocationID.x), ic = min(i, Tq - 1);
  vec4 q[D4];
  load_row(pc.q, b * pc.q_stride[0] + h * pc.q_stride[1] + ic * pc.q_stride[2], q);
  [[unroll]] for (int c4 = 0; c4 < D4; c4++) q[c4] *= pc.scale;
  int kbase = b * pc.k_stride[0] + h * pc.k_stride[1];
  int vbase = b * pc.v_stride[0] + h * pc.v_stride[1];
  bool causal = (pc.flags & VKP_ATTN_CAUSAL) != 0u;
  bool has_mask = uint64_t(pc.mask) != 0ul;
  int mrow = mask_row(b, ic);
  int kend = causal ? min(Tk, q0 + ROWS) : Tk;   // later keys are invisible to the whole block

  float m = NEG_INF, l = 0.0;
  vec4 o[D4];
  [[unroll]] for (int c4 = 0; c4 < D4; c4++) o[c4] = vec4(0.0);
  [[dont_unroll]] for (int kb = 0; kb < kend; kb += KB) {
    float s[KB];
    [[unroll]] for (int u = 0; u < KB; u++) {
      int key = kb + u, kc = min(key, Tk - 1);
      float sv = dot_row(q, pc.k, kbase + kc * pc.k_stride[2]);
      if (has_mask) sv += pc.mask.v[mrow + kc];
      s[u] = (key < Tk && !(causal && key > i)) ? sv : NEG_INF;
    }
    float mnew = max(max(m, max(s[0], s[1])), max(s[2], s[3]));
    float msafe = mnew == NEG_INF ? 0.0 : mnew;   // nothing visible yet: keep the zero state
    float alpha = exp(m - msafe);
    float p[KB];
    [[unroll]] for (int u = 0; u < KB; u++) p[u] = exp(s[u] - msafe);
    l = fma(l, alpha, (p[0] + p[1]) + (p[2] + p[3]));
    [[unroll]] for (int c4 = 0; c4 < D4; c4++) {
      vec4 acc = o[c4] * alpha;
      [[unroll]] for (int u = 0; u < KB; u++)
        acc = fma(vec4(p[u]), urow4(pc.v, vbase + min(kb + u, Tk - 1) * pc.v_stride[2], c4), acc);
      o[c4] = acc;
    }
    m = mnew;
  }
  if (i >= Tq) return;
  int row = (b * pc.H + h) * Tq + i;
  store_row(row * pc.D, o, l > 0.0 ? 1.0 / l : 0.0);
  pc.lse.v[row] = l > 0.0 ? m + log(l) : POS_INF;
}
#endif
