#version 450
// binary_sub.comp — binary.glsl for VKP_EW_SUB.
#define VKP_BINARY_OP VKP_EW_SUB
#include "binary.glsl"
