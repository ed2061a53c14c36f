#version 450
// attention_dkv_d160.comp — fused attention dkv kernel for head dims up to 160 (see attention.glsl).
#define DV 160
#define ATTN_DKV
#include "attention.glsl"
