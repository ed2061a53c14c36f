// vit.c — ViT for image classification (transformers' ViTForImageClassification).
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>

#include <cjson/cJSON.h>

#include "vkp_fileio.h"
#include "vkp_json.h"
#include "vkp_safetensors.h"
#include "vkp_vit.h"

// config.json keys: transformers' ViTConfig defaults, and the ranges vkpeft accepts.
static const vkp_json_choice vit_model_types[] = {{"vit", 0}, {NULL, 0}};
static const vkp_json_choice vit_acts[] = {{"gelu", 0}, {"gelu_new", 1}, {"gelu_pytorch_tanh", 1}, {NULL, 0}};
#define F(member) offsetof(vkp_vit_config, member)
static const vkp_json_field vit_fields[] = {
    {"model_type", VKP_JSON_ENUM, VKP_JSON_CHECK_ONLY, .choices = vit_model_types, .flags = VKP_JSON_KEEP},
    {"image_size", VKP_JSON_INT, F(image_size), .lo = 1, .hi = 8192, .def = 224},
    {"patch_size", VKP_JSON_INT, F(patch_size), .lo = 1, .hi = 1024, .def = 16},
    {"num_channels", VKP_JSON_INT, F(num_channels), .lo = 1, .hi = 64, .def = 3},
    {"hidden_size", VKP_JSON_INT, F(hidden_size), .lo = 1, .hi = 16384, .def = 768},
    {"num_hidden_layers", VKP_JSON_INT, F(num_hidden_layers), .lo = 0, .hi = VKP_VIT_MAX_LAYERS, .def = 12},
    {"num_attention_heads", VKP_JSON_INT, F(num_attention_heads), .lo = 1, .hi = 1024, .def = 12},
    {"intermediate_size", VKP_JSON_INT, F(intermediate_size), .lo = 1, .hi = 65536, .def = 3072},
    {"layer_norm_eps", VKP_JSON_FLOAT, F(layer_norm_eps), .lo = 0, .hi = INFINITY, .def = 1e-12,
     .flags = VKP_JSON_OPEN_LO},
    {"qkv_bias", VKP_JSON_BOOL, F(qkv_bias), .def = 1},
    {"hidden_act", VKP_JSON_ENUM, F(gelu_tanh), .size = sizeof(bool), .choices = vit_acts, .def = 0,
     .flags = VKP_JSON_UNSUPPORTED},
    // Read last, over the count of id2label (see vkp_vit_config_load).
    {"num_labels", VKP_JSON_INT, F(num_labels), .lo = 1, .hi = 256, .def = 2, .flags = VKP_JSON_KEEP},
};
#undef F
#define N_VIT_FIELDS ((int)(sizeof vit_fields / sizeof *vit_fields))

void vkp_vit_config_default(vkp_vit_config *c) {
  memset(c, 0, sizeof *c);
  vkp_json_field_defaults(vit_fields, N_VIT_FIELDS, c);
}

vkp_status vkp_vit_config_load(const char *path, vkp_vit_config *c, vkp_error *err) {
  cJSON *j = NULL;
  VKP_TRY(vkp_json_load_object(path, 16 << 20, &j, err));
  vkp_vit_config_default(c);
  // num_labels defaults to the size of id2label, then to 2.
  const cJSON *labels = cJSON_GetObjectItemCaseSensitive(j, "id2label");
  int nl = labels && cJSON_IsObject(labels) ? cJSON_GetArraySize(labels) : 0;
  c->num_labels = nl ? nl : 2;
  vkp_status st = vkp_json_read_fields(j, path, vit_fields, N_VIT_FIELDS, c, err);
  if (!st && c->num_labels > 256) st = vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: more than 256 labels", path);
  for (int i = 0; !st && i < c->num_labels; i++) {
    char k[16];
    snprintf(k, sizeof k, "%d", i);
    const cJSON *l = labels ? cJSON_GetObjectItemCaseSensitive(labels, k) : NULL;
    snprintf(c->labels[i], sizeof c->labels[i], "%s", l && cJSON_IsString(l) ? l->valuestring : k);
    if (!l) snprintf(c->labels[i], sizeof c->labels[i], "LABEL_%d", i);
  }
  if (!st && c->hidden_size % c->num_attention_heads)
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: hidden_size %d is not divisible by num_attention_heads %d", path, c->hidden_size, c->num_attention_heads);
  if (!st && c->image_size % c->patch_size)
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: image_size %d is not divisible by patch_size %d", path, c->image_size, c->patch_size);
  cJSON_Delete(j);
  return st;
}

