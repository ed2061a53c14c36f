#version 450
// attention_dkv_d16.comp — fused attention dkv kernel for head dims up to 16 (see attention.glsl).
#define DV 16
#define ATTN_DKV
#include "attention.glsl"
