#version 450
// unary.comp — activations and pointwise maps, forward (out = f(a)) and backward
// (out = b * f'(a), b the upstream gradient). Inputs are contiguous.
#include "common.glsl"
#include "push/elementwise.h"
layout(local_size_x = 256) in;

const float SQRT_2_OVER_PI = 0.7978845608028654;
const float INV_SQRT_2 = 0.7071067811865476;

// erf with max abs error 1.2e-7 (Numerical Recipes erfc, Chebyshev fit).
float vkp_erf(float x) {
  float z = abs(x);
  float t = 1.0 / (1.0 + 0.5 * z);
  float r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
            t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0.0 ? 1.0 - r : r - 1.0;
}

float sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }

float forward_op(uint op, float x) {
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

float derivative(uint op, float x) {
  switch (op) {
    case VKP_EW_SCALE: return pc.alpha;
    case VKP_EW_GELU_ERF:
      return 0.5 * (1.0 + vkp_erf(x * INV_SQRT_2)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
    case VKP_EW_GELU_TANH: {
      float u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
      float th = tanh(u);
      return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case VKP_EW_SILU: { float s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
    case VKP_EW_RELU: return x > 0.0 ? 1.0 : 0.0;
    case VKP_EW_SIGMOID: { float s = sigmoid(x); return s * (1.0 - s); }
    case VKP_EW_TANH: { float t = tanh(x); return 1.0 - t * t; }
    case VKP_EW_EXP: return exp(x);
    case VKP_EW_LOG: return 1.0 / x;
    case VKP_EW_SQR: return 2.0 * x;
    default: return 0.5 / sqrt(x);
  }
}

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  float x = pc.a.v[i];
  if (pc.op >= VKP_EW_BACKWARD) pc.dst.v[i] = pc.b.v[i] * derivative(pc.op - VKP_EW_BACKWARD, x);
  else pc.dst.v[i] = forward_op(pc.op, x);
}
