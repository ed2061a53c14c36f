// elementwise.c — broadcasting binary ops, pointwise unary maps, fill, in-place accumulate.
#include <string.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/elementwise.h"

// copy.c: the launch of every kernel of the family (one block of items per workgroup) and a
// strided copy of src into the view dst_view at dst_addr.
vkp_status vkp_ew_dispatch(vkp_recorder *rec, const char *shader, const vkp_pc_elementwise *pc);
vkp_status vkp_ew_record_copy(vkp_recorder *rec, const vkp_tensor *src, uint64_t dst_addr,
                              const vkp_tensor *dst_view);

// Strides of x broadcast against an output of t_ndim dims (right-aligned; 0 on size-1 dims).
static void bcast_strides(const vkp_tensor *x, int t_ndim, int64_t st[4]) {
  for (int d = 0; d < t_ndim; d++) {
    int xd = d - (t_ndim - x->ndim);
    st[d] = xd < 0 || x->shape[xd] == 1 ? 0 : x->stride[xd];
  }
}

// ---- binary ---------------------------------------------------------------------------------

// One shader per op (binary.glsl): a switch on a push constant would run every case on lavapipe.
static const char *const binary_shaders[] = {"binary_add", "binary_sub", "binary_mul", "binary_div"};

// params.i[0] op (VKP_EW_*), i[8] = 1 once an add is folded into a product (binary_fold).
static vkp_status binary_record(vkp_recorder *rec, const vkp_tensor *t) {
  if (t->params.i[8]) return VKP_OK;
  vkp_pc_elementwise pc = {0};
  pc.a = vkp_rec_addr(rec, t->src[0]);
  pc.b = vkp_rec_addr(rec, t->src[1]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.op = (uint32_t)t->params.i[0];
  int64_t st[2][4];
  int32_t cst[2][4];
  bcast_strides(t->src[0], t->ndim, st[0]);
  bcast_strides(t->src[1], t->ndim, st[1]);
  vkp_ew_collapse(t->ndim, t->shape, 2, (const int64_t(*)[4])st, pc.shape, cst);
  memcpy(pc.a_stride, cst[0], sizeof pc.a_stride);
  memcpy(pc.b_stride, cst[1], sizeof pc.b_stride);
  uint64_t addr[2] = {pc.a, pc.b};
  if (pc.dst % 16 == 0 && vkp_ew_vec4_ok(pc.shape, 2, (const int32_t(*)[4])cst, addr)) pc.flags = VKP_EW_F_VEC4;
  return vkp_ew_dispatch(rec, binary_shaders[pc.op], &pc);
}

static const vkp_op_def op_binary;

// Makes v a view of x's storage at x's offset and strides (the folds below; v shaped like x).
static void share_storage(vkp_tensor *v, const vkp_tensor *x) {
  v->view_src = x->view_src ? x->view_src : (vkp_tensor *)x;
  v->buffer = x->buffer;
  v->buffer_offset = x->buffer_offset;
  v->offset = x->offset;
  memcpy(v->stride, x->stride, sizeof v->stride);
}

// A tensor a fold may write into or from, read by nothing but the folded node: an intermediate
// with its own storage, or (folded_ok) an add folded before, a view of such storage (sums of
// three or more products).
static bool sole_reader(const vkp_tensor *x, const uint32_t *readers, bool folded_ok) {
  if (x->keep || readers[x->id] != 1 || !vkp_tensor_is_contiguous(x)) return false;
  if (folded_ok && x->op == &op_binary && x->params.i[8]) return true;
  return !x->view_src && x->kind == VKP_TENSOR_INTERMEDIATE;
}

// Compile time: o + p where p is a product (an op that can add into its output) computed after o,
// and neither is read elsewhere (the sum of gradient contributions, such as dx of the q, k and v
// projections): p adds itself into o's storage and the add becomes a view of it — one pass and
// one dispatch fewer.
static void binary_fold(vkp_tensor *t, const uint32_t *readers) {
  if (t->params.i[0] != VKP_EW_ADD || !vkp_tensor_is_contiguous(t)) return;
  for (int pi = 0; pi < 2; pi++) {
    vkp_tensor *p = t->src[pi], *o = t->src[1 - pi];
    if (!p->op || !p->op->accumulate_into || !o->op || o->order >= p->order || !sole_reader(p, readers, false) ||
        !sole_reader(o, readers, true) || !vkp_tensor_same_shape(p, t) || !vkp_tensor_same_shape(o, t))
      continue;
    share_storage(p, o);
    p->op->accumulate_into(p);
    share_storage(t, o);
    t->params.i[8] = 1;
    return;
  }
}

static void binary_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad);
static const vkp_op_def op_binary = {
    .name = "binary", .record = binary_record, .backward = binary_backward, .fold = binary_fold};

