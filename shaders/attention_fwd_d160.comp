#version 450
// attention_fwd_d160.comp — fused attention fwd kernel for head dims up to 160 (see attention.glsl).
#define DV 160
#define ATTN_FWD
#include "attention.glsl"
