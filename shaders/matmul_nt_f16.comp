#version 450
// matmul_nt_f16.comp — register-blocked matmul, layout NT, B stored as f16 (see matmul_tile.glsl).
#define MM_NT
#define MM_B16
#define TM 8
#define TP 2
#define UJ 2
#include "matmul_tile.glsl"
