// Push constants of loop_canary.comp (tests/core/test_device.c): one invocation runs a long loop
// whose trip count the compiler cannot know, to catch drivers that cap loop iterations
// (Mesa 22's lavapipe silently stops after 65,535 iterations per invocation).
#include "vkp_push.h"

VKP_PUSH(vkp_pc_loop_canary) {
  VKP_PTR(U32Buf) ones;    // ones.v[i % period] == 1 (loaded each iteration: the loop cannot be folded)
  VKP_PTR(U32Buf) dst;     // dst.v[0] = iterations executed
  uint32_t iterations;     // single loop: total trip count; nested: outer trip count
  uint32_t inner;          // 0: one loop; > 0: nested loops, `inner` iterations per outer one
  uint32_t period;         // length of `ones`
  uint32_t pad;
} VKP_PUSH_END(vkp_pc_loop_canary);
VKP_PUSH_CHECK(vkp_pc_loop_canary, 32)
