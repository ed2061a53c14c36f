#version 450
// attention_fwd_d32.comp — fused attention fwd kernel for head dims up to 32 (see attention.glsl).
#define DV 32
#define ATTN_FWD
#include "attention.glsl"