static vkp_tensor *binary(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, int op) {
  if (!a || !b) return NULL;
  static const char *names[] = {"add", "sub", "mul", "div"};
  if (a->dtype != VKP_DTYPE_F32) a = vkp_cast_f32(g, a);
  if (b->dtype != VKP_DTYPE_F32) b = vkp_cast_f32(g, b);
  if (!a || !b) return NULL;
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  int64_t shape[VKP_MAX_DIMS];
  for (int d = 0; d < nd; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: shapes of '%s' and '%s' do not broadcast (dim %d: %lld vs %lld)",
                     names[op], a->name, b->name, d, (long long)sa, (long long)sb);
      return NULL;
    }
    shape[d] = sa > sb ? sa : sb;
  }
  vkp_tensor *srcs[2] = {a, b};
  vkp_tensor *t = vkp_node_new(g, &op_binary, VKP_DTYPE_F32, nd, shape, srcs, 2);
  if (t) {
    t->params.i[0] = op;
    strcpy(t->name, names[op]);
  }
  return t;
}

vkp_tensor *vkp_add(vkp_graph *g, vkp_tensor *a, vkp_tensor *b) { return binary(g, a, b, VKP_EW_ADD); }
vkp_tensor *vkp_sub(vkp_graph *g, vkp_tensor *a, vkp_tensor *b) { return binary(g, a, b, VKP_EW_SUB); }
vkp_tensor *vkp_mul(vkp_graph *g, vkp_tensor *a, vkp_tensor *b) { return binary(g, a, b, VKP_EW_MUL); }
vkp_tensor *vkp_div(vkp_graph *g, vkp_tensor *a, vkp_tensor *b) { return binary(g, a, b, VKP_EW_DIV); }

// Gradient flowing to a broadcast input is summed back to the input's shape.
static void give(vkp_graph *g, vkp_tensor *x, vkp_tensor *grad) {
  if (!x->requires_grad) return;
  vkp_grad_accumulate(g, x, vkp_sum_to(g, grad, x->ndim, x->shape));
}

static void binary_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *a = t->src[0], *b = t->src[1];
  switch (t->params.i[0]) {
    case VKP_EW_ADD:
      give(g, a, grad);
      give(g, b, grad);
      break;
    case VKP_EW_SUB:
      give(g, a, grad);
      if (b->requires_grad) give(g, b, vkp_scale(g, grad, -1.0f));
      break;
    case VKP_EW_MUL:
      if (a->requires_grad) give(g, a, vkp_mul(g, grad, b));
      if (b->requires_grad) give(g, b, vkp_mul(g, grad, a));
      break;
    default:   // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -t/b
      if (a->requires_grad) give(g, a, vkp_div(g, grad, b));
      if (b->requires_grad) give(g, b, vkp_scale(g, vkp_div(g, vkp_mul(g, grad, t), b), -1.0f));
  }
}

// ---- unary ----------------------------------------------------------------------------------
// params: i[0] op, f[1] alpha, f[2] beta

// One shader per op (unary.glsl): a switch on a push constant would run every case on lavapipe.
static const char *unary_shader(uint32_t op) {
  switch (op) {
    case VKP_EW_SCALE: return "unary_scale";
    case VKP_EW_GELU_ERF: return "unary_gelu";
    case VKP_EW_GELU_TANH: return "unary_gelu_tanh";
    case VKP_EW_SILU: return "unary_silu";
    case VKP_EW_RELU: return "unary_relu";
    case VKP_EW_SIGMOID: return "unary_sigmoid";
    case VKP_EW_TANH: return "unary_tanh";
    case VKP_EW_EXP: return "unary_exp";
    case VKP_EW_LOG: return "unary_log";
    case VKP_EW_SQR: return "unary_sqr";
    default: return "unary_sqrt";   // VKP_EW_SQRT
  }
}

