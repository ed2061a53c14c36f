#version 450
// binary_mul.comp — binary.glsl for VKP_EW_MUL.
#define VKP_BINARY_OP VKP_EW_MUL
#include "binary.glsl"
