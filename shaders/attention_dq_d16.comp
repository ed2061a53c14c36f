#version 450
// attention_dq_d16.comp — fused attention dq kernel for head dims up to 16 (see attention.glsl).
#define DV 16
#define ATTN_DQ
#include "attention.glsl"
