#version 450
#define MM_NN
#define TM 16
#define TP 3
#define UJ 8
#include "matmul_tile.glsl"
