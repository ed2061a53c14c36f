// method_oft.c — OFT, orthogonal fine-tuning (Qiu et al. 2023), with peft 0.21's OFTConfig
// semantics (peft/tuners/oft/config.py, layer.py):
//   parameters  oft_R.weight (r, b(b-1)/2) per module, b = oft_block_size, r = in / b blocks (conv:
//               in = Cin·kh·kw); block_share: one row (1, b(b-1)/2) used for every block. Row k is
//               the strict upper triangle of block k in torch.triu_indices(b, b, 1) order (row-major);
//               Q_k = U - U^T is skew-symmetric. Exactly one of r and oft_block_size is given, the
//               other follows; a value that does not divide `in` is moved to the nearest divisor as
//               peft's adjust_oft_parameters does. init_weights: zeros (R = I); false: N(0, 0.1).
//   rotation    use_cayley_neumann (peft's default): R = I + 2Q + 2Q^2 + ... + 2Q^(m-1) + Q^m with
//               m = max(3, num_cayley_neumann_terms - 1) (peft's loop; 2 terms: I + 2Q; <= 1: I);
//               else the exact Cayley transform R = (I - Q)(I + Q)^-1 (torch.linalg.solve(I + Q,
//               I - Q, left=False)), through vkp_inverse (b <= 64).
//   forward     peft rotates the layer's input by the block-diagonal R: y = base(x R) = x R W^T + b
//               (the bias is not rotated). vkpeft applies the same map as a weight change,
//               W' = W R^T (one (out x in x b) product per step instead of one per token); on
//               conv2d the same W' = W R^T over (Cout, Cin·kh·kw) — what peft's merge computes. (peft's
//               unmerged conv forward unfolds the input and folds it back summing overlapping
//               patches, which differs from its own merged form whenever patches overlap; vkpeft
//               follows the merged form.)
//   coft        the constrained variant: before each use, every block with ||Q||_F > eps / sqrt(r)
//               is scaled back onto that sphere, in place in the parameter (peft's _project_batch
//               under no_grad), and the gradient is taken at the projected value.
//   merge       W <- W R^T; unmerge W <- W (R^T)^-1 (host float64, as peft uses the inverse).
//   module_dropout  peft 0.21 creates a MultiplicativeDropoutLayer but never calls it in forward,
//               so it changes nothing; vkpeft keeps and writes the value and does not apply it.
//   scale       peft refuses scaling OFT; vkpeft's user scale u rotates by the Cayley transform of
//               u·Q (u = 0: identity, 1: as trained).
// File: <module>.oft_R.weight (peft's key after removing the adapter name from oft_R.<name>.weight).
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"

static const vkp_peft_suffix suffixes[] = {{"oft_R.weight", "oft_R.%s.weight"}};

static const vkp_peft_suffix *oft_suffixes(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 1;
  return suffixes;
}

// ---- config ---------------------------------------------------------------------------------

static const vkp_json_field fields[] = {
    {"r", VKP_JSON_INT, offsetof(vkp_peft_config, r), .lo = 0, .hi = 65536, .def = 0, .flags = VKP_JSON_KEEP},
    {"oft_block_size", VKP_JSON_INT, offsetof(vkp_peft_config, oft_block_size), .lo = 0, .hi = 65536, .def = 32,
     .flags = VKP_JSON_KEEP},
    {"module_dropout", VKP_JSON_FLOAT, offsetof(vkp_peft_config, module_dropout), .lo = 0, .hi = 1, .flags = VKP_JSON_KEEP},
    {"coft", VKP_JSON_BOOL, offsetof(vkp_peft_config, coft), .flags = VKP_JSON_KEEP},
    {"eps", VKP_JSON_FLOAT, offsetof(vkp_peft_config, eps), .def = 6e-5, .flags = VKP_JSON_KEEP},
    {"block_share", VKP_JSON_BOOL, offsetof(vkp_peft_config, block_share), .flags = VKP_JSON_KEEP},
    {"use_cayley_neumann", VKP_JSON_BOOL, offsetof(vkp_peft_config, use_cayley_neumann), .def = 1, .flags = VKP_JSON_KEEP},
    {"num_cayley_neumann_terms", VKP_JSON_INT, offsetof(vkp_peft_config, num_cayley_neumann_terms), .lo = 0, .hi = 64,
     .def = 5, .flags = VKP_JSON_KEEP},
    {"init_weights", VKP_JSON_BOOL, offsetof(vkp_peft_config, init_weights), .def = 1, .flags = VKP_JSON_KEEP},
};
static const vkp_peft_key keys[] = {{"bias", vkp_peft_key_bias, vkp_peft_write_bias}};

