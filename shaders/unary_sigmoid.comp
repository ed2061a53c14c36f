#version 450
// unary_sigmoid.comp — sigmoid, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_SIGMOID
#include "unary.glsl"