vkp_status vkp_vit_config_save(const vkp_vit_config *c, const char *path, vkp_error *err) {
  cJSON *j = cJSON_CreateObject();
  cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString("ViTForImageClassification"));
  cJSON_AddStringToObject(j, "model_type", "vit");
  cJSON_AddNumberToObject(j, "image_size", c->image_size);
  cJSON_AddNumberToObject(j, "patch_size", c->patch_size);
  cJSON_AddNumberToObject(j, "num_channels", c->num_channels);
  cJSON_AddNumberToObject(j, "hidden_size", c->hidden_size);
  cJSON_AddNumberToObject(j, "num_hidden_layers", c->num_hidden_layers);
  cJSON_AddNumberToObject(j, "num_attention_heads", c->num_attention_heads);
  cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate_size);
  cJSON_AddNumberToObject(j, "layer_norm_eps", c->layer_norm_eps);
  cJSON_AddBoolToObject(j, "qkv_bias", c->qkv_bias);
  cJSON_AddStringToObject(j, "hidden_act", c->gelu_tanh ? "gelu_new" : "gelu");
  cJSON_AddNumberToObject(j, "hidden_dropout_prob", 0.0);
  cJSON_AddNumberToObject(j, "attention_probs_dropout_prob", 0.0);
  cJSON_AddNumberToObject(j, "initializer_range", 0.02);
  cJSON *id2 = cJSON_AddObjectToObject(j, "id2label"), *l2i = cJSON_AddObjectToObject(j, "label2id");
  for (int i = 0; i < c->num_labels; i++) {
    char k[16];
    snprintf(k, sizeof k, "%d", i);
    cJSON_AddStringToObject(id2, k, c->labels[i]);
    cJSON_AddNumberToObject(l2i, c->labels[i], i);
  }
  vkp_status st = vkp_json_write_atomic(path, j, err);
  cJSON_Delete(j);
  return st;
}

static vkp_module *linear(vkp_model *m, const char *name, const char *alias, int layer, int64_t out, int64_t in, bool bias) {
  int64_t shape[2] = {out, in};
  return vkp_model_add_module(m, name, alias, VKP_MODULE_LINEAR, layer, 2, shape, bias ? out : 0);
}

static vkp_module *norm(vkp_model *m, const char *name, const char *alias, int layer, int64_t c) {
  return vkp_model_add_module(m, name, alias, VKP_MODULE_LAYER_NORM, layer, 1, &c, c);
}

static vkp_status init_weights(vkp_vit *v, uint64_t seed) {
  vkp_model *m = v->model;
  for (int i = 0; i < m->nparams; i++) {
    vkp_param *p = m->params[i];
    const vkp_module *mod = p->module;
    bool is_bias = p == (mod ? mod->bias : NULL);
    if (mod && mod->kind == VKP_MODULE_LAYER_NORM) VKP_TRY(vkp_param_fill(m, p, is_bias ? 0.0f : 1.0f));
    else if (is_bias) VKP_TRY(vkp_param_fill(m, p, 0.0f));
    else VKP_TRY(vkp_param_init_normal(m, p, 0.02f, seed));
  }
  return VKP_OK;
}

