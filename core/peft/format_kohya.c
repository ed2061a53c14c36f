// format_kohya.c — kohya / A1111 / ComfyUI / LyCORIS single-file adapters (.safetensors), and the
// low-rank builder the diffusers format shares (vkp_lowrank_build).
//
// Keys: <prefix><module with '.' -> '_'>.<suffix>, prefixes `lora_unet_` (the UNet), `lora_te_`
// (the text encoder: `lora_te_text_model_encoder_layers_0_self_attn_q_proj`), `lora_te1_` /
// `lora_te2_` (SD XL's two encoders). Modules are found by spelling every name of every module of
// the model that way (vkp_adapter_find_module), never by guessing dots back into the underscores.
//   LoRA / LoCon  .lora_down.weight (r, in[, kh, kw]), .lora_up.weight (out, r[, 1, 1]), .alpha;
//                 LoCon's Tucker form .lora_mid.weight (r, r, kh, kw) with a 1x1 lora_down is folded
//                 into one lora_down (exact: a 1x1 conv followed by a kh x kw one);
//   LoHa          .hada_w1_a (out, r), .hada_w1_b (r, in*kh*kw), .hada_w2_a, .hada_w2_b, .alpha
//                 (.hada_t1/.hada_t2, Tucker: unsupported);
//   LoKr          .lokr_w1 or .lokr_w1_a @ .lokr_w1_b, .lokr_w2 or .lokr_w2_a @ .lokr_w2_b, .alpha;
//                 LyCORIS scales by alpha / r, and by 1 when w1 and w2 are both full matrices;
//   DoRA          .dora_scale (out, 1[, 1, 1]): LyCORIS' output-axis magnitude (wd_on_out), which is
//                 peft's lora_magnitude_vector; the input-axis form (1, in[, 1, 1]) is unsupported.
// scale = alpha / r (a missing alpha means alpha = r). Keys of a prefix none of whose modules exist
// in the model belong to another model of the pipeline (the text encoder's keys when the model is
// a UNet) and are skipped with a note; a key that names no module otherwise is an error listing the
// first few (vkp_adapter_io.skip_unmatched: a warning, as A1111 does).
// Writing: LoRA (rsLoRA: its scale as alpha), DoRA, LoHa and LoKr, with kohya's training metadata
// in __metadata__ (ss_network_module, ss_network_dim, ss_network_alpha, ss_network_args,
// ss_base_model_version when given, and any vkp_adapter_io.metadata entries: a trainer's ss_* keys).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "peft_internal.h"

static const char *const kohya_sfx[VKP_LR_ROLES] = {
    ".lora_down.weight", ".lora_up.weight", ".lora_mid.weight", ".alpha", ".dora_scale", ".hada_w1_a", ".hada_w1_b",
    ".hada_w2_a", ".hada_w2_b", ".hada_t1", ".hada_t2", ".lokr_w1", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2",
    ".lokr_w2_a", ".lokr_w2_b", ".lokr_t2"};
static const char *const kohya_prefixes[] = {"lora_unet_", "lora_te1_", "lora_te2_", "lora_te_", NULL};

static bool ends_with(const char *s, const char *sfx) {
  size_t n = strlen(s), k = strlen(sfx);
  return n > k && !strcmp(s + n - k, sfx);
}

// ---- the builder ----------------------------------------------------------------------------------

typedef struct lr_info {
  int64_t rank;       // the module's rank in the file
  float scaling;
  float *v[3];        // the values of the slot's parameters before padding (owned)
  int64_t vshape[3][2];   // 2-D views (rows, cols) of v
} lr_info;

static vkp_status tensor_f32(vkp_error *err, const char *path, const vkp_st_tensor *t, float **out) {
  size_t n = vkp_st_tensor_numel(t);
  *out = malloc((n ? n : 1) * sizeof **out);
  if (!*out) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  (void)path;
  vkp_convert_to_f32(t->dtype, t->data, *out, n);
  return VKP_OK;
}

// c (rows, cols) = a (rows, k) @ b (k, cols), accumulated in double.
static float *matmul(const float *a, const float *b, int64_t rows, int64_t k, int64_t cols) {
  float *c = malloc((size_t)(rows * cols) * sizeof *c);
  for (int64_t i = 0; c && i < rows; i++)
    for (int64_t j = 0; j < cols; j++) {
      double acc = 0;
      for (int64_t q = 0; q < k; q++) acc += (double)a[i * k + q] * b[q * cols + j];
      c[i * cols + j] = (float)acc;
    }
  return c;
}

static const char *method_of(const vkp_lowrank_entry *e) {
  if (e->t[VKP_LR_DOWN] || e->t[VKP_LR_UP] || e->t[VKP_LR_MID]) return "lora";
  for (int r = VKP_LR_HADA_W1_A; r <= VKP_LR_HADA_T2; r++)
    if (e->t[r]) return "loha";
  for (int r = VKP_LR_LOKR_W1; r <= VKP_LR_LOKR_T2; r++)
    if (e->t[r]) return "lokr";
  return NULL;
}

