#version 450
// matmul_tn.comp — register-blocked f32 matmul, layout TN (see matmul_tile.glsl).
#define MM_TN
#define TM 8
#define TP 1
#define UJ 2
#include "matmul_tile.glsl"
