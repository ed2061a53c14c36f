#version 450
// unary_sqrt.comp — square root, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_SQRT
#include "unary.glsl"
