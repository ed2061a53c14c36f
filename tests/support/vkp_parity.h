// vkp_parity.h — helpers of the parity tests against the reference fixtures (../shared/fixtures):
// reading fixture tensors, the relative error they are judged by, and undoing the optimizer step
// that the fixture adapter files already contain.
#ifndef VKP_PARITY_H
#define VKP_PARITY_H

#include <stddef.h>

#include "vkp_graph.h"
#include "vkp_model.h"
#include "vkp_optim.h"
#include "vkp_safetensors.h"

// Graph output t read back as f32 (caller frees); fails the test when t is NULL or the read fails.
float *vkp_parity_read(vkp_graph *g, const vkp_tensor *t);
// Compares graph output t with fixture tensor `name` of io (vkp_check_rel, reported as label + name;
// label may be ""); fails the test when the element counts differ.
void vkp_check_output(vkp_graph *g, const vkp_tensor *t, vkp_safetensors *io, const char *label, const char *name, double tol);

// The fixture config file `from` with `key` set to the JSON text `value` (NULL: removed) written as
// dir/config.json; its path into path. Fails the test on any error.
void vkp_fixture_config_edit(const char *from, const char *key, const char *value, const char *dir, char *path, size_t cap);
// After loading such a config: fails unless st is `want` and, for an error, err's message names the
// file and the key (printed).
void vkp_expect_config_status(vkp_status st, vkp_status want, const vkp_error *err, const char *path, const char *key,
                              const char *value);

// A checkpoint loaded with 16-bit weights: fails unless every parameter of m with two or more
// dimensions is stored as `half` and every other one as f32; returns how many are `half`.
int vkp_expect_half_weights(const vkp_model *m, vkp_dtype half);

// One torch.optim.AdamW step (lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight decay 0.01) over the
// nt trainable parameters tp, appended to g after its outputs, g compiled and its step scalars set
// (the caller sets the inputs and runs it). Returns the optimizer; *ps its parameter set (caller
// frees both: vkp_optimizer_free, then vkp_param_set_free).
vkp_optimizer *vkp_parity_adamw_step(vkp_graph *g, vkp_param **tp, int nt, vkp_tensor **grads, vkp_param_set **ps);

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
