#version 450
// unary_gelu.comp — GELU, erf form, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_GELU_ERF
#include "unary.glsl"
