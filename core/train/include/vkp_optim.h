// vkp_optim.h — parameter sets, optimizers (AdamW, SGD), gradient clipping, LR schedules.
//
// A training step is one recorded graph: forward, backward, then the optimizer's nodes. The
// optimizer keeps, for each *trainable* parameter only, a persistent gradient buffer and its state
// (AdamW: exp_avg m and exp_avg_sq v; SGD: the momentum buffer), all f32 and zero at creation.
// Frozen parameters (the PEFT base model) cost nothing here.
//
//   vkp_param_set *ps; vkp_param_set_new(ctx, &ps);
//   vkp_param_set_add(ps, "fc.weight", buf, 0, VKP_DTYPE_F32, 2, shape, true, NULL);  // or _create
//   vkp_optim_config cfg = vkp_adamw_config(0.01);  cfg.max_grad_norm = 1.0;
//   vkp_optimizer *opt; vkp_optimizer_new(ps, &cfg, &opt);
//   // per graph (one per batch shape):
//   for i: t[i] = vkp_param_set_tensor(ps, g, i); train[i] = trainable(i) ? t[i] : NULL;
//   loss = model(g, t, ...); vkp_graph_output(g, loss);          // every forward output first
//   vkp_graph_backward(g, loss, train, n, grads);
//   vkp_tensor *gnorm = vkp_optimizer_append(opt, g, grads);     // readable: the gradient norm
//   vkp_graph_compile(g);
//   // per micro-batch:
//   vkp_step_scalars s = {.loss_scale = 1};
//   vkp_optimizer_prepare_step(opt, vkp_lr_at(&sched, vkp_optimizer_steps(opt)), last_micro_batch, &s);
//   vkp_graph_set_scalars(g, &s); vkp_graph_set_input(...); vkp_graph_run(g);
//
// What vkp_optimizer_append adds, in execution order:
//   1. vkp_accumulate(grad_buffer[i], grads[i]) for every trainable parameter with a gradient:
//      gradients add up over micro-batches until an update is applied;
//   2. only when vkp_step_scalars.apply_update == 1 (read on the device, so the same recorded
//      graph serves accumulation steps and update steps):
//      a. the global L2 norm of all accumulated gradients (one dispatch for partial sums of
//         squares over all parameters, one for the total), a graph output;
//      b. the update of every parameter (one dispatch for all of them): the gradient is scaled by
//         the clip coefficient min(1, max_grad_norm / (norm + 1e-6)) when max_grad_norm > 0
//         (torch.nn.utils.clip_grad_norm_), then AdamW or SGD exactly as torch.optim does, with
//         lr and the step count t read from vkp_step_scalars, then the gradient buffer is zeroed.
// A trainable parameter whose entry in grads[] is NULL (the loss does not depend on it in this
// graph) is left alone by this graph, as torch skips parameters whose .grad is None.
//
// Ordering: nodes run in the order their roots are expanded (vkp_graph.h). Expand every forward
// output (loss, logits, metrics) before calling vkp_optimizer_append, or it may be computed from
// the updated parameters. Graphs using an optimizer must be freed before the optimizer.
#ifndef VKP_OPTIM_H
#define VKP_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "vkp_graph.h"

// ---- parameter sets ---------------------------------------------------------------------------

// An ordered list of named parameters, each a region of a persistent vkp_buffer. The order is the
// index used by vkp_optimizer_append's grads[] and by the accessors below.
typedef struct vkp_param_set vkp_param_set;

typedef struct vkp_param_info {
  const char *name;              // owned by the set
  int ndim;
  int64_t shape[VKP_MAX_DIMS];
  vkp_dtype dtype;               // f32 when trainable; frozen parameters may be f16/bf16
  vkp_buffer *buffer;            // the value (owned by the set only if made by vkp_param_set_create)
  uint64_t byte_offset;
  bool trainable;
} vkp_param_info;

vkp_status vkp_param_set_new(vkp_ctx *ctx, vkp_param_set **out);
// Frees the set and the buffers it created (not those registered with vkp_param_set_add).
void vkp_param_set_free(vkp_param_set *ps);
// Registers an existing buffer region as a parameter (not owned: e.g. a vkp_model parameter).
// Trainable parameters must be f32. Errors: VKP_ERR_INVALID (duplicate or empty name, region
// outside the buffer, trainable but not f32, bad shape). *index (may be NULL) gets its index.
vkp_status vkp_param_set_add(vkp_param_set *ps, const char *name, vkp_buffer *buf, uint64_t byte_offset,
                             vkp_dtype dtype, int ndim, const int64_t *shape, bool trainable, int *index);
// Creates an f32 parameter in a new buffer owned by the set, with `init` (numel floats) or zeros.
vkp_status vkp_param_set_create(vkp_param_set *ps, const char *name, int ndim, const int64_t *shape, bool trainable,
                                const float *init, int *index);
