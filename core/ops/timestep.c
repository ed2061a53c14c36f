// timestep.c — sinusoidal timestep embedding, as diffusers' get_timestep_embedding(timesteps,
// embedding_dim, flip_sin_to_cos, downscale_freq_shift, scale=1, max_period).
#include <math.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/timestep.h"

// params: i[0] dim, i[1] flip, f[2] downscale_freq_shift, f[3] max_period
static vkp_status timestep_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_timestep pc = {0};
  pc.t = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.dim = t->params.i[0];
  pc.half_dim = pc.dim / 2;
  pc.flip = (uint32_t)t->params.i[1];
  pc.neg_log_period = -logf(t->params.f[3]);
  pc.denom = (float)pc.half_dim - t->params.f[2];
  return vkp_rec_dispatch_1d(rec, "timestep_embedding", &pc, sizeof pc, pc.n, 256);
}

static void timestep_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  (void)g, (void)t, (void)grad;   // timesteps are data, never trained: no gradient flows to t
}
static const vkp_op_def op_timestep = {
    .name = "timestep_embedding", .record = timestep_record, .backward = timestep_backward};

vkp_tensor *vkp_timestep_embedding(vkp_graph *g, vkp_tensor *t, int dim, bool flip_sin_to_cos,
                                   float downscale_freq_shift, float max_period) {
  if (!t) return NULL;
  if (t->ndim != 1 || t->dtype != VKP_DTYPE_F32) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "timestep_embedding: '%s' must be a 1-D f32 tensor (N)", t->name);
    return NULL;
  }
  if (dim < 2 || !(max_period > 0.0f) || !((float)(dim / 2) - downscale_freq_shift != 0.0f)) {
    vkp_graph_fail(g, VKP_ERR_INVALID,
                   "timestep_embedding of '%s': dim %d, max_period %g, downscale_freq_shift %g are invalid", t->name,
                   dim, (double)max_period, (double)downscale_freq_shift);
    return NULL;
  }
  t = vkp_contiguous(g, t);
  vkp_tensor *e = vkp_node_new(g, &op_timestep, VKP_DTYPE_F32, 2, (int64_t[]){t ? t->shape[0] : 1, dim}, &t, 1);
  if (!e) return NULL;
  e->params.i[0] = dim;
  e->params.i[1] = flip_sin_to_cos ? 1 : 0;
  e->params.f[2] = downscale_freq_shift;
  e->params.f[3] = max_period;
  return e;
}
