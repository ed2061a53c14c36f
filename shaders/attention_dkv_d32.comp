#version 450
// attention_dkv_d32.comp — fused attention dkv kernel for head dims up to 32 (see attention.glsl).
#define DV 32
#define ATTN_DKV
#include "attention.glsl"