int vkp_param_set_count(const vkp_param_set *ps);
const vkp_param_info *vkp_param_set_get(const vkp_param_set *ps, int i);   // NULL if out of range
int vkp_param_set_find(const vkp_param_set *ps, const char *name);        // index, or -1
// The parameter as an external tensor of g (named after it). Call once per parameter and graph.
vkp_tensor *vkp_param_set_tensor(vkp_param_set *ps, vkp_graph *g, int i);
// Host copies of a parameter's value (f32 parameters; n = numel).
vkp_status vkp_param_set_write(vkp_param_set *ps, int i, const float *data, int64_t n);
vkp_status vkp_param_set_read(vkp_param_set *ps, int i, float *data, int64_t n);

// ---- optimizers -------------------------------------------------------------------------------

typedef enum vkp_optim_kind { VKP_OPTIM_ADAMW = 0, VKP_OPTIM_SGD } vkp_optim_kind;

typedef struct vkp_optim_config {
  // Doubles, like torch's Python floats: derived constants (1 - beta, log beta) are computed in
  // double on the host and handed to the device as f32.
  vkp_optim_kind kind;
  double weight_decay;   // AdamW: decoupled (p -= lr * wd * p); SGD: L2 (g += wd * p)
  double beta1, beta2;   // AdamW (torch defaults 0.9, 0.999)
  double eps;            // AdamW (1e-8)
  double momentum;       // SGD (0 = plain SGD)
  double dampening;      // SGD
  bool nesterov;         // SGD (needs momentum > 0 and dampening 0, as in torch)
  double max_grad_norm;  // > 0: clip the global L2 norm of all gradients to this; 0: no clipping
  int state_bits;        // AdamW: 32 (or 0) f32 m and v; 8: block-wise 8-bit m and v for every
                         // parameter of at least VKP_OPTIM_8BIT_MIN elements (bitsandbytes'
                         // AdamW8bit: 256-element blocks, dynamic maps, min_8bit_size 4096)
} vkp_optim_config;

// Parameters smaller than this keep f32 state under state_bits 8 (bitsandbytes' min_8bit_size).
#define VKP_OPTIM_8BIT_MIN 4096
// Elements per quantisation block (one absmax each) of 8-bit state.
#define VKP_OPTIM_8BIT_BLOCK 256

// torch.optim.AdamW defaults with the given weight decay (torch's default is 0.01).
vkp_optim_config vkp_adamw_config(double weight_decay);
// torch.optim.SGD with momentum (dampening 0).
vkp_optim_config vkp_sgd_config(double momentum, bool nesterov, double weight_decay);
// "adamw" / "sgd".
const char *vkp_optim_kind_name(vkp_optim_kind k);
vkp_status vkp_optim_kind_parse(const char *name, vkp_optim_kind *out);
// An optimizer name as configs spell it: "adamw", "adamw8bit" (AdamW, state_bits 8), "sgd".
// Sets kind and state_bits of *cfg; VKP_ERR_INVALID for anything else.
vkp_status vkp_optim_name_parse(const char *name, vkp_optim_config *cfg);
// True for the names of AdamW's state options, "adamw" and "adamw8bit" (what the benchmarks'
// --optimizer accepts).
bool vkp_optim_name_is_adamw(const char *name);
// The name of a configuration ("adamw", "adamw8bit", "sgd").
const char *vkp_optim_config_name(const vkp_optim_config *cfg);
// The 512 values of the 8-bit state's code book: bitsandbytes' signed dynamic map (m), then its
// unsigned one (v), each ascending (create_dynamic_map(signed, 7, 8), rounded to f32).
void vkp_optim_qmaps(float out[512]);

typedef struct vkp_optimizer vkp_optimizer;

// Creates an optimizer over the parameters of ps (which must outlive it; parameters added to ps
// later are not seen). Allocates zeroed gradient and state buffers for the trainable ones.
// Errors: VKP_ERR_INVALID (hyper-parameters out of the ranges torch accepts),
// VKP_ERR_OOM. Messages go to the context (vkp_ctx_error).
vkp_status vkp_optimizer_new(vkp_param_set *ps, const vkp_optim_config *cfg, vkp_optimizer **out);
void vkp_optimizer_free(vkp_optimizer *opt);

const vkp_optim_config *vkp_optimizer_config(const vkp_optimizer *opt);
// Changes hyper-parameters; takes effect at the next run, also in graphs already recorded.
// The kind cannot change (VKP_ERR_INVALID).
vkp_status vkp_optimizer_set_config(vkp_optimizer *opt, const vkp_optim_config *cfg);

// Appends the accumulation, norm and update nodes described above to g. grads[i] is the gradient
// of parameter i of the set (as returned by vkp_graph_backward; NULL entries and frozen parameters
// are skipped). Returns the global gradient norm, a [1] graph output (valid after a run with
// apply_update == 1: the norm of the accumulated gradients before clipping; an accumulation-only
// run leaves the previous value), or NULL after recording an error on the graph.
vkp_tensor *vkp_optimizer_append(vkp_optimizer *opt, vkp_graph *g, vkp_tensor *const *grads);