static void shape_str(const vkp_st_tensor *t, char *out, size_t cap) {
  size_t o = (size_t)snprintf(out, cap, "[");
  for (int d = 0; d < t->ndim && o < cap; d++) o += (size_t)snprintf(out + o, cap - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
  if (o < cap) snprintf(out + o, cap - o, "]");
}

// Checks one entry's tensors and computes its rank, scaling and 2-D values.
static vkp_status lr_check(vkp_error *err, const char *path, const vkp_lowrank_entry *e, const char *method, lr_info *in) {
  const vkp_module *mod = e->mod;
  int64_t out = mod->out, k = mod->kind == VKP_MODULE_CONV2D ? (int64_t)mod->kh * mod->kw : 1, cols = mod->in * k;
  char sh[96];
  for (int r = 0; r < VKP_LR_ROLES; r++) {
    const vkp_st_tensor *t = e->t[r];
    if (!t) continue;
    if (t->dtype != VKP_DTYPE_F32 && t->dtype != VKP_DTYPE_F16 && t->dtype != VKP_DTYPE_BF16 && t->dtype != VKP_DTYPE_F64)
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' must be a float tensor, not %s", path, t->name, vkp_dtype_name(t->dtype));
    if (r == VKP_LR_ALPHA && vkp_st_tensor_numel(t) != 1) {
      shape_str(t, sh, sizeof sh);
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' (alpha) must be a scalar, has shape %s", path, t->name, sh);
    }
  }
  if (e->t[VKP_LR_HADA_T1] || e->t[VKP_LR_HADA_T2] || e->t[VKP_LR_LOKR_T2])
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: '%s': LyCORIS Tucker factors (hada_t1/hada_t2/lokr_t2) are not supported",
                         path, e->stem);
  float alpha = NAN;
  if (e->t[VKP_LR_ALPHA]) vkp_convert_to_f32(e->t[VKP_LR_ALPHA]->dtype, e->t[VKP_LR_ALPHA]->data, &alpha, 1);
  else if (e->has_alpha) alpha = e->alpha;
  if ((e->t[VKP_LR_ALPHA] || e->has_alpha) && !isfinite(alpha))   // else a scale of inf or NaN, silently
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: '%s': alpha %g%s is not a finite number", path, e->stem, (double)alpha,
                         e->t[VKP_LR_ALPHA] ? "" : " (from the file's metadata)");
