#version 450
// unary_relu.comp — ReLU, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_RELU
#include "unary.glsl"
