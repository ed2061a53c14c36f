#version 450
// attention_dkv_d64.comp — fused attention dkv kernel for head dims up to 64 (see attention.glsl).
#define DV 64
#define ATTN_DKV
#include "attention.glsl"
