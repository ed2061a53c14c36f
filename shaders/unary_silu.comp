#version 450
// unary_silu.comp — SiLU, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_SILU
#include "unary.glsl"