// Checked before anything is allocated: the parameters (f32) must fit the device's memory and
// each tensor one allocation. Records the limit on the context.
static vkp_status check_size(vkp_ctx *ctx, const vkp_vit_config *c) {
  const vkp_device_info *info = vkp_ctx_info(ctx);
  double C = c->hidden_size, I = c->intermediate_size, grid = c->image_size / c->patch_size;
  double patch = C * c->num_channels * c->patch_size * c->patch_size, pos = (grid * grid + 1) * C;
  double layer = 4 * C * C + (c->qkv_bias ? 3 : 0) * C + C + 4 * C + 2 * I * C + I + C;
  double total = 4 * (patch + C + C + pos + c->num_hidden_layers * layer + 2 * C + c->num_labels * (C + 1));
  double largest = 4 * fmax(fmax(patch, pos), fmax(I * C, (double)c->num_labels * C));
  double heap = (double)info->device_local_bytes, alloc = (double)info->max_allocation_size;
  const double gib = 1024.0 * 1024.0 * 1024.0;
  if (heap > 0 && total > heap)
    return vkp_error_set(vkp_ctx_err(ctx), VKP_ERR_UNSUPPORTED,
                         "the model's parameters need %.2f GiB (hidden_size %d, intermediate_size %d, %d layers, image %d / patch %d), "
                         "over the device's %.2f GiB (%s; VKPEFT_DEVICE picks another device)",
                         total / gib, c->hidden_size, c->intermediate_size, c->num_hidden_layers, c->image_size,
                         c->patch_size, heap / gib, info->name);
  if (alloc > 0 && largest > alloc)
    return vkp_error_set(vkp_ctx_err(ctx), VKP_ERR_UNSUPPORTED,
                         "one of the model's tensors needs %.2f GiB (position embeddings: %.0f patches of image %d / patch %d, "
                         "hidden_size %d), over the device's largest allocation of %.2f GiB (%s)",
                         largest / gib, grid * grid, c->image_size, c->patch_size, c->hidden_size, alloc / gib, info->name);
  return VKP_OK;
}

vkp_status vkp_vit_new(vkp_ctx *ctx, const vkp_vit_config *cfg, uint64_t seed, vkp_vit **out) {
  *out = NULL;
  VKP_TRY(check_size(ctx, cfg));
  vkp_vit *v = calloc(1, sizeof *v);
  if (!v) return VKP_ERR_OOM;
  v->cfg = *cfg;
  vkp_status st = vkp_model_new(ctx, &v->model);
  if (st) {
    free(v);
    return st;
  }
  vkp_model *m = v->model;
  int64_t C = cfg->hidden_size, I = cfg->intermediate_size, grid = cfg->image_size / cfg->patch_size;
  int64_t pshape[4] = {C, cfg->num_channels, cfg->patch_size, cfg->patch_size};
  v->patch = vkp_model_add_module(m, "vit.embeddings.patch_embeddings.projection", NULL, VKP_MODULE_CONV2D, -1, 4, pshape, C);
  st = v->patch ? VKP_OK : VKP_ERR_OOM;
  if (!st) st = vkp_model_add_param(m, "vit.embeddings.cls_token", VKP_DTYPE_F32, 3, (int64_t[]){1, 1, C}, &v->cls_token);
  if (!st) st = vkp_model_add_param(m, "vit.embeddings.position_embeddings", VKP_DTYPE_F32, 3, (int64_t[]){1, grid * grid + 1, C}, &v->pos_embed);
  for (int l = 0; l < cfg->num_hidden_layers && !st; l++) {
    vkp_vit_layer *L = &v->layers[l];
    char n[256], a[256];
#define NAMES(hub, alias) (snprintf(n, sizeof n, "vit.encoder.layer.%d%s", l, hub), snprintf(a, sizeof a, "vit.layers.%d%s", l, alias))
    NAMES("", "");
    L->block = vkp_model_add_module(m, n, a, VKP_MODULE_BLOCK, l, 0, NULL, 0);
    NAMES(".attention", ".attention");
    L->attention = vkp_model_add_module(m, n, a, VKP_MODULE_ATTENTION, l, 0, NULL, 0);
    NAMES(".layernorm_before", ".layernorm_before");
    L->ln_before = norm(m, n, a, l, C);
    NAMES(".attention.attention.query", ".attention.q_proj");
    L->query = linear(m, n, a, l, C, C, cfg->qkv_bias);
    NAMES(".attention.attention.key", ".attention.k_proj");
    L->key = linear(m, n, a, l, C, C, cfg->qkv_bias);
    NAMES(".attention.attention.value", ".attention.v_proj");
    L->value = linear(m, n, a, l, C, C, cfg->qkv_bias);
    NAMES(".attention.output.dense", ".attention.o_proj");
    L->attn_out = linear(m, n, a, l, C, C, true);
    NAMES(".layernorm_after", ".layernorm_after");
    L->ln_after = norm(m, n, a, l, C);
    NAMES(".intermediate.dense", ".mlp.fc1");
    L->fc1 = linear(m, n, a, l, I, C, true);
    NAMES(".output.dense", ".mlp.fc2");
    L->fc2 = linear(m, n, a, l, C, I, true);
#undef NAMES
    if (!L->block || !L->attention || !L->ln_before || !L->query || !L->key || !L->value || !L->attn_out || !L->ln_after ||
        !L->fc1 || !L->fc2)
      st = VKP_ERR_OOM;
    else
      L->block->in = L->block->out = L->attention->in = L->attention->out = C;
  }
  if (!st) {
    v->final_ln = norm(m, "vit.layernorm", NULL, -1, C);
    v->classifier = linear(m, "classifier", NULL, -1, cfg->num_labels, C, true);
    if (!v->final_ln || !v->classifier) st = VKP_ERR_OOM;
  }
  if (!st) st = init_weights(v, seed);
  if (st) {
    vkp_vit_free(v);
    return st;
  }
  *out = v;
  return VKP_OK;
}