#define NEED(role)                                                                                                     \
  if (!e->t[role])                                                                                                     \
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: '%s' has no '%s' tensor", path, e->stem, kohya_sfx[role] + 1);
#define BAD(t, what)                                                                                                   \
  do {                                                                                                                 \
    shape_str(t, sh, sizeof sh);                                                                                       \
    return vkp_error_set(err, VKP_ERR_SHAPE, "%s: tensor '%s' has shape %s, the module '%s' (%lld -> %lld%s) needs %s", \
                         path, (t)->name, sh, mod->name, (long long)mod->in, (long long)out, k > 1 ? ", conv" : "", what); \
  } while (0)
  vkp_status st = VKP_OK;
  if (!strcmp(method, "lora")) {
    NEED(VKP_LR_DOWN);
    NEED(VKP_LR_UP);
    const vkp_st_tensor *d = e->t[VKP_LR_DOWN], *u = e->t[VKP_LR_UP], *mid = e->t[VKP_LR_MID];
    int64_t r = d->ndim >= 1 ? d->shape[0] : 0;
    int64_t ru = u->ndim >= 2 ? u->shape[1] : -1;
    if (r != ru || r <= 0)
      return vkp_error_set(err, VKP_ERR_SHAPE, "%s: rank mismatch: '%s' has rank %lld, '%s' has rank %lld", path, d->name,
                           (long long)r, u->name, (long long)ru);
    if (u->shape[0] != out || (int64_t)vkp_st_tensor_numel(u) != out * r) BAD(u, "(out, r[, 1, 1])");
    in->rank = r;
    VKP_TRY(tensor_f32(err, path, u, &in->v[1]));
    in->vshape[1][0] = out, in->vshape[1][1] = r;
    if (mid) {   // LoCon Tucker: down (r, in, 1, 1), mid (r_out, r, kh, kw): A = mid ∘ down
      if ((int64_t)vkp_st_tensor_numel(d) != r * mod->in) BAD(d, "(r, in, 1, 1) with lora_mid");
      if (mid->ndim != 4 || mid->shape[0] != r || mid->shape[1] != r || mid->shape[2] * mid->shape[3] != k) BAD(mid, "(r, r, kh, kw)");
      float *dv, *mv;
      VKP_TRY(tensor_f32(err, path, d, &dv));
      if ((st = tensor_f32(err, path, mid, &mv))) {
        free(dv);
        return st;
      }
      float *a = calloc((size_t)(r * cols), sizeof *a);
      for (int64_t o = 0; a && o < r; o++)
        for (int64_t i = 0; i < mod->in; i++)
          for (int64_t p = 0; p < k; p++) {
            double acc = 0;
            for (int64_t q = 0; q < r; q++) acc += (double)mv[(o * r + q) * k + p] * dv[q * mod->in + i];
            a[o * cols + i * k + p] = (float)acc;
          }
      free(dv), free(mv);
      if (!a) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      in->v[0] = a;
    } else {
      if ((int64_t)vkp_st_tensor_numel(d) != r * cols || (k > 1 && (d->ndim != 4 || d->shape[2] != mod->kh || d->shape[3] != mod->kw)))
        BAD(d, k > 1 ? "(r, in, kh, kw)" : "(r, in)");
      VKP_TRY(tensor_f32(err, path, d, &in->v[0]));
    }
    in->vshape[0][0] = r, in->vshape[0][1] = cols;
    if (e->t[VKP_LR_DORA]) {
      const vkp_st_tensor *t = e->t[VKP_LR_DORA];
      if ((int64_t)vkp_st_tensor_numel(t) != out || (!e->dora_peft && t->ndim >= 2 && t->shape[0] != out)) {
        if (!e->dora_peft && t->ndim >= 2 && t->shape[0] == 1 && t->shape[1] == mod->in)
          return vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                               "%s: tensor '%s': an input-axis DoRA magnitude (1, in) (LyCORIS wd_on_out=False) is not "
                               "supported; only the output-axis form (out, 1) (peft's lora_magnitude_vector)",
                               path, t->name);
        BAD(t, "(out, 1[, 1, 1]) (the output-axis DoRA magnitude)");
      }
      VKP_TRY(tensor_f32(err, path, t, &in->v[2]));
      in->vshape[2][0] = out, in->vshape[2][1] = 1;
    }
    in->scaling = (isnan(alpha) ? (float)r : alpha) / (float)r;
    return VKP_OK;
  }
  if (!strcmp(method, "loha")) {
    NEED(VKP_LR_HADA_W1_A);
    NEED(VKP_LR_HADA_W1_B);
    NEED(VKP_LR_HADA_W2_A);
    NEED(VKP_LR_HADA_W2_B);
    const vkp_st_tensor *w1a = e->t[VKP_LR_HADA_W1_A], *w1b = e->t[VKP_LR_HADA_W1_B], *w2a = e->t[VKP_LR_HADA_W2_A],
                        *w2b = e->t[VKP_LR_HADA_W2_B];
    int64_t r1 = w1a->ndim == 2 ? w1a->shape[1] : -1, r2 = w2a->ndim == 2 ? w2a->shape[1] : -1;
    if (w1b->ndim != 2 || w1b->shape[0] != r1)
      return vkp_error_set(err, VKP_ERR_SHAPE, "%s: rank mismatch: '%s' has rank %lld, '%s' has %lld rows", path, w1a->name,
                           (long long)r1, w1b->name, (long long)(w1b->ndim ? w1b->shape[0] : 0));
    if (w2b->ndim != 2 || w2b->shape[0] != r2)
      return vkp_error_set(err, VKP_ERR_SHAPE, "%s: rank mismatch: '%s' has rank %lld, '%s' has %lld rows", path, w2a->name,
                           (long long)r2, w2b->name, (long long)(w2b->ndim ? w2b->shape[0] : 0));
    if (r1 != r2)
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: '%s': hada_w1 rank %lld and hada_w2 rank %lld differ", path, e->stem,
                           (long long)r1, (long long)r2);
    if (w1a->shape[0] != out) BAD(w1a, "(out, r)");
    if (w2a->shape[0] != out) BAD(w2a, "(out, r)");
    if (w1b->shape[1] != cols) BAD(w1b, "(r, in*kh*kw)");
    if (w2b->shape[1] != cols) BAD(w2b, "(r, in*kh*kw)");
    in->rank = r1;
    // v[0..1] hold w1a/w1b, v[2] is not used; w2 goes through the same padding below.
    VKP_TRY(tensor_f32(err, path, w1a, &in->v[0]));
    VKP_TRY(tensor_f32(err, path, w1b, &in->v[1]));
    in->scaling = (isnan(alpha) ? (float)r1 : alpha) / (float)r1;
    return VKP_OK;
  }
  // LoKr
  const vkp_st_tensor *w1 = e->t[VKP_LR_LOKR_W1], *w1a = e->t[VKP_LR_LOKR_W1_A], *w1b = e->t[VKP_LR_LOKR_W1_B];
  const vkp_st_tensor *w2 = e->t[VKP_LR_LOKR_W2], *w2a = e->t[VKP_LR_LOKR_W2_A], *w2b = e->t[VKP_LR_LOKR_W2_B];
  if (!w1 && !(w1a && w1b))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: '%s' has neither 'lokr_w1' nor 'lokr_w1_a' + 'lokr_w1_b'", path, e->stem);
  if (!w2 && !(w2a && w2b))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: '%s' has neither 'lokr_w2' nor 'lokr_w2_a' + 'lokr_w2_b'", path, e->stem);
  int64_t r = 0;
  if (w1) {
    if (w1->ndim != 2) BAD(w1, "a 2-D lokr_w1");
    VKP_TRY(tensor_f32(err, path, w1, &in->v[0]));
    in->vshape[0][0] = w1->shape[0], in->vshape[0][1] = w1->shape[1];
  } else {   // w1 = w1_a @ w1_b
    if (w1a->ndim != 2 || w1b->ndim != 2 || w1a->shape[1] != w1b->shape[0])
      return vkp_error_set(err, VKP_ERR_SHAPE, "%s: rank mismatch: '%s' and '%s'", path, w1a->name, w1b->name);
    // The product's shape must be a factor of the weight's before it is formed (a small file can
    // declare factors whose product is gigabytes).
    if (w1a->shape[0] <= 0 || w1b->shape[1] <= 0 || out % w1a->shape[0] || mod->in % w1b->shape[1])
      BAD(w1a, "a factor (out_m, in_m) of the weight");
    float *a, *b;
    VKP_TRY(tensor_f32(err, path, w1a, &a));
    if ((st = tensor_f32(err, path, w1b, &b))) {
      free(a);
      return st;
    }
    in->v[0] = matmul(a, b, w1a->shape[0], w1a->shape[1], w1b->shape[1]);
    free(a), free(b);
    if (!in->v[0]) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    in->vshape[0][0] = w1a->shape[0], in->vshape[0][1] = w1b->shape[1];
    r = w1a->shape[1];
  }
  int64_t a0 = in->vshape[0][0], b0 = in->vshape[0][1];
  if (a0 <= 0 || b0 <= 0 || out % a0 || mod->in % b0) BAD(w1 ? w1 : w1a, "a factor (out_m, in_m) of the weight");
  int64_t out_n = out / a0, e_cols = mod->in / b0 * k;
  if (w2) {
    if ((int64_t)vkp_st_tensor_numel(w2) != out_n * e_cols || w2->shape[0] != out_n) BAD(w2, "(out / out_m, in / in_m[, kh, kw])");
    VKP_TRY(tensor_f32(err, path, w2, &in->v[1]));
    in->vshape[1][0] = out_n, in->vshape[1][1] = e_cols;
  } else {
    if (w2a->ndim != 2 || w2b->ndim < 2 || w2a->shape[1] != w2b->shape[0])
      return vkp_error_set(err, VKP_ERR_SHAPE, "%s: rank mismatch: '%s' has rank %lld, '%s' has %lld rows", path, w2a->name,
                           (long long)(w2a->ndim == 2 ? w2a->shape[1] : -1), w2b->name, (long long)(w2b->ndim ? w2b->shape[0] : -1));
    r = w2a->shape[1];
    if (w2a->shape[0] != out_n) BAD(w2a, "(out / out_m, r)");
    if ((int64_t)vkp_st_tensor_numel(w2b) != r * e_cols) BAD(w2b, "(r, in / in_m * kh * kw)");
    VKP_TRY(tensor_f32(err, path, w2a, &in->v[1]));
    VKP_TRY(tensor_f32(err, path, w2b, &in->v[2]));
    in->vshape[1][0] = out_n, in->vshape[1][1] = r;
    in->vshape[2][0] = r, in->vshape[2][1] = e_cols;
  }
  in->rank = w2 ? 0 : r;   // 0: full w2
  // LyCORIS: scale 1 when both factors are full matrices, else alpha / r.
  in->scaling = w1 && w2 ? 1.0f : (isnan(alpha) ? 1.0f : alpha / (float)r);
  return VKP_OK;
