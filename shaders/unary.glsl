#version 450
// unary.glsl — body of the unary kernels: activations and pointwise maps, forward (out = f(a))
// and backward (out = b * f'(a), b the upstream gradient). Operands are contiguous: a 1-D loop
// over one block per workgroup, on vec4s when VKP_EW_F_VEC4 (every address 16-byte aligned),
// else on floats. Each op has its own shader (a unary_<op> row of variants.cmake sets
// VKP_UNARY_OP): lavapipe runs a switch on a push constant as masked code for every case, so a
// generic kernel would pay for all of them.
#include "common.glsl"
#include "push/elementwise.h"
#include "elementwise_index.glsl"
layout(local_size_x = 256) in;

#ifndef VKP_UNARY_OP
#error "unary.glsl: define VKP_UNARY_OP"
#endif
#define OP VKP_UNARY_OP

const float SQRT_2_OVER_PI = 0.7978845608028654;
const float INV_SQRT_2 = 0.7071067811865476;

// erf as a rational function of x on [-4, 4] (erf(4) rounds to 1 in f32); max abs error 4.2e-7,
// no exp (the coefficients of Eigen's and XLA's float erf).
vec4 vkp_erf(vec4 x) {
  x = clamp(x, -4.0, 4.0);
  vec4 x2 = x * x;
  vec4 p = x2 * -2.72614225801306e-10 + 2.77068142495902e-08;
  p = x2 * p - 2.10102402082508e-06;
  p = x2 * p - 5.69250639462346e-05;
  p = x2 * p - 7.34990630326855e-04;
  p = x2 * p - 2.95459980854025e-03;
  p = x2 * p - 1.60960333262415e-02;
  vec4 q = x2 * -1.45660718464996e-05 - 2.13374055278905e-04;
  q = x2 * q - 1.68282697438203e-03;
  q = x2 * q - 7.37332916720468e-03;
  q = x2 * q - 1.42647390514189e-02;
  return x * p / q;
}

vec4 sigmoid(vec4 x) { return 1.0 / (1.0 + exp(-x)); }

vec4 forward_op(uint op, vec4 x) {
  switch (op) {
    case VKP_EW_SCALE: return pc.alpha * x + pc.beta;
    case VKP_EW_GELU_ERF: return 0.5 * x * (1.0 + vkp_erf(x * INV_SQRT_2));
    case VKP_EW_GELU_TANH: return 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
    case VKP_EW_SILU: return x * sigmoid(x);
    case VKP_EW_RELU: return max(x, 0.0);
    case VKP_EW_SIGMOID: return sigmoid(x);
    case VKP_EW_TANH: return tanh(x);
    case VKP_EW_EXP: return exp(x);
    case VKP_EW_LOG: return log(x);
    case VKP_EW_SQR: return x * x;
    default: return sqrt(x);
  }
}

vec4 derivative(uint op, vec4 x) {
  switch (op) {
    case VKP_EW_SCALE: return vec4(pc.alpha);
    case VKP_EW_GELU_ERF:
      return 0.5 * (1.0 + vkp_erf(x * INV_SQRT_2)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
    case VKP_EW_GELU_TANH: {
      vec4 u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
      vec4 th = tanh(u);
      return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case VKP_EW_SILU: { vec4 s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
    case VKP_EW_RELU: return vec4(greaterThan(x, vec4(0.0)));
    case VKP_EW_SIGMOID: { vec4 s = sigmoid(x); return s * (1.0 - s); }
    case VKP_EW_TANH: { vec4 t = tanh(x); return 1.0 - t * t; }
    case VKP_EW_EXP: return exp(x);
    case VKP_EW_LOG: return 1.0 / x;
    case VKP_EW_SQR: return 2.0 * x;
    default: return 0.5 / sqrt(x);
  }
}

void main() {
  const uint wg = gl_WorkGroupSize.x;
  uint first, end;
  bool backward = pc.op >= VKP_EW_BACKWARD;
  uint done = 0u;   // elements handled on vec4s
  if ((pc.flags & VKP_EW_F_VEC4) != 0u) {
    uint64_t a4 = uint64_t(pc.a), b4 = uint64_t(pc.b), d4 = uint64_t(pc.dst);
    uint nv = pc.n / 4u;
    vkp_block(nv, wg, pc.iters, first, end);
    if (backward)
      for (uint k = first; k < end; k += wg) vkp_store4(d4, k, vkp_load4(b4, k) * derivative(OP, vkp_load4(a4, k)));
    else
      for (uint k = first; k < end; k += wg) vkp_store4(d4, k, forward_op(OP, vkp_load4(a4, k)));
    done = 4u * nv;
    first = done + vkp_global_index();   // the n % 4 tail
    end = min(pc.n, done + 4u);
  } else {
    vkp_block(pc.n, wg, pc.iters, first, end);
  }
  if (backward)
    for (uint i = first; i < end; i += wg) pc.dst.v[i] = pc.b.v[i] * derivative(OP, vec4(pc.a.v[i])).x;
  else
    for (uint i = first; i < end; i += wg) pc.dst.v[i] = forward_op(OP, vec4(pc.a.v[i])).x;
}