void vkp_vit_free(vkp_vit *v) {
  if (!v) return;
  vkp_model_free(v->model);
  free(v);
}

// Bicubic (a = -0.75, align_corners=False, as torch.nn.functional.interpolate) resampling of a
// (g0 x g0) grid of C-vectors to (g1 x g1).
static double cubic(double x) {
  const double a = -0.75;
  x = fabs(x);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

static void resample_grid(const float *src, int g0, float *dst, int g1, int C) {
  double scale = (double)g0 / g1;
  for (int y = 0; y < g1; y++)
    for (int x = 0; x < g1; x++) {
      double sy = (y + 0.5) * scale - 0.5, sx = (x + 0.5) * scale - 0.5;
      int iy = (int)floor(sy), ix = (int)floor(sx);
      for (int c = 0; c < C; c++) {
        double acc = 0;
        for (int dy = -1; dy <= 2; dy++)
          for (int dx = -1; dx <= 2; dx++) {
            int yy = iy + dy < 0 ? 0 : iy + dy >= g0 ? g0 - 1 : iy + dy;
            int xx = ix + dx < 0 ? 0 : ix + dx >= g0 ? g0 - 1 : ix + dx;
            acc += cubic(sy - (iy + dy)) * cubic(sx - (ix + dx)) * src[(yy * g0 + xx) * C + c];
          }
        dst[(y * g1 + x) * C + c] = (float)acc;
      }
    }
}

// Loads the checkpoint into v, except the parameters in `skip` (handled by the caller).
static vkp_status load_except(vkp_vit *v, const char *path, vkp_param **skip, int nskip, vkp_load_report *rep) {
  char *names[4];
  for (int i = 0; i < nskip; i++) names[i] = skip[i]->name, skip[i]->name = "#not-loaded";
  vkp_status st = vkp_model_load_safetensors(v->model, path, NULL, rep, NULL, NULL);
  for (int i = 0; i < nskip; i++) skip[i]->name = names[i];
  rep->missing -= nskip;   // expected: the caller fills them
  return st;
}

// Compares the tensors whose shapes follow from config.json (embeddings, the first and last
// layer, under either spelling) with the checkpoint's header: a config that does not describe the
// checkpoint is named before anything is allocated.
static vkp_status check_checkpoint_shapes(const char *path, const vkp_vit_config *c, vkp_error *err) {
  vkp_safetensors *sf = NULL;
  VKP_TRY(vkp_safetensors_open(path, &sf, err));
  int64_t C = c->hidden_size, I = c->intermediate_size, g = c->image_size / c->patch_size;
  typedef struct expected { const char *name, *alias; int ndim; int64_t shape[4]; } expected;
  expected want[6] = {
      {"vit.embeddings.patch_embeddings.projection.weight", NULL, 4, {C, c->num_channels, c->patch_size, c->patch_size}},
      {"vit.embeddings.position_embeddings", NULL, 3, {1, g * g + 1, C}},
  };
  int n = 2;
  char names[4][2][96];
  for (int k = 0; k < 2 && c->num_hidden_layers > 0; k++) {
    int l = k ? c->num_hidden_layers - 1 : 0;
    snprintf(names[2 * k][0], sizeof names[0][0], "vit.encoder.layer.%d.attention.attention.query.weight", l);
    snprintf(names[2 * k][1], sizeof names[0][0], "vit.layers.%d.attention.q_proj.weight", l);
    snprintf(names[2 * k + 1][0], sizeof names[0][0], "vit.encoder.layer.%d.intermediate.dense.weight", l);
    snprintf(names[2 * k + 1][1], sizeof names[0][0], "vit.layers.%d.mlp.fc1.weight", l);
    want[n++] = (expected){names[2 * k][0], names[2 * k][1], 2, {C, C}};
    want[n++] = (expected){names[2 * k + 1][0], names[2 * k + 1][1], 2, {I, C}};
  }
  vkp_status st = VKP_OK;
  for (int i = 0; i < n && !st; i++) {
    const vkp_st_tensor *t = vkp_safetensors_find(sf, want[i].name);
    if (!t && want[i].alias) t = vkp_safetensors_find(sf, want[i].alias);
    if (!t) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' is missing (config.json: %d layers)", path, want[i].name,
                         c->num_hidden_layers);
      break;
    }
    bool same = t->ndim == want[i].ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == want[i].shape[d];
    if (!same) {
      char got[128], exp[128];
      st = vkp_error_set(err, VKP_ERR_SHAPE,
                         "%s: tensor '%s' is %s, but config.json (hidden_size %d, intermediate_size %d, image_size %d, "
                         "patch_size %d, num_channels %d) needs %s",
                         path, t->name, vkp_shape_text(t->ndim, t->shape, got, sizeof got), c->hidden_size,
                         c->intermediate_size, c->image_size, c->patch_size, c->num_channels,
                         vkp_shape_text(want[i].ndim, want[i].shape, exp, sizeof exp));
    }
  }
  vkp_safetensors_free(sf);
  return st;
}