#undef NEED
#undef BAD
}

// Writes slot parameter p from v (rows, cols) zero-padded to p's (rows', cols').
static vkp_status write_padded(vkp_model *m, vkp_param *p, const float *v, int64_t rows, int64_t cols, int64_t prow,
                               int64_t pcol) {
  float *buf = calloc((size_t)(prow * pcol), sizeof *buf);
  if (!buf) return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_OOM, "out of host memory");
  for (int64_t i = 0; i < rows; i++) memcpy(buf + i * pcol, v + i * cols, (size_t)cols * sizeof *buf);
  vkp_status st = vkp_param_write_f32(m, p, buf);
  free(buf);
  return st;
}

vkp_status vkp_lowrank_build(vkp_model *m, const char *path, vkp_lowrank_entry *e, int n, const vkp_adapter_io *io,
                             vkp_adapter **out) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  *out = NULL;
  if (n == 0) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: no adapter tensors", path);
  const char *method = method_of(&e[0]);
  bool dora = e[0].t[VKP_LR_DORA] != NULL;
  for (int i = 0; i < n; i++) {
    const char *mi = method_of(&e[i]);
    if (!mi) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: '%s' has only an alpha / DoRA tensor, no weights", path, e[i].stem);
    if (strcmp(mi, method))
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: '%s' is %s but '%s' is %s: one method per file is supported", path,
                           e[0].stem, method, e[i].stem, mi);
    if ((e[i].t[VKP_LR_DORA] != NULL) != dora)
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: '%s' %s a DoRA magnitude but '%s' %s: all modules or none", path,
                           e[0].stem, dora ? "has" : "has no", e[i].stem, dora ? "has none" : "has one");
    for (int j = 0; j < i; j++)
      if (e[j].mod == e[i].mod)
        return vkp_error_set(err, VKP_ERR_FORMAT, "%s: '%s' and '%s' are the same module '%s'", path, e[j].stem, e[i].stem,
                             e[i].mod->name);
  }
  if (dora && strcmp(method, "lora"))
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: DoRA magnitudes on %s are not supported", path, method);
  lr_info *info = calloc((size_t)n, sizeof *info);
  vkp_module **mods = calloc((size_t)n, sizeof *mods);
  vkp_status st = info && mods ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  int64_t R = 0, full_r = 1;
  bool lokr = !strcmp(method, "lokr");
  for (int i = 0; !st && i < n; i++) {
    mods[i] = e[i].mod;
    st = lr_check(err, path, &e[i], method, &info[i]);
    if (!st && info[i].rank > R) R = info[i].rank;
    if (!st && lokr) {   // a rank that keeps full w2 full: >= max(out_n, in_n) / 2 (method_lokr.c's rule)
      int64_t on = info[i].vshape[1][0], inn = e[i].mod->in / info[i].vshape[0][1];
      full_r = fmax((double)full_r, (double)(on > inn ? on : inn));
    }
  }
  vkp_adapter *a = NULL;
  // LoKr: the method factorises by decompose_factor; try LyCORIS' default and each file factor.
  int factors[8] = {-1}, nf = 1;
  if (!st && lokr)
    for (int i = 0; i < n && nf < 8; i++) {
      int cand[2] = {(int)info[i].vshape[0][0], (int)info[i].vshape[0][1]};
      for (int c = 0; c < 2 && nf < 8; c++) {
        bool seen = false;
        for (int f = 0; f < nf; f++) seen = seen || factors[f] == cand[c];
        if (!seen) factors[nf++] = cand[c];
      }
    }
  for (int f = 0; !st && f < (lokr ? nf : 1); f++) {
    vkp_peft_config cfg;
    vkp_peft_method meth = VKP_PEFT_LORA;
    vkp_peft_method_parse(method, &meth);
    vkp_peft_config_init(&cfg, meth);
    cfg.r = (int)(lokr ? (R ? R : full_r) : R);
    // A uniform scale goes into the config too, so the adapter written as an HF PEFT folder keeps it
    // (peft's per-module alpha_pattern is not modelled: mixed alphas live in the slots only).
    bool uniform = true;
    for (int i = 1; i < n; i++) uniform = uniform && info[i].scaling == info[0].scaling;
    cfg.alpha = uniform ? info[0].scaling * (float)cfg.r : (float)cfg.r;
    cfg.use_dora = dora;
    cfg.decompose_factor = lokr ? factors[f] : cfg.decompose_factor;
    if (io->adapter_name) snprintf(cfg.name, sizeof cfg.name, "%s", io->adapter_name);
    st = vkp_adapter_attach_modules(m, &cfg, mods, n, 0, &a);
    vkp_peft_config_clear(&cfg);
    if (st || !lokr) break;
    bool fit = true;   // the factorisation and the low-rank choice of every slot must be the file's
    for (int s = 0; fit && s < a->nslots; s++)
      for (int i = 0; fit && i < n; i++)
        if (a->slots[s]->module == e[i].mod) {
          vkp_adapter_slot *sl = a->slots[s];
          fit = sl->p[0]->shape[0] == info[i].vshape[0][0] && sl->p[0]->shape[1] == info[i].vshape[0][1] &&
                sl->lowrank == (info[i].rank > 0) && sl->p[1]->shape[0] == info[i].vshape[1][0];
        }
    if (fit) break;
    vkp_adapter_discard(m, a), a = NULL;
    if (f + 1 == nf)
      st = vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                         "%s: LoKr factors of '%s' (lokr_w1 %lld x %lld%s) are not a factorisation vkpeft's LoKr reproduces", path,
                         e[0].stem, (long long)info[0].vshape[0][0], (long long)info[0].vshape[0][1],
                         info[0].rank ? ", low-rank w2" : ", full w2");
  }
  if (!st && a->nslots != n)
    st = vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: %d of the file's %d modules take a %s adapter", path, a->nslots, n, method);
  for (int s = 0; !st && s < a->nslots; s++) {
    vkp_adapter_slot *sl = a->slots[s];
    int i = 0;
    while (i < n && e[i].mod != sl->module) i++;
    lr_info *in = &info[i];
    sl->scaling = in->scaling;
    int64_t cols = vkp_param_numel(sl->p[0]) / sl->p[0]->shape[0];
    if (!strcmp(method, "lora")) {
      st = write_padded(m, sl->p[0], in->v[0], in->rank, in->vshape[0][1], R, cols);
      if (!st) st = write_padded(m, sl->p[1], in->v[1], sl->module->out, in->rank, sl->module->out, R);
      if (!st && dora) st = vkp_param_write_f32(m, sl->p[2], in->v[2]);
    } else if (!strcmp(method, "loha")) {
      const vkp_st_tensor *w2a = e[i].t[VKP_LR_HADA_W2_A], *w2b = e[i].t[VKP_LR_HADA_W2_B];
      float *x = NULL, *y = NULL;
      int64_t o = sl->module->out, c = sl->p[1]->shape[1];
      st = write_padded(m, sl->p[0], in->v[0], o, in->rank, o, R);
      if (!st) st = write_padded(m, sl->p[1], in->v[1], in->rank, c, R, c);
      if (!st) st = tensor_f32(err, path, w2a, &x);
      if (!st) st = tensor_f32(err, path, w2b, &y);
      if (!st) st = write_padded(m, sl->p[2], x, o, in->rank, o, R);
      if (!st) st = write_padded(m, sl->p[3], y, in->rank, c, R, c);
      free(x), free(y);
    } else {   // LoKr
      st = vkp_param_write_f32(m, sl->p[0], in->v[0]);
      if (!st && !sl->lowrank) st = vkp_param_write_f32(m, sl->p[1], in->v[1]);
      if (!st && sl->lowrank) {
        int64_t on = sl->p[1]->shape[0], ec = sl->p[2]->shape[1];
        st = write_padded(m, sl->p[1], in->v[1], on, in->rank, on, R);
        if (!st) st = write_padded(m, sl->p[2], in->v[2], in->rank, ec, R, ec);
      }
    }
  }
  for (int i = 0; info && i < n; i++) free(info[i].v[0]), free(info[i].v[1]), free(info[i].v[2]);
  free(info), free(mods);
  if (st) {
    if (a) vkp_adapter_discard(m, a);
    return st;
  }
  *out = a;
  return VKP_OK;
}