static vkp_status unary_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_elementwise pc = {0};
  pc.a = vkp_rec_addr(rec, t->src[0]);
  pc.b = t->nsrc > 1 ? vkp_rec_addr(rec, t->src[1]) : pc.a;
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.op = (uint32_t)t->params.i[0];
  pc.alpha = t->params.f[1];
  pc.beta = t->params.f[2];
  pc.shape[0] = pc.shape[1] = pc.shape[2] = 1;   // contiguous operands: a 1-D loop
  pc.shape[3] = (int32_t)pc.n;
  pc.a_stride[3] = pc.b_stride[3] = 1;
  if ((pc.a | pc.b | pc.dst) % 16 == 0) pc.flags = VKP_EW_F_VEC4;
  return vkp_ew_dispatch(rec, unary_shader(pc.op % VKP_EW_BACKWARD), &pc);
}

static void unary_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad);
static const vkp_op_def op_unary = {.name = "unary", .record = unary_record, .backward = unary_backward};
static const vkp_op_def op_unary_grad = {.name = "unary_grad", .record = unary_record, .backward = NULL};

static vkp_tensor *unary(vkp_graph *g, vkp_tensor *a, int op, float alpha, float beta, const char *name) {
  if (!a) return NULL;
  a = vkp_contiguous(g, a->dtype == VKP_DTYPE_F32 ? a : vkp_cast_f32(g, a));
  vkp_tensor *t = vkp_node_new(g, &op_unary, VKP_DTYPE_F32, a ? a->ndim : 0, a ? a->shape : NULL, &a, 1);
  if (!t) return NULL;
  t->params.i[0] = op;
  t->params.f[1] = alpha;
  t->params.f[2] = beta;
  strcpy(t->name, name);
  return t;
}

static void unary_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  if (t->params.i[0] == VKP_EW_SCALE) {   // d(ax+b)/dx = a: no need to keep x alive for backward
    vkp_grad_accumulate(g, t->src[0], vkp_scale(g, grad, t->params.f[1]));
    return;
  }
  vkp_tensor *srcs[2] = {t->src[0], vkp_contiguous(g, grad)};
  vkp_tensor *d = vkp_node_new(g, &op_unary_grad, VKP_DTYPE_F32, t->ndim, t->shape, srcs, 2);
  if (!d) return;
  d->params = t->params;
  d->params.i[0] += VKP_EW_BACKWARD;
  vkp_grad_accumulate(g, t->src[0], d);
}

vkp_tensor *vkp_scale(vkp_graph *g, vkp_tensor *a, float alpha) { return unary(g, a, VKP_EW_SCALE, alpha, 0, "scale"); }
vkp_tensor *vkp_affine(vkp_graph *g, vkp_tensor *a, float alpha, float beta) {
  return unary(g, a, VKP_EW_SCALE, alpha, beta, "affine");
}
vkp_tensor *vkp_gelu(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_GELU_ERF, 0, 0, "gelu"); }
vkp_tensor *vkp_gelu_tanh(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_GELU_TANH, 0, 0, "gelu_tanh"); }
vkp_tensor *vkp_silu(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_SILU, 0, 0, "silu"); }
vkp_tensor *vkp_relu(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_RELU, 0, 0, "relu"); }
vkp_tensor *vkp_sigmoid(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_SIGMOID, 0, 0, "sigmoid"); }
vkp_tensor *vkp_tanh(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_TANH, 0, 0, "tanh"); }
vkp_tensor *vkp_exp(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_EXP, 0, 0, "exp"); }
vkp_tensor *vkp_log(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_LOG, 0, 0, "log"); }
vkp_tensor *vkp_sqr(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_SQR, 0, 0, "sqr"); }
vkp_tensor *vkp_sqrt(vkp_graph *g, vkp_tensor *a) { return unary(g, a, VKP_EW_SQRT, 0, 0, "sqrt"); }

// ---- fill, loss seed ------------------------------------------------------------------------

static vkp_status fill_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_elementwise pc = {0};
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.alpha = t->params.f[0];
  pc.op = (uint32_t)t->params.i[1];   // 1: take the value from vkp_step_scalars.loss_scale
  pc.a = vkp_rec_scalars_addr(rec);
  pc.shape[0] = pc.shape[1] = pc.shape[2] = 1;
  pc.shape[3] = (int32_t)pc.n;
  if (pc.dst % 16 == 0) pc.flags = VKP_EW_F_VEC4;
  return vkp_ew_dispatch(rec, "fill", &pc);
}
static const vkp_op_def op_fill = {.name = "fill", .record = fill_record, .backward = NULL};

