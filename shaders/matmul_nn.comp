#version 450
// matmul_nn.comp — register-blocked f32 matmul, layout NN (see matmul_tile.glsl).
#define MM_NN
#define TM 8
#define TP 1
#define UJ 2
#include "matmul_tile.glsl"