// ---- reading ---------------------------------------------------------------------------------------

typedef struct spell_user {
  const char *prefix;
  bool underscores;   // kohya: '.' -> '_'
} spell_user;

static void spell_fn(void *user, const char *name, char *out, size_t cap) {
  const spell_user *u = user;
  size_t o = (size_t)snprintf(out, cap, "%s", u->prefix);
  for (const char *c = name; *c && o + 1 < cap; c++) out[o++] = u->underscores && *c == '.' ? '_' : *c;
  out[o < cap ? o : cap - 1] = '\0';
}

static bool is_safetensors_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool kohya_detect(const char *path) {
  if (!is_safetensors_file(path)) return false;
  vkp_error err = {0};
  vkp_safetensors *sf = NULL;
  if (vkp_safetensors_open(path, &sf, &err)) return false;
  bool yes = false;
  for (size_t i = 0; !yes && i < vkp_safetensors_count(sf); i++)
    for (int p = 0; !yes && kohya_prefixes[p]; p++) yes = !strncmp(vkp_safetensors_at(sf, i)->name, kohya_prefixes[p], strlen(kohya_prefixes[p]));
  vkp_safetensors_free(sf);
  return yes;
}

// Groups the file's keys by module: `split` names a key's stem (the module key) and role; the stem
// starts with one of `prefixes`, and the module is the one whose name spelled with that prefix is
// the stem. See the file comment for what happens to keys that match nothing.
vkp_status vkp_lowrank_group(vkp_model *m, const char *path, const vkp_safetensors *sf, const vkp_adapter_io *io,
                             const char *const *prefixes, bool underscores,
                             bool (*split)(const char *key, char *stem, size_t cap, int *role, bool *peft_dora),
                             vkp_lowrank_entry **out, int *nout) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  // io->key_prefix: only that part of a shared file; keys under the format's other prefixes
  // belong to another model of the pipeline and are left alone without a word.
  const char *const *all = prefixes, *one[2] = {io->key_prefix, NULL};
  if (io->key_prefix) prefixes = one;
  size_t count = vkp_safetensors_count(sf);
  vkp_lowrank_entry *e = calloc(count + 1, sizeof *e);
  int *comp = calloc(count + 1, sizeof *comp);   // per entry: its prefix index
  int n = 0, np = 0;
  while (prefixes[np]) np++;
  int matched[8] = {0}, total[8] = {0};
  if (!e || !comp) {
    free(e), free(comp);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  char unmatched[600] = "";
  int n_unmatched = 0;
  vkp_status st = VKP_OK;
  for (size_t i = 0; i < count; i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    char stem[400];
    int role = -1, p = -1;
    bool peft_dora = false;
    if (split(t->name, stem, sizeof stem, &role, &peft_dora))
      for (int k = 0; k < np && p < 0; k++)
        if (!strncmp(stem, prefixes[k], strlen(prefixes[k]))) p = k;
    bool foreign = false;
    for (int k = 0; !foreign && p < 0 && io->key_prefix && role >= 0 && all[k]; k++) foreign = !strncmp(stem, all[k], strlen(all[k]));
    if (foreign) continue;
    if (p < 0) {   // not an adapter key of this format
      if (n_unmatched++ < 3)
        snprintf(unmatched + strlen(unmatched), sizeof unmatched - strlen(unmatched), "%s'%s'", n_unmatched > 1 ? ", " : "", t->name);
      continue;
    }
    int j = 0;
    while (j < n && strcmp(e[j].stem, stem)) j++;
    if (j == n) {
      snprintf(e[n].stem, sizeof e[n].stem, "%s", stem);
      spell_user u = {prefixes[p], underscores};
      e[n].mod = vkp_adapter_find_module(m, stem, spell_fn, &u);
      comp[n] = p;
      total[p]++;
      if (e[n].mod) matched[p]++;
      n++;
    }
    if (e[j].t[role]) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensors '%s' and '%s' are the same parameter", path, e[j].t[role]->name, t->name);
      break;
    }
    e[j].t[role] = t;
    e[j].dora_peft = e[j].dora_peft || peft_dora;
  }
  int any = 0;
  for (int k = 0; k < np; k++) any += matched[k];
  // Unmatched modules of a prefix that matched something, in the order of the file.
  int bad = 0;
  char badlist[600] = "";
  for (int j = 0; !st && j < n; j++) {
    if (e[j].mod || !matched[comp[j]]) continue;
    if (bad++ < 3) {
      const vkp_st_tensor *t = NULL;
      for (int r = 0; !t && r < VKP_LR_ROLES; r++) t = e[j].t[r];
      snprintf(badlist + strlen(badlist), sizeof badlist - strlen(badlist), "%s'%s'", bad > 1 ? ", " : "", t->name);
    }
  }
  if (!st && !any)
    st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: no key names a module of the model (%d keys; the first: '%s')", path, (int)count,
                       count ? vkp_safetensors_at(sf, 0)->name : "none");
  if (!st && (bad || n_unmatched) && !io->skip_unmatched) {
    if (bad)
      st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: %d key%s name%s no module of the model: %s%s", path, bad, bad > 1 ? "s" : "",
                         bad > 1 ? "" : "s", badlist, bad > 3 ? ", ..." : "");
    else
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %d key%s %s not adapter tensors of this format: %s%s", path, n_unmatched,
                         n_unmatched > 1 ? "s" : "", n_unmatched > 1 ? "are" : "is", unmatched, n_unmatched > 3 ? ", ..." : "");
  }
  if (!st && (bad || n_unmatched))
    fprintf(stderr, "vkpeft: %s: skipping %d key%s that name%s no module of the model (%s%s)\n", path, bad + n_unmatched,
            bad + n_unmatched > 1 ? "s" : "", bad + n_unmatched > 1 ? "" : "s", bad ? badlist : unmatched, bad + n_unmatched > 3 ? ", ..." : "");
  for (int k = 0; !st && k < np; k++)
    if (total[k] && !matched[k])
      fprintf(stderr, "vkpeft: %s: %d module(s) under '%s' belong to another model of the pipeline: not applied here\n", path,
              total[k], prefixes[k]);
  // Keep the matched entries.
  int w = 0;
  for (int j = 0; !st && j < n; j++)
    if (e[j].mod) e[w++] = e[j];
  free(comp);
  if (st) {
    free(e);
    return st;
  }
  *out = e;
  *nout = w;
  return VKP_OK;
}

