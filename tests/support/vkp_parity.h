// vkp_parity.h — helpers of the parity tests against the reference fixtures (../shared/fixtures):
// reading fixture tensors, the relative error they are judged by, and undoing the optimizer step
// that the fixture adapter files already contain.
#ifndef VKP_PARITY_H
#define VKP_PARITY_H

#include <stddef.h>

#include "vkp_model.h"
#include "vkp_safetensors.h"

// max |got - want| / max |want| over the tensor (NaN in got gives NaN).
double vkp_rel_err(const float *got, const float *want, size_t n);
// Tensor `name` of st converted to f32 (caller frees); fails the test when it is missing.
float *vkp_fixture_tensor(vkp_safetensors *st, const char *name, size_t *n);
// Prints "what: rel err" and fails the test when vkp_rel_err(got, want) is not below tol.
void vkp_check_rel(const char *what, const float *got, const float *want, size_t n, double tol);

// The fixture adapter files hold the trainable parameters after one torch AdamW step, while the
// outputs and `grad/<peft name>` of io were computed before it. AdamW's first step (m̂ = g, v̂ = g²)
// inverts exactly: p0 = (p1 + lr · g / (|g| + eps)) / (1 - lr · wd). Applied to every trainable
// parameter of m in place.
void vkp_undo_adamw_step(vkp_model *m, vkp_safetensors *io, double lr, double wd, double eps);

#endif
