#version 450
// attention_fwd_d64.comp — fused attention fwd kernel for head dims up to 64 (see attention.glsl).
#define DV 64
#define ATTN_FWD
#include "attention.glsl"