static bool kohya_split(const char *key, char *stem, size_t cap, int *role, bool *peft_dora) {
  (void)peft_dora;
  for (int r = 0; r < VKP_LR_ROLES; r++)
    if (ends_with(key, kohya_sfx[r])) {
      snprintf(stem, cap, "%.*s", (int)(strlen(key) - strlen(kohya_sfx[r])), key);
      *role = r;
      return true;
    }
  return false;
}

static vkp_status kohya_read(vkp_model *m, const char *path, const vkp_adapter_io *io, vkp_adapter **out) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  *out = NULL;
  vkp_safetensors *sf = NULL;
  VKP_TRY(vkp_safetensors_open(path, &sf, err));
  vkp_lowrank_entry *e = NULL;
  int n = 0;
  vkp_status st = vkp_lowrank_group(m, path, sf, io, kohya_prefixes, true, kohya_split, &e, &n);
  if (!st) st = vkp_lowrank_build(m, path, e, n, io, out);
  free(e);
  vkp_safetensors_free(sf);
  return st;
}

// ---- writing ---------------------------------------------------------------------------------------

// The rank actually used by a padded factor pair: trailing components whose `cols` (column k of a
// (rows, R) matrix) and `rows` (row k of a (R, c) matrix) are all zero contribute nothing.
static int64_t used_rank(const float *colm, int64_t rows, const float *rowm, int64_t c, int64_t R) {
  int64_t r = R;
  while (r > 1) {
    bool zero = true;
    for (int64_t i = 0; zero && i < rows; i++) zero = colm[i * R + r - 1] == 0.0f;
    for (int64_t j = 0; zero && j < c; j++) zero = rowm[(r - 1) * c + j] == 0.0f;
    if (!zero) break;
    r--;
  }
  return r;
}

