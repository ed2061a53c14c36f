#version 450
// binary_div.comp — binary.glsl for VKP_EW_DIV.
#define VKP_BINARY_OP VKP_EW_DIV
#include "binary.glsl"
