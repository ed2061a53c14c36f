#version 450
// attention_fwd_d128.comp — fused attention fwd kernel for head dims up to 128 (see attention.glsl).
#define DV 128
#define ATTN_FWD
#include "attention.glsl"