// (rows, R) -> (rows, r) columns; (R, c) -> (r, c) rows.
static void take_cols(const float *v, int64_t rows, int64_t R, int64_t r, float *out) {
  for (int64_t i = 0; i < rows; i++) memcpy(out + i * r, v + i * R, (size_t)r * sizeof *out);
}

static vkp_status add(vkp_safetensors_writer *w, const char *stem, const char *sfx, int ndim, const int64_t *shape,
                      const float *v, vkp_error *err) {
  char key[600];
  snprintf(key, sizeof key, "%s%s", stem, sfx);
  return vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, ndim, shape, v, err);
}

static vkp_status kohya_write(vkp_model *m, const vkp_adapter *a, const char *path, const vkp_adapter_io *io) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  vkp_peft_method meth = a->cfg.method;
  if (meth != VKP_PEFT_LORA && meth != VKP_PEFT_LOHA && meth != VKP_PEFT_LOKR)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: the kohya format stores LoRA, DoRA, LoHa and LoKr, not %s", path,
                         vkp_peft_method_name(meth));
  if (a->nsaved || a->nshared)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: the kohya format has no place for trained base parameters (modules_to_save)", path);
  const char *prefix = io->key_prefix;
  if (!prefix) prefix = a->nslots && !strncmp(a->slots[0]->module->name, "text_model.", 11) ? "lora_te_" : "lora_unet_";
  vkp_safetensors_writer *w = NULL;
  VKP_TRY(vkp_safetensors_writer_new(&w, err));
  vkp_status st = VKP_OK;
  int64_t max_r = 0;
  float first_alpha = 0;
  for (int s = 0; !st && s < a->nslots; s++) {
    vkp_adapter_slot *sl = a->slots[s];
    vkp_module *mod = sl->module;
    char stem[512];
    spell_user u = {prefix, true};
    spell_fn(&u, mod->name, stem, sizeof stem);
    float *p[VKP_SLOT_MAX_PARAMS] = {0};
    for (int i = 0; i < sl->np && !st; i++)
      if (!(p[i] = vkp_peft_read_param(m, sl->p[i]))) st = vkp_error_set(err, VKP_ERR_OOM, "%s: cannot read '%s'", path, sl->p[i]->name);
    float *t1 = NULL, *t2 = NULL, *t3 = NULL, *t4 = NULL;
    int64_t r = 0;
    float alpha = 0;
    bool conv = mod->kind == VKP_MODULE_CONV2D;
    int64_t out = mod->out, R = a->cfg.r;
    if (!st && meth == VKP_PEFT_LORA) {
      int64_t cols = vkp_param_numel(sl->p[0]) / R;
      r = used_rank(p[1], out, p[0], cols, R);
      t1 = malloc((size_t)(out * r) * sizeof *t1);
      if (!t1) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      if (!st) take_cols(p[1], out, R, r, t1);
      int64_t ds[4] = {r, mod->in, mod->kh, mod->kw}, us[4] = {out, r, 1, 1};
      alpha = sl->scaling * (float)r;
      if (!st) st = add(w, stem, ".lora_down.weight", conv ? 4 : 2, ds, p[0], err);   // rows 0..r-1 of A
      if (!st) st = add(w, stem, ".lora_up.weight", conv ? 4 : 2, us, t1, err);
      if (!st && a->cfg.use_dora) st = add(w, stem, ".dora_scale", conv ? 4 : 2, (int64_t[]){out, 1, 1, 1}, p[2], err);
    } else if (!st && meth == VKP_PEFT_LOHA) {
      int64_t c = sl->p[1]->shape[1];
      r = R;
      while (r > 1) {   // trailing components zero in all four factors
        int64_t k = r - 1;
        bool zero = true;
        for (int64_t i = 0; zero && i < out; i++) zero = p[0][i * R + k] == 0 && p[2][i * R + k] == 0;
        for (int64_t j = 0; zero && j < c; j++) zero = p[1][k * c + j] == 0 && p[3][k * c + j] == 0;
        if (!zero) break;
        r--;
      }
      t1 = malloc((size_t)(out * r) * sizeof *t1), t2 = malloc((size_t)(out * r) * sizeof *t2);
      if (!t1 || !t2) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      if (!st) take_cols(p[0], out, R, r, t1), take_cols(p[2], out, R, r, t2);
      alpha = sl->scaling * (float)r;
      if (!st) st = add(w, stem, ".hada_w1_a", 2, (int64_t[]){out, r}, t1, err);
      if (!st) st = add(w, stem, ".hada_w1_b", 2, (int64_t[]){r, c}, p[1], err);
      if (!st) st = add(w, stem, ".hada_w2_a", 2, (int64_t[]){out, r}, t2, err);
      if (!st) st = add(w, stem, ".hada_w2_b", 2, (int64_t[]){r, c}, p[3], err);
    } else if (!st) {   // LoKr
      int64_t a0 = sl->p[0]->shape[0], b0 = sl->p[0]->shape[1];
      if (sl->lowrank) {
        int64_t on = sl->p[1]->shape[0], ec = sl->p[2]->shape[1];
        r = used_rank(p[1], on, p[2], ec, R);
        t1 = malloc((size_t)(on * r) * sizeof *t1);
        if (!t1) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
        if (!st) take_cols(p[1], on, R, r, t1);
        alpha = sl->scaling * (float)r;
        if (!st) st = add(w, stem, ".lokr_w1", 2, (int64_t[]){a0, b0}, p[0], err);
        if (!st) st = add(w, stem, ".lokr_w2_a", 2, (int64_t[]){on, r}, t1, err);
        int64_t bs[4] = {r, mod->in / b0, mod->kh, mod->kw};
        if (!st) st = add(w, stem, ".lokr_w2_b", conv ? 4 : 2, conv ? bs : (int64_t[]){r, ec}, p[2], err);
      } else {   // LyCORIS applies full factors at scale 1: the scaling is folded into w1
        r = R;
        alpha = (float)R;
        for (int64_t i = 0; i < a0 * b0; i++) p[0][i] *= sl->scaling;
        if (!st) st = add(w, stem, ".lokr_w1", 2, (int64_t[]){a0, b0}, p[0], err);
        if (!st) st = add(w, stem, ".lokr_w2", sl->p[1]->ndim, sl->p[1]->shape, p[1], err);
      }
    }
    if (!st) st = add(w, stem, ".alpha", 0, (int64_t[]){1}, &alpha, err);
    if (r > max_r) max_r = r;
    if (s == 0) first_alpha = alpha;
    free(t1), free(t2), free(t3), free(t4);
    for (int i = 0; i < sl->np; i++) free(p[i]);
  }
  char v[64];
  bool lycoris = meth != VKP_PEFT_LORA || a->cfg.use_dora;
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "ss_network_module", lycoris ? "lycoris.kohya" : "networks.lora", err);
  snprintf(v, sizeof v, "%lld", (long long)max_r);
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "ss_network_dim", v, err);
  snprintf(v, sizeof v, "%g", (double)first_alpha);
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "ss_network_alpha", v, err);
  if (!st && lycoris) {
    snprintf(v, sizeof v, "{\"algo\": \"%s\"%s}", meth == VKP_PEFT_LOHA ? "loha" : meth == VKP_PEFT_LOKR ? "lokr" : "lora",
             a->cfg.use_dora ? ", \"dora_wd\": \"True\"" : "");
    st = vkp_safetensors_writer_set_metadata(w, "ss_network_args", v, err);
  }
  if (!st && io->base_model_version) st = vkp_safetensors_writer_set_metadata(w, "ss_base_model_version", io->base_model_version, err);
  for (int i = 0; !st && io->metadata && io->metadata[i] && io->metadata[i + 1]; i += 2)
    st = vkp_safetensors_writer_set_metadata(w, io->metadata[i], io->metadata[i + 1], err);
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  return st;
}

const vkp_adapter_format vkp_adapter_format_kohya = {
    .name = "kohya",
    .description = "kohya / A1111 / LyCORIS .safetensors (lora_unet_*, lora_te_*: LoRA, LoCon, DoRA, LoHa, LoKr)",
    .detect = kohya_detect,
    .read = kohya_read,
    .write = kohya_write,
};

vkp_status vkp_adapter_load(vkp_model *m, const char *path, vkp_adapter **out) { return vkp_adapter_read(m, path, NULL, NULL, out); }

vkp_status vkp_adapter_save_format(vkp_model *m, const vkp_adapter *a, const char *path, const char *format) {
  return vkp_adapter_write(m, a, path, format, NULL);
}
