#version 450
#define MM_NN
#define TM 16
#define TP 2
#define UJ 4
#include "matmul_tile.glsl"