// Host-side step counter: the number of updates applied so far (torch's state["step"]).
int64_t vkp_optimizer_steps(const vkp_optimizer *opt);
void vkp_optimizer_set_steps(vkp_optimizer *opt, int64_t steps);
// Fills the optimizer's fields of *s for the next run: lr, step = steps + 1 (the 1-based t of
// the update this run applies) and apply_update. When apply_update is true the counter advances:
// call it once per run, right before running.
void vkp_optimizer_prepare_step(vkp_optimizer *opt, float lr, bool apply_update, vkp_step_scalars *s);

// Zeroes every gradient buffer (e.g. to drop a partly accumulated step).
vkp_status vkp_optimizer_zero_grad(vkp_optimizer *opt);
// Buffers of parameter i (NULL for frozen parameters or an out-of-range i), owned by the
// optimizer: the accumulated gradient, and state 0 (AdamW m, SGD momentum) / 1 (AdamW v).
// An 8-bit parameter's states are its codes (one byte per element, 4 per uint32); its absmax per
// block is vkp_optimizer_absmax (NULL for f32 state).
vkp_buffer *vkp_optimizer_grad(const vkp_optimizer *opt, int i);
vkp_buffer *vkp_optimizer_state(const vkp_optimizer *opt, int i, int which);
vkp_buffer *vkp_optimizer_absmax(const vkp_optimizer *opt, int i, int which);
// Device bytes of the optimizer state (gradients excluded), for memory reports.
uint64_t vkp_optimizer_state_bytes(const vkp_optimizer *opt);

// Saves the state (m, v or momentum per trainable parameter, the step count and the
// configuration) as safetensors, atomically: tensors "<param name>.exp_avg", ".exp_avg_sq"
// (AdamW) or ".momentum_buffer" (SGD) — for 8-bit parameters ".state1", ".state2" (U8 codes, the
// parameter's shape) and ".absmax1", ".absmax2" (F32 per block), as bitsandbytes names them —
// metadata "format" = "vkpeft-optimizer", "optimizer", "step", "state_bits" and every
// hyper-parameter.
vkp_status vkp_optimizer_save(vkp_optimizer *opt, const char *path);
// Restores what save wrote, like torch's load_state_dict: state, step count and hyper-parameters.
// Everything is checked before anything changes: the optimizer kind (VKP_ERR_INVALID), a state
// tensor for every trainable parameter (VKP_ERR_NOT_FOUND) of the right shape (VKP_ERR_SHAPE),
// and no state for parameters this optimizer does not train (VKP_ERR_INVALID); file errors are
// VKP_ERR_IO / VKP_ERR_FORMAT. On error the optimizer is unchanged.
vkp_status vkp_optimizer_load(vkp_optimizer *opt, const char *path);

// ---- learning-rate schedules (host side, core/lr_schedule.c) -----------------------------------

typedef enum vkp_lr_kind { VKP_LR_CONSTANT = 0, VKP_LR_LINEAR, VKP_LR_COSINE } vkp_lr_kind;

// Factor f(step) times base_lr, with `step` the number of updates already applied (0 for the
// first update, i.e. vkp_optimizer_steps() before the update), exactly as transformers'
// LambdaLR schedules (W = warmup_steps, N = total_steps):
//   warmup (all kinds):  step < W:  f = step / max(1, W)
//   constant:            f = 1                      (get_constant_schedule_with_warmup)
//   linear:              f = max(0, (N - step) / max(1, N - W))
//                                                   (get_linear_schedule_with_warmup)
//   cosine:              p = (step - W) / max(1, N - W)
//                        f = max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * p)))
//                                                   (get_cosine_schedule_with_warmup)
// Note that with W > 0 the first update has lr 0, as with the transformers Trainer.
typedef struct vkp_lr_schedule {
  vkp_lr_kind kind;
  float base_lr;
  int64_t warmup_steps;   // W
  int64_t total_steps;    // N (linear, cosine)
  float num_cycles;       // cosine: number of cosine periods over N - W steps (0.5: one half-wave down to 0)
} vkp_lr_schedule;

vkp_lr_schedule vkp_lr_constant(float base_lr, int64_t warmup_steps);
vkp_lr_schedule vkp_lr_linear(float base_lr, int64_t warmup_steps, int64_t total_steps);
vkp_lr_schedule vkp_lr_cosine(float base_lr, int64_t warmup_steps, int64_t total_steps);   // num_cycles 0.5
float vkp_lr_at(const vkp_lr_schedule *s, int64_t step);
// "constant", "linear", "cosine" (also transformers' "constant_with_warmup").
const char *vkp_lr_kind_name(vkp_lr_kind k);
vkp_status vkp_lr_kind_parse(const char *name, vkp_lr_kind *out);

#endif
