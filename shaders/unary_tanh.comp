#version 450
// unary_tanh.comp — tanh, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_TANH
#include "unary.glsl"
