#version 450
#define MM_NN
#define TM 24
#define TP 2
#define UJ 8
#include "matmul_tile.glsl"