static vkp_status validate(const vkp_peft_config *c, const char *where, vkp_error *err) {
  if ((c->r > 0) == (c->oft_block_size > 0) || c->r < 0 || c->oft_block_size < 0)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "%s: exactly one of 'r' and 'oft_block_size' must be non-zero (r x oft_block_size = the "
                         "layer's input size), not r = %d and oft_block_size = %d",
                         where, c->r, c->oft_block_size);
  if (c->num_cayley_neumann_terms < 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'num_cayley_neumann_terms' must be >= 0", where);
  return vkp_peft_check_probability(c->module_dropout, where, "module_dropout", err);
}

static bool fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_LINEAR || mod->kind == VKP_MODULE_CONV2D;
}

// ---- geometry and parameters ----------------------------------------------------------------

// peft's adjust_oft_parameters: the divisor of n nearest to p (ties: the lower one).
static int64_t adjust(int64_t n, int64_t p) {
  if (p >= n) return n;
  int64_t hi = p, lo = p;
  while (hi <= n && n % hi) hi++;
  while (lo > 1 && n % lo) lo--;
  return p - lo <= hi - p ? lo : hi;
}

enum { G_BLOCK = 0, G_BLOCKS, G_PARAM_BLOCKS, G_N };   // s->geom

static vkp_status create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  vkp_module *mod = s->module;
  vkp_error *err = vkp_ctx_err(m->ctx);
  int64_t n = mod->in * (mod->kind == VKP_MODULE_CONV2D ? (int64_t)mod->kh * mod->kw : 1), b, r;
  if (c->r == 0) {
    b = c->oft_block_size;
    if (n % b || b > n) b = adjust(n, b);
    r = n / b;
  } else {
    r = c->r;
    if (n % r || r > n) r = adjust(n, r);
    b = n / r;
  }
  if (b < 2)
    return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s': OFT on '%s' (input size %lld) would use blocks of size 1",
                         c->name, mod->name, (long long)n);
  if (!c->use_cayley_neumann && b > 64)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                         "adapter '%s': the exact Cayley transform (use_cayley_neumann false) supports blocks up to 64, "
                         "'%s' has %lld",
                         c->name, mod->name, (long long)b);
  int64_t np = c->block_share ? 1 : r, ne = b * (b - 1) / 2;
  s->scaling = 1.0f;
  s->geom[G_BLOCK] = b, s->geom[G_BLOCKS] = r, s->geom[G_PARAM_BLOCKS] = np, s->geom[G_N] = n;
  int64_t shape[2] = {np, ne};
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, shape));
  if (!c->init_weights) VKP_TRY(vkp_param_init_normal(m, s->p[0], 0.1f, seed));   // else zeros: R = I
  // Device constants: the flat (np, b, b) positions of the parameter's entries (upper triangles,
  // torch.triu_indices order), then the b diagonal positions of a (b, b) identity.
  int64_t nidx = np * ne + b;
  int32_t *idx = malloc((size_t)nidx * sizeof *idx);
  if (!idx) return VKP_ERR_OOM;
  int64_t o = 0;
  for (int64_t k = 0; k < np; k++)
    for (int64_t i = 0; i < b; i++)
      for (int64_t j = i + 1; j < b; j++) idx[o++] = (int32_t)(k * b * b + i * b + j);
  for (int64_t i = 0; i < b; i++) idx[o++] = (int32_t)(i * b + i);
  vkp_status st = vkp_buffer_new(m->ctx, (uint64_t)nidx * 4, &s->consts);
  if (!st) st = vkp_buffer_write(s->consts, 0, idx, (uint64_t)nidx * 4);
  free(idx);
  return st;
}

// ---- forward --------------------------------------------------------------------------------

