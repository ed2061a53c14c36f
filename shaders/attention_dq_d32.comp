#version 450
// attention_dq_d32.comp — fused attention dq kernel for head dims up to 32 (see attention.glsl).
#define DV 32
#define ATTN_DQ
#include "attention.glsl"
