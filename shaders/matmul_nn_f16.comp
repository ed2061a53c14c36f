#version 450
// matmul_nn_f16.comp — register-blocked matmul, layout NN, B stored as f16 (see matmul_tile.glsl).
#define MM_NN
#define MM_B16
#define TM 8
#define TP 1
#define UJ 2
#include "matmul_tile.glsl"
