#version 450
// attention_dq_d160.comp — fused attention dq kernel for head dims up to 160 (see attention.glsl).
#define DV 160
#define ATTN_DQ
#include "attention.glsl"
