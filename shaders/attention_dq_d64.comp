#version 450
// attention_dq_d64.comp — fused attention dq kernel for head dims up to 64 (see attention.glsl).
#define DV 64
#define ATTN_DQ
#include "attention.glsl"
