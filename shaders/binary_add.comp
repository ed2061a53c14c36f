#version 450
// binary_add.comp — binary.glsl for VKP_EW_ADD.
#define VKP_BINARY_OP VKP_EW_ADD
#include "binary.glsl"