// COFT (peft _project_batch): vec (np, ne) scaled per block onto ||Q||_F <= eps / sqrt(np) with
// ||Q||_F = sqrt(2 sum vec^2); the parameter is overwritten with the result (an expanded in-place
// assign, ordered after this read) and the returned tensor has the projected values with the
// gradient of the identity (peft differentiates at the projected parameter).
static vkp_tensor *coft_project(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *vec) {
  vkp_graph *g = m->graph;
  double e = s->adapter->cfg.eps / sqrt((double)s->geom[G_PARAM_BLOCKS]);
  vkp_tensor *norm = vkp_sqrt(g, vkp_scale(g, vkp_sum_axis(g, vkp_sqr(g, vec), 1), 2.0f));   // (np, 1)
  vkp_tensor *den = vkp_affine(g, vkp_relu(g, vkp_affine(g, norm, 1.0f, (float)-e)), 1.0f, (float)e);   // max(norm, e)
  vkp_tensor *factor = vkp_div(g, vkp_fill(g, VKP_DTYPE_F32, 2, (int64_t[]){1, 1}, (float)e), den);
  // proj + (vec - vec): exactly the projected values, with the identity as gradient.
  vkp_tensor *st = vkp_add(g, vkp_detach(g, vkp_mul(g, vec, factor)), vkp_sub(g, vec, vkp_detach(g, vec)));
  vkp_tensor *write = vkp_assign(g, vec, vkp_detach(g, st));
  if (write) vkp_graph_expand(g, write);
  return st;
}

// R - I for every parameter block, (np, b, b), or NULL when R = I (a Neumann series of <= 1 term).
static vkp_tensor *rotation_minus_identity(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *vec) {
  vkp_graph *g = m->graph;
  const vkp_peft_config *c = &s->adapter->cfg;
  int64_t b = s->geom[G_BLOCK], np = s->geom[G_PARAM_BLOCKS], ne = b * (b - 1) / 2;
  if (c->use_cayley_neumann && c->num_cayley_neumann_terms <= 1) return NULL;
  vkp_tensor *up = vkp_tensor_external(g, "oft_triu_index", s->consts, 0, VKP_DTYPE_I32, 1, (int64_t[]){np * ne});
  vkp_tensor *U = vkp_sparse_add(g, vkp_fill(g, VKP_DTYPE_F32, 1, (int64_t[]){np * b * b}, 0.0f),
                                 vkp_reshape(g, vec, 1, (int64_t[]){np * ne}), up);
  U = vkp_reshape(g, U, 3, (int64_t[]){np, b, b});
  vkp_tensor *Q = vkp_sub(g, U, vkp_contiguous(g, vkp_transpose(g, U, 1, 2)));   // skew-symmetric blocks
  if (!c->use_cayley_neumann) {   // R - I = (I - Q)(I + Q)^-1 - I = -2 Q (I + Q)^-1
    vkp_tensor *diag = vkp_tensor_external(g, "oft_diag_index", s->consts, (uint64_t)(np * ne) * 4, VKP_DTYPE_I32, 1, &b);
    vkp_tensor *I = vkp_sparse_add(g, vkp_fill(g, VKP_DTYPE_F32, 1, (int64_t[]){b * b}, 0.0f),
                                   vkp_fill(g, VKP_DTYPE_F32, 1, &b, 1.0f), diag);
    vkp_tensor *A = vkp_add(g, Q, vkp_reshape(g, I, 2, (int64_t[]){b, b}));
    return vkp_scale(g, vkp_matmul(g, Q, vkp_inverse(g, A), false, false), -2.0f);
  }
  // peft's _cayley_batch: R = I + 2Q [+ 2Q^2 + 2Q^3 + ... + 2Q^(t-2)] + Q^max(3, t-1) for t > 2 terms.
  int terms = c->num_cayley_neumann_terms;
  vkp_tensor *S = vkp_scale(g, Q, 2.0f);
  if (terms > 2) {
    vkp_tensor *pw = vkp_matmul(g, Q, Q, false, false);
    S = vkp_add(g, S, vkp_scale(g, pw, 2.0f));
    for (int i = 3; i < terms - 1; i++) {
      pw = vkp_matmul(g, pw, Q, false, false);
      S = vkp_add(g, S, vkp_scale(g, pw, 2.0f));
    }
    S = vkp_add(g, S, vkp_matmul(g, pw, Q, false, false));
  }
  return S;
}