vkp_status vkp_vit_load_labels(vkp_ctx *ctx, const char *dir, int image_size, int num_labels, vkp_vit **out,
                               vkp_error *err) {
  *out = NULL;
  char path[1024];
  snprintf(path, sizeof path, "%s/config.json", dir);
  vkp_vit_config cfg;
  VKP_TRY(vkp_vit_config_load(path, &cfg, err));
  int ckpt_size = cfg.image_size, ckpt_labels = cfg.num_labels;
  if (image_size > 0 && image_size % cfg.patch_size)
    return vkp_error_set(err, VKP_ERR_INVALID, "image size %d is not divisible by the patch size %d", image_size, cfg.patch_size);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  // The checkpoint's tensors must fit the config before the model is allocated (a config.json
  // that claims a huge model must not cost its memory first).
  VKP_TRY(check_checkpoint_shapes(path, &cfg, err));
  if (image_size > 0) cfg.image_size = image_size;
  if (num_labels > 0) cfg.num_labels = num_labels;
  vkp_vit *v;
  vkp_status nst = vkp_vit_new(ctx, &cfg, 0, &v);
  if (nst) return vkp_error_set(err, nst, "%s: %s", dir, vkp_ctx_error(ctx));
  vkp_param *skip[3];
  int nskip = 0;
  if (ckpt_labels != cfg.num_labels) {   // a new head for a new label set (initialised like transformers)
    skip[nskip++] = v->classifier->weight;
    skip[nskip++] = v->classifier->bias;
    fprintf(stderr, "vkpeft: %s: new classifier with %d labels (the checkpoint has %d)\n", dir, cfg.num_labels, ckpt_labels);
  }
  if (ckpt_size != cfg.image_size) skip[nskip++] = v->pos_embed;
  vkp_load_report rep = {0};
  vkp_status st = load_except(v, path, skip, nskip, &rep);
  if (!st && ckpt_labels != cfg.num_labels) rep.unused -= 2;
  if (!st && ckpt_size != cfg.image_size) {
    // Interpolate the checkpoint's position embeddings to the new grid.
    rep.unused--;
    vkp_safetensors *sf = NULL;
    st = vkp_safetensors_open(path, &sf, err);
    const vkp_st_tensor *t = sf ? vkp_safetensors_find(sf, "vit.embeddings.position_embeddings") : NULL;
    int g0 = ckpt_size / cfg.patch_size, g1 = cfg.image_size / cfg.patch_size, C = cfg.hidden_size;
    if (!st && (!t || vkp_st_tensor_numel(t) != (size_t)(g0 * g0 + 1) * C))
      st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: position_embeddings missing or not (1, %d, %d)", path, g0 * g0 + 1, C);
    if (!st && !vkp_dtype_is_weight(t->dtype))
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16", path,
                         t->name, vkp_dtype_name(t->dtype));
    if (!st) {
      float *src = malloc(vkp_st_tensor_numel(t) * sizeof *src), *dst = malloc((size_t)(g1 * g1 + 1) * C * sizeof *dst);
      if (!src || !dst) st = VKP_ERR_OOM;
      else {
        vkp_convert_to_f32(t->dtype, t->data, src, vkp_st_tensor_numel(t));
        memcpy(dst, src, (size_t)C * sizeof *dst);   // the CLS position
        resample_grid(src + C, g0, dst + C, g1, C);
        st = vkp_param_write_f32(v->model, v->pos_embed, dst);
      }
      free(src);
      free(dst);
    }
    vkp_safetensors_free(sf);
  } else if (st) {
    vkp_error_set(err, st, "%s", vkp_ctx_error(ctx));
  }
  if (!st && rep.missing > 0)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %d model parameters are missing from the checkpoint", path, rep.missing);
  if (st) {
    vkp_vit_free(v);
    return st;
  }
  if (rep.unused > 0) fprintf(stderr, "vkpeft: %s: %d tensors in the checkpoint are not used by ViTForImageClassification\n", path, rep.unused);
  *out = v;
  return VKP_OK;
}

