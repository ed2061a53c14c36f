#version 450
// unary_log.comp — log, forward and backward (unary.glsl).
#define VKP_UNARY_OP VKP_EW_LOG
#include "unary.glsl"
