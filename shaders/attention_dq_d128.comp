#version 450
// attention_dq_d128.comp — fused attention dq kernel for head dims up to 128 (see attention.glsl).
#define DV 128
#define ATTN_DQ
#include "attention.glsl"
