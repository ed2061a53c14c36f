#version 450
// attention_fwd_d16.comp — fused attention fwd kernel for head dims up to 16 (see attention.glsl).
#define DV 16
#define ATTN_FWD
#include "attention.glsl"
