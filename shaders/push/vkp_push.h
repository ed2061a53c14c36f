// vkp_push.h — macros that let one header declare a push-constant block for both C and GLSL.
// Each shaders/push/<family>.h declares exactly one block (GLSL allows one per shader).
// Pointers are buffer device addresses: uint64_t in C, a buffer_reference type in GLSL.
#ifndef VKP_PUSH_H
#define VKP_PUSH_H
#ifdef VKP_GLSL
#define VKP_PTR(T) T
#define VKP_PUSH(name) layout(push_constant, std430) uniform name##_block
#define VKP_PUSH_END(name) pc
#define VKP_PUSH_CHECK(name, bytes)
#else
#include <stdint.h>
#define VKP_PTR(T) uint64_t
#define VKP_PUSH(name) typedef struct name
#define VKP_PUSH_END(name) name
#define VKP_PUSH_CHECK(name, bytes) _Static_assert(sizeof(name) == (bytes), #name " size must match GLSL std430");
#endif
#endif