// W' = W R^T block by block over the input columns: W + (W_blocks (R - I)^T).
static void weight_pre(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  vkp_model *m = c->m;
  vkp_graph *g = c->g;
  const vkp_peft_config *cf = &s->adapter->cfg;
  vkp_tensor *vec = vkp_param_tensor(m, s->p[0]);
  if (!vec || !c->W) return;
  if (cf->coft) vec = coft_project(m, s, vec);
  if (s->adapter->scale != 1.0f) vec = vkp_scale(g, vec, s->adapter->scale);
  vkp_tensor *S = rotation_minus_identity(m, s, vec);
  if (!S) return;
  int64_t b = s->geom[G_BLOCK], rb = s->geom[G_BLOCKS], out = c->mod->out;
  if (s->geom[G_PARAM_BLOCKS] == 1) S = vkp_reshape(g, S, 2, (int64_t[]){b, b});   // block_share: one R for all
  vkp_tensor *W = vkp_cast_f32(g, vkp_contiguous(g, c->W));
  if (!W) return;
  vkp_tensor *Wb = vkp_contiguous(g, vkp_permute(g, vkp_reshape(g, W, 3, (int64_t[]){out, rb, b}), (int[]){1, 0, 2}));
  vkp_tensor *D = vkp_matmul(g, Wb, S, false, true);   // (rb, out, b)
  D = vkp_contiguous(g, vkp_permute(g, D, (int[]){1, 0, 2}));
  c->W = vkp_add(g, W, vkp_reshape(g, D, W->ndim, W->shape));
}

// ---- host float64 (merge) ---------------------------------------------------------------------

// In-place Gauss-Jordan inverse of a (n, n) with partial pivoting; false if singular.
static bool invert(double *a, int64_t n, double *out) {
  int64_t w = 2 * n;
  double *m = malloc((size_t)(n * w) * sizeof *m);
  if (!m) return false;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < w; j++) m[i * w + j] = j < n ? a[i * n + j] : (j - n == i);
  bool ok = true;
  for (int64_t k = 0; k < n && ok; k++) {
    int64_t p = k;
    for (int64_t i = k + 1; i < n; i++)
      if (fabs(m[i * w + k]) > fabs(m[p * w + k])) p = i;
    ok = m[p * w + k] != 0;
    for (int64_t j = 0; ok && j < w; j++) {
      double t = m[k * w + j];
      m[k * w + j] = m[p * w + j], m[p * w + j] = t;
    }
    double piv = ok ? m[k * w + k] : 1;
    for (int64_t j = 0; ok && j < w; j++) m[k * w + j] /= piv;
    for (int64_t i = 0; ok && i < n; i++) {
      if (i == k) continue;
      double f = m[i * w + k];
      for (int64_t j = 0; j < w; j++) m[i * w + j] -= f * m[k * w + j];
    }
  }
  for (int64_t i = 0; ok && i < n; i++)
    for (int64_t j = 0; j < n; j++) out[i * n + j] = m[i * w + n + j];
  free(m);
  return ok;
}

static void matmul_sq(const double *a, const double *b, int64_t n, double *out) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      double acc = 0;
      for (int64_t k = 0; k < n; k++) acc += a[i * n + k] * b[k * n + j];
      out[i * n + j] = acc;
    }
}

// R (b, b) of one block from its parameter row, as the forward pass (peft's formulas).
static bool host_rotation(const double *vec, int64_t b, const vkp_peft_config *c, double *R) {
  size_t bb = (size_t)(b * b);
  double *Q = calloc(bb, sizeof *Q), *pw = calloc(bb, sizeof *pw), *t = calloc(bb, sizeof *t);
  bool ok = Q && pw && t;
  for (int64_t i = 0, e = 0; ok && i < b; i++)
    for (int64_t j = i + 1; j < b; j++, e++) Q[i * b + j] = vec[e], Q[j * b + i] = -vec[e];
  for (int64_t i = 0; ok && i < b * b; i++) R[i] = i % (b + 1) == 0;
  if (ok && !c->use_cayley_neumann) {   // R = (I - Q)(I + Q)^-1
    double *A = calloc(bb, sizeof *A);
    ok = A != NULL;
    for (int64_t i = 0; ok && i < b * b; i++) A[i] = Q[i] + (i % (b + 1) == 0), t[i] = (i % (b + 1) == 0) - Q[i];
    ok = ok && invert(A, b, pw);
    if (ok) matmul_sq(t, pw, b, R);
    free(A);
  } else if (ok && c->num_cayley_neumann_terms > 1) {
    int terms = c->num_cayley_neumann_terms;
    for (size_t i = 0; i < bb; i++) R[i] += 2 * Q[i];
    if (terms > 2) {
      matmul_sq(Q, Q, b, pw);
      for (size_t i = 0; i < bb; i++) R[i] += 2 * pw[i];
      for (int k = 3; k < terms - 1; k++) {
        matmul_sq(pw, Q, b, t);
        memcpy(pw, t, bb * sizeof *pw);
        for (size_t i = 0; i < bb; i++) R[i] += 2 * pw[i];
      }
      matmul_sq(pw, Q, b, t);
      for (size_t i = 0; i < bb; i++) R[i] += t[i];
    }
  }
  free(Q), free(pw), free(t);
  return ok;
}

