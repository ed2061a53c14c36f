// vkp_dtype.h — element types of tensors and files, and host-side conversions.
#ifndef VKP_DTYPE_H
#define VKP_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum vkp_dtype {
  VKP_DTYPE_F32 = 0,
  VKP_DTYPE_F16,
  VKP_DTYPE_BF16,
  VKP_DTYPE_I32,   // labels, token ids, indices
  VKP_DTYPE_F64,   // safetensors read only (converted on load)
  VKP_DTYPE_I64,   // safetensors read only
  VKP_DTYPE_I16,
  VKP_DTYPE_I8,
  VKP_DTYPE_U8,
  VKP_DTYPE_BOOL,
  VKP_DTYPE_COUNT
} vkp_dtype;

// Bytes per element.
size_t vkp_dtype_size(vkp_dtype dt);
// Name as used by safetensors: "F32", "F16", "BF16", "I32", ...
const char *vkp_dtype_name(vkp_dtype dt);
// Parses a safetensors dtype name; returns 0 and sets *out, or -1 if unknown.
int vkp_dtype_parse(const char *name, vkp_dtype *out);

// IEEE half / bfloat16 conversions (round to nearest even).
uint16_t vkp_f32_to_f16(float f);
float vkp_f16_to_f32(uint16_t h);
uint16_t vkp_f32_to_bf16(float f);
float vkp_bf16_to_f32(uint16_t b);

// True for the dtypes weights are stored in (F32, F16, BF16).
bool vkp_dtype_is_weight(vkp_dtype dt);
// Writes a shape as "(d0, d1, ...)" ("()" for a scalar; a negative dim, meaning "any", as "*")
// into out and returns out.
const char *vkp_shape_text(int ndim, const int64_t *shape, char *out, size_t cap);

// Converts n elements of any numeric dtype to f32 (src and dst must not overlap).
void vkp_convert_to_f32(vkp_dtype src_dt, const void *src, float *dst, size_t n);
// Converts n f32 values to dst_dt (F32, F16, BF16 or I32 with rounding).
void vkp_convert_from_f32(vkp_dtype dst_dt, const float *src, void *dst, size_t n);

#endif