vkp_tensor *vkp_fill(vkp_graph *g, vkp_dtype dtype, int ndim, const int64_t *shape, float value) {
  if (dtype != VKP_DTYPE_F32) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "fill: only f32");
    return NULL;
  }
  vkp_tensor *t = vkp_node_new(g, &op_fill, dtype, ndim, shape, NULL, 0);
  if (t) t->params.f[0] = value;
  return t;
}

vkp_tensor *vkp_loss_seed(vkp_graph *g, vkp_tensor *loss) {
  if (!loss) return NULL;
  vkp_tensor *t = vkp_fill(g, VKP_DTYPE_F32, loss->ndim, loss->shape, 1.0f);
  if (t) {
    t->params.i[1] = 1;
    strcpy(t->name, "loss_seed");
  }
  return t;
}

// ---- in-place accumulate / assign into external tensors ------------------------------------

// dst += src, both contiguous: an add whose second operand is dst itself. params.i[0] = 1 once
// folded into src (below): src then adds itself into dst and this node records nothing.
static vkp_status accumulate_record(vkp_recorder *rec, const vkp_tensor *t) {
  if (t->params.i[0]) return VKP_OK;
  vkp_pc_elementwise pc = {0};
  pc.a = vkp_rec_addr(rec, t->src[1]);
  pc.b = pc.dst = vkp_rec_addr(rec, t->src[0]);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.op = VKP_EW_ADD;
  pc.shape[0] = pc.shape[1] = pc.shape[2] = 1;
  pc.shape[3] = (int32_t)pc.n;
  pc.a_stride[3] = pc.b_stride[3] = 1;
  if ((pc.a | pc.dst) % 16 == 0) pc.flags = VKP_EW_F_VEC4;
  return vkp_ew_dispatch(rec, "binary_add", &pc);
}

// Compile time: when src is produced by an op that can add into its output (a matmul: weight
// gradients) and nothing else reads it, src is placed in dst's storage and accumulates there —
// one pass over the gradient and one dispatch fewer per parameter.
static void accumulate_fold(vkp_tensor *t, const uint32_t *readers) {
  vkp_tensor *src = t->src[1];
  if (!src->op || !src->op->accumulate_into || !sole_reader(src, readers, false)) return;
  share_storage(src, t);   // t is a view of dst's external storage
  src->op->accumulate_into(src);
  t->params.i[0] = 1;
}
static const vkp_op_def op_accumulate = {.name = "accumulate", .record = accumulate_record, .fold = accumulate_fold};

static vkp_status assign_record(vkp_recorder *rec, const vkp_tensor *t) {
  return vkp_ew_record_copy(rec, t->src[1], vkp_rec_addr(rec, t->src[0]), t->src[0]);
}
static const vkp_op_def op_assign = {.name = "assign", .record = assign_record, .backward = NULL};

static vkp_tensor *inplace(vkp_graph *g, const vkp_op_def *op, vkp_tensor *dst, vkp_tensor *src) {
  if (!dst || !src) return NULL;
  vkp_tensor *base = dst->view_src ? dst->view_src : dst;
  if (base->kind != VKP_TENSOR_EXTERNAL || !vkp_tensor_same_shape(dst, src) || dst->dtype != src->dtype ||
      vkp_dtype_size(dst->dtype) != 4 ||   // copy.comp moves 32-bit words
      (op == &op_accumulate && (!vkp_tensor_is_contiguous(dst) || dst->dtype != VKP_DTYPE_F32))) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' must be an external f32 tensor of the same shape as '%s'", op->name,
                   dst->name, src->name);
    return NULL;
  }
  if (op == &op_accumulate) src = vkp_contiguous(g, src);
  vkp_tensor *srcs[2] = {dst, src};
  vkp_tensor *t = vkp_node_new(g, op, dst->dtype, dst->ndim, dst->shape, srcs, 2);
  if (!t) return NULL;
  t->view_src = base;   // writes into dst's storage
  t->offset = dst->offset;
  t->buffer = dst->buffer;
  t->buffer_offset = dst->buffer_offset;
  memcpy(t->stride, dst->stride, sizeof t->stride);
  return t;
}

vkp_tensor *vkp_accumulate(vkp_graph *g, vkp_tensor *dst, vkp_tensor *src) { return inplace(g, &op_accumulate, dst, src); }
vkp_tensor *vkp_assign(vkp_graph *g, vkp_tensor *dst, vkp_tensor *src) { return inplace(g, &op_assign, dst, src); }
