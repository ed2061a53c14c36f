#version 450
// unary_sqr.comp — square, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_SQR
#include "unary.glsl"
