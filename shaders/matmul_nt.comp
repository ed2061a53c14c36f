#version 450
// matmul_nt.comp — register-blocked f32 matmul, layout NT (see matmul_tile.glsl).
#define MM_NT
#define TM 8
#define TP 2
#define UJ 2
#include "matmul_tile.glsl"
