#version 450
// unary_gelu_tanh.comp — GELU, tanh approximation, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_GELU_TANH
#include "unary.glsl"