vkp_status vkp_vit_load(vkp_ctx *ctx, const char *dir, int image_size, vkp_vit **out, vkp_error *err) {
  return vkp_vit_load_labels(ctx, dir, image_size, 0, out, err);
}

static bool base_only(const vkp_param *p, void *user) {
  (void)user;
  return !p->adapter;
}

vkp_status vkp_vit_save(vkp_vit *v, const char *dir, vkp_error *err) {
  VKP_TRY(vkp_dir_create(dir, err));
  char path[1024];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  const char *meta[2] = {"format", "pt"};
  vkp_status st = vkp_model_save_safetensors(v->model, path, base_only, NULL, meta, 1);
  if (st) return vkp_error_set(err, st, "%s", vkp_ctx_error(v->model->ctx));
  snprintf(path, sizeof path, "%s/config.json", dir);
  return vkp_vit_config_save(&v->cfg, path, err);
}

vkp_status vkp_vit_forward(vkp_vit *v, vkp_graph *g, vkp_tensor *pixel_values, vkp_vit_outputs *out) {
  vkp_model *m = v->model;
  const vkp_vit_config *c = &v->cfg;
  memset(out, 0, sizeof *out);
  vkp_model_begin_graph(m, g);
  if (!pixel_values || pixel_values->ndim != 4 || pixel_values->shape[1] != c->num_channels ||
      pixel_values->shape[2] != c->image_size || pixel_values->shape[3] != c->image_size)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "vit: pixel_values must be (B, %d, %d, %d)", c->num_channels, c->image_size, c->image_size);
  int64_t B = pixel_values->shape[0], C = c->hidden_size, H = c->num_attention_heads, D = C / H;
  int64_t grid = c->image_size / c->patch_size, N = grid * grid, T = N + 1;
  // Embeddings: patches (B, C, g, g) -> (B, N, C), CLS in front, plus positions.
  vkp_tensor *x = vkp_nn_conv2d(m, v->patch, pixel_values, c->patch_size, 0);
  x = vkp_transpose(g, vkp_reshape(g, x, 3, (int64_t[]){B, C, N}), 1, 2);
  vkp_tensor *cls = vkp_add(g, vkp_fill(g, VKP_DTYPE_F32, 3, (int64_t[]){B, 1, C}, 0.0f), vkp_param_tensor(m, v->cls_token));
  x = vkp_concat(g, cls, vkp_contiguous(g, x), 1);
  x = vkp_add(g, x, vkp_param_tensor(m, v->pos_embed));
  out->hidden[0] = x;
  for (int l = 0; l < c->num_hidden_layers; l++) {
    vkp_vit_layer *L = &v->layers[l];
    vkp_model_block_begin(m);
    x = vkp_nn_prompts(m, L->block, x, 1);
    if (x) T = x->shape[1];
    vkp_tensor *h = vkp_nn_layer_norm(m, L->ln_before, x, c->layer_norm_eps);
    vkp_tensor *q = vkp_permute(g, vkp_reshape(g, vkp_nn_linear(m, L->query, h), 4, (int64_t[]){B, T, H, D}), (int[]){0, 2, 1, 3});
    vkp_tensor *k = vkp_permute(g, vkp_reshape(g, vkp_nn_linear(m, L->key, h), 4, (int64_t[]){B, T, H, D}), (int[]){0, 2, 1, 3});
    vkp_tensor *vv = vkp_permute(g, vkp_reshape(g, vkp_nn_linear(m, L->value, h), 4, (int64_t[]){B, T, H, D}), (int[]){0, 2, 1, 3});
    vkp_tensor *a = vkp_nn_attention(m, L->attention, q, k, vv, NULL, false);
    a = vkp_reshape(g, vkp_permute(g, a, (int[]){0, 2, 1, 3}), 3, (int64_t[]){B, T, C});
    a = vkp_nn_block_adapter(m, L->block, VKP_NN_AFTER_ATTN, vkp_nn_linear(m, L->attn_out, a), NULL);
    x = vkp_add(g, x, a);
    h = vkp_nn_layer_norm(m, L->ln_after, x, c->layer_norm_eps);
    vkp_tensor *f = vkp_nn_linear(m, L->fc1, h);
    f = vkp_nn_linear(m, L->fc2, c->gelu_tanh ? vkp_gelu_tanh(g, f) : vkp_gelu(g, f));
    f = vkp_nn_block_adapter(m, L->block, VKP_NN_AFTER_MLP, f, h);
    x = vkp_add(g, x, f);
    vkp_model_block_end(m);
    out->hidden[l + 1] = x;
  }
  x = vkp_nn_layer_norm(m, v->final_ln, x, c->layer_norm_eps);
  vkp_tensor *first = x ? vkp_reshape(g, vkp_contiguous(g, vkp_slice(g, x, 1, 0, 1)), 2, (int64_t[]){B, C}) : NULL;
  out->logits = vkp_nn_linear(m, v->classifier, first);
  return vkp_graph_status(g);
}
