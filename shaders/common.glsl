// common.glsl — included first by every compute shader.
// Buffers are reached through buffer device addresses passed in push constants (see
// shaders/push/*.h, shared with C), so no descriptor sets exist anywhere in vkpeft.
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_control_flow_attributes : enable

#define VKP_GLSL 1
#define uint32_t uint
#define int32_t int
#define uint64_t uint64_t

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32Buf { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer I32Buf { int v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer U32Buf { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Vec4Buf { vec4 v[]; };

// Per-step values written by the host before each submit (vkp_step_scalars in vkp_graph.h).
layout(buffer_reference, std430, buffer_reference_align = 4) buffer StepScalars {
  float lr;
  float step;
  uint seed;
  uint apply_update;
  float loss_scale;
  float pad[11];
};

// Linear invocation index for 1-D work split over a 2-D grid of workgroups (vkp_rec_dispatch_1d).
// Macros, not functions: gl_WorkGroupSize is only known after the shader's own
// `layout(local_size_x = ...) in;`, which comes after this include (a function defined here
// would see (1,1,1) and silently drop the multiplication).
#define vkp_group_index() (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x)
#define vkp_global_index() (vkp_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x)