static vkp_status merge(vkp_model *m, vkp_adapter_slot *s, vkp_peft_merge_call *c, bool merge) {
  const vkp_peft_config *cf = &s->adapter->cfg;
  int64_t b = s->geom[G_BLOCK], rb = s->geom[G_BLOCKS], np = s->geom[G_PARAM_BLOCKS], ne = b * (b - 1) / 2;
  float *p = vkp_peft_read_param(m, s->p[0]);
  double *vec = malloc((size_t)(np * ne) * sizeof *vec), *R = malloc((size_t)(np * b * b) * sizeof *R);
  double *M = malloc((size_t)(b * b) * sizeof *M), *row = malloc((size_t)b * sizeof *row);
  vkp_status st = p && vec && R && M && row ? VKP_OK : VKP_ERR_OOM;
  double e = cf->eps / sqrt((double)np), u = s->adapter->scale;
  for (int64_t k = 0; !st && k < np; k++) {
    double nn = 0;
    for (int64_t i = 0; i < ne; i++) nn += 2.0 * p[k * ne + i] * p[k * ne + i];
    double f = cf->coft && sqrt(nn) > e ? e / sqrt(nn) : 1.0;   // COFT, as the forward pass
    for (int64_t i = 0; i < ne; i++) vec[k * ne + i] = u * f * p[k * ne + i];
    if (!host_rotation(vec + k * ne, b, cf, R + k * b * b)) st = VKP_ERR_INVALID;
  }
  for (int64_t k = 0; !st && k < rb; k++) {
    const double *Rk = R + (np == 1 ? 0 : k) * b * b;
    if (merge) {   // M = R^T
      for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++) M[i * b + j] = Rk[j * b + i];
    } else {       // M = (R^T)^-1
      double *Rt = malloc((size_t)(b * b) * sizeof *Rt);
      bool ok = Rt != NULL;
      for (int64_t i = 0; ok && i < b; i++)
        for (int64_t j = 0; j < b; j++) Rt[i * b + j] = Rk[j * b + i];
      ok = ok && invert(Rt, b, M);
      free(Rt);
      if (!ok) st = VKP_ERR_INVALID;
    }
    for (int64_t o = 0; !st && o < c->out; o++) {   // W[o, block k] <- W[o, block k] M
      double *w = c->w + o * c->cols + k * b;
      for (int64_t j = 0; j < b; j++) {
        double acc = 0;
        for (int64_t i = 0; i < b; i++) acc += w[i] * M[i * b + j];
        row[j] = acc;
      }
      memcpy(w, row, (size_t)b * sizeof *w);
    }
  }
  if (st == VKP_ERR_INVALID)
    vkp_error_set(vkp_ctx_err(m->ctx), st, "adapter '%s': OFT rotation of '%s' is singular", cf->name, c->mod->name);
  free(p), free(vec), free(R), free(M), free(row);
  return st;
}

static const vkp_peft_alias aliases[] = {{"coft", "{\"coft\": true}"}};
static const vkp_peft_preset presets[] = {
    {"oft", "{\"method\":\"oft\",\"r\":0,\"oft_block_size\":16,\"target_modules\":[\"@q\",\"@v\"],\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_oft = {
    .id = VKP_PEFT_OFT,
    .name = "oft",
    .peft_type = "OFT",
    .level = VKP_PEFT_LEVEL_WEIGHT,
    .summary = "block-diagonal orthogonal rotation (Cayley transform of skew-symmetric blocks) of each layer's input",
    .aliases = aliases,
    .n_aliases = 1,
    .fields = fields,
    .n_fields = sizeof fields / sizeof *fields,
    .keys = keys,
    .n_keys = 1,
    .validate = validate,
    .fits = fits,
    .create = create,
    .suffixes = oft_suffixes,
    .weight_pre = weight_pre,
    .merge = merge,
    .presets = presets,
    .n_presets = 1,
};
