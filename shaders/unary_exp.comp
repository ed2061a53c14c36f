#version 450
// unary_exp.comp — exp, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_EXP
#include "unary.glsl"
