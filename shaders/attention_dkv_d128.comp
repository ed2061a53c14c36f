#version 450
// attention_dkv_d128.comp — fused attention dkv kernel for head dims up to 128 (see attention.glsl).
#define DV 128
#define ATTN_DKV
#include "attention.glsl"
