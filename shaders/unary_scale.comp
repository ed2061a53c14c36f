#version 450
// unary_scale.comp — alpha * a + beta, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_SCALE
#include "unary.glsl"
