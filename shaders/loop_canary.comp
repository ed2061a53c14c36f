#version 450
// loop_canary.comp — counts loop iterations in a single invocation (see push/loop_canary.h).
// A correct driver writes iterations (or iterations * inner); a capped one writes less.
#include "common.glsl"
#include "push/loop_canary.h"
layout(local_size_x = 1) in;

void main() {
  uint count = 0u;
  if (pc.inner == 0u) {
    for (uint i = 0u; i < pc.iterations; i++) count += pc.ones.v[i % pc.period];
  } else {
    for (uint i = 0u; i < pc.iterations; i++)
      for (uint j = 0u; j < pc.inner; j++) count += pc.ones.v[(i + j) % pc.period];
  }
  pc.dst.v[0] = count;
}
