// clip.c — CLIP's modules under their checkpoint names, random initialisation as transformers,
// loading (either tower alone, 16-bit weights kept) and saving of HF folders.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_clip.h"
#include "vkp_fileio.h"
#include "vkp_safetensors.h"

// ---- modules ------------------------------------------------------------------------------------

static vkp_module *linear(vkp_model *m, const char *name, int layer, int64_t out, int64_t in, bool bias) {
  int64_t shape[2] = {out, in};
  return vkp_model_add_module(m, name, NULL, VKP_MODULE_LINEAR, layer, 2, shape, bias ? out : 0);
}

static vkp_module *norm(vkp_model *m, const char *name, int layer, int64_t c) {
  return vkp_model_add_module(m, name, NULL, VKP_MODULE_LAYER_NORM, layer, 1, &c, c);
}

static vkp_module *embedding(vkp_model *m, const char *name, int64_t rows, int64_t c) {
  int64_t shape[2] = {rows, c};
  return vkp_model_add_module(m, name, NULL, VKP_MODULE_EMBEDDING, -1, 2, shape, 0);
}

// One encoder layer `<tower>.encoder.layers.<l>`: the block and attention modules (PEFT sites)
// and the layers inside, as CLIPEncoderLayer names them.
static vkp_status add_layer(vkp_model *m, const char *tower, int l, int64_t C, int64_t I, vkp_clip_layer *L) {
  char n[256];
#define NAME(sfx) (snprintf(n, sizeof n, "%s.encoder.layers.%d%s", tower, l, sfx), n)
  L->block = vkp_model_add_module(m, NAME(""), NULL, VKP_MODULE_BLOCK, l, 0, NULL, 0);
  L->attention = vkp_model_add_module(m, NAME(".self_attn"), NULL, VKP_MODULE_ATTENTION, l, 0, NULL, 0);
  L->ln1 = norm(m, NAME(".layer_norm1"), l, C);
  L->q = linear(m, NAME(".self_attn.q_proj"), l, C, C, true);
  L->k = linear(m, NAME(".self_attn.k_proj"), l, C, C, true);
  L->v = linear(m, NAME(".self_attn.v_proj"), l, C, C, true);
  L->out = linear(m, NAME(".self_attn.out_proj"), l, C, C, true);
  L->ln2 = norm(m, NAME(".layer_norm2"), l, C);
  L->fc1 = linear(m, NAME(".mlp.fc1"), l, I, C, true);
  L->fc2 = linear(m, NAME(".mlp.fc2"), l, C, I, true);
#undef NAME
  if (!L->block || !L->attention || !L->ln1 || !L->q || !L->k || !L->v || !L->out || !L->ln2 || !L->fc1 || !L->fc2)
    return VKP_ERR_OOM;
  L->block->in = L->block->out = L->attention->in = L->attention->out = C;
  return VKP_OK;
}

static vkp_status add_text(vkp_clip *c) {
  vkp_model *m = c->model;
  const vkp_clip_text_config *t = &c->cfg.text;
  int64_t C = t->hidden_size;
  c->text.token_embedding = embedding(m, "text_model.embeddings.token_embedding", t->vocab_size, C);
  c->text.position_embedding = embedding(m, "text_model.embeddings.position_embedding", t->max_position_embeddings, C);
  if (!c->text.token_embedding || !c->text.position_embedding) return VKP_ERR_OOM;
  for (int l = 0; l < t->num_hidden_layers; l++)
    VKP_TRY(add_layer(m, "text_model", l, C, t->intermediate_size, &c->text.layers[l]));
  c->text.final_ln = norm(m, "text_model.final_layer_norm", -1, C);
  return c->text.final_ln ? VKP_OK : VKP_ERR_OOM;
}

static vkp_status add_vision(vkp_clip *c) {
  vkp_model *m = c->model;
  const vkp_clip_vision_config *v = &c->cfg.vision;
  int64_t C = v->hidden_size, grid = v->image_size / v->patch_size;
  int64_t pshape[4] = {C, v->num_channels, v->patch_size, v->patch_size};
  c->vision.patch = vkp_model_add_module(m, "vision_model.embeddings.patch_embedding", NULL, VKP_MODULE_CONV2D, -1, 4,
                                         pshape, 0);
  if (!c->vision.patch) return VKP_ERR_OOM;
  VKP_TRY(vkp_model_add_param(m, "vision_model.embeddings.class_embedding", VKP_DTYPE_F32, 1, &C,
                              &c->vision.class_embedding));
  c->vision.position_embedding = embedding(m, "vision_model.embeddings.position_embedding", grid * grid + 1, C);
  c->vision.pre_ln = norm(m, "vision_model.pre_layrnorm", -1, C);   // sic: the checkpoint's spelling
  if (!c->vision.position_embedding || !c->vision.pre_ln) return VKP_ERR_OOM;
  for (int l = 0; l < v->num_hidden_layers; l++)
    VKP_TRY(add_layer(m, "vision_model", l, C, v->intermediate_size, &c->vision.layers[l]));
  c->vision.post_ln = norm(m, "vision_model.post_layernorm", -1, C);
  return c->vision.post_ln ? VKP_OK : VKP_ERR_OOM;
}

// logit_scale: a module of its own (kind OTHER) holding the scalar, so `modules_to_save:
// ["logit_scale"]` can train the temperature.
static vkp_status add_logit_scale(vkp_clip *c) {
  vkp_model *m = c->model;
  vkp_module *mod = vkp_model_add_module(m, "logit_scale", NULL, VKP_MODULE_OTHER, -1, 0, NULL, 0);
  if (!mod) return VKP_ERR_OOM;
  int64_t one = 1;
  vkp_param *p;
  VKP_TRY(vkp_model_add_param(m, "logit_scale", VKP_DTYPE_F32, 1, &one, &p));
  p->module = mod;
  mod->weight = p;
  mod->in = mod->out = 1;
  c->logit_scale = mod;
  return VKP_OK;
}

// ---- initialisation (transformers' CLIPPreTrainedModel._init_weights) ---------------------------

static vkp_status init_layer(vkp_model *m, const vkp_clip_layer *L, double C, int layers, double f, uint64_t seed) {
  double in_std = pow(C, -0.5) * pow(2.0 * layers, -0.5) * f;
  VKP_TRY(vkp_param_init_normal(m, L->q->weight, (float)in_std, seed));
  VKP_TRY(vkp_param_init_normal(m, L->k->weight, (float)in_std, seed));
  VKP_TRY(vkp_param_init_normal(m, L->v->weight, (float)in_std, seed));
  VKP_TRY(vkp_param_init_normal(m, L->out->weight, (float)(pow(C, -0.5) * f), seed));
  VKP_TRY(vkp_param_init_normal(m, L->fc1->weight, (float)(pow(2.0 * C, -0.5) * f), seed));
  return vkp_param_init_normal(m, L->fc2->weight, (float)in_std, seed);
}

static vkp_status init_weights(vkp_clip *c, uint64_t seed) {
  vkp_model *m = c->model;
  const vkp_clip_config *cfg = &c->cfg;
  double f = cfg->initializer_factor;
  for (int i = 0; i < m->nparams; i++) {   // norms 1 / 0, biases 0 (everything else is set below)
    vkp_param *p = m->params[i];
    bool ln = p->module && p->module->kind == VKP_MODULE_LAYER_NORM;
    VKP_TRY(vkp_param_fill(m, p, ln && p == p->module->weight ? 1.0f : 0.0f));
  }
  if (cfg->has_text) {
    const vkp_clip_text_config *t = &cfg->text;
    VKP_TRY(vkp_param_init_normal(m, c->text.token_embedding->weight, (float)(0.02 * f), seed));
    VKP_TRY(vkp_param_init_normal(m, c->text.position_embedding->weight, (float)(0.02 * f), seed));
    for (int l = 0; l < t->num_hidden_layers; l++)
      VKP_TRY(init_layer(m, &c->text.layers[l], t->hidden_size, t->num_hidden_layers, f, seed));
  }
  if (cfg->has_vision) {
    const vkp_clip_vision_config *v = &cfg->vision;
    double C = v->hidden_size;
    VKP_TRY(vkp_param_init_normal(m, c->vision.class_embedding, (float)(pow(C, -0.5) * f), seed));
    VKP_TRY(vkp_param_init_normal(m, c->vision.patch->weight, (float)(v->initializer_range * f), seed));
    VKP_TRY(vkp_param_init_normal(m, c->vision.position_embedding->weight, (float)(v->initializer_range * f), seed));
    for (int l = 0; l < v->num_hidden_layers; l++)
      VKP_TRY(init_layer(m, &c->vision.layers[l], C, v->num_hidden_layers, f, seed));
  }
  if (c->text_projection)
    VKP_TRY(vkp_param_init_normal(m, c->text_projection->weight, (float)(pow(cfg->text.hidden_size, -0.5) * f), seed));
  if (c->visual_projection)
    VKP_TRY(vkp_param_init_normal(m, c->visual_projection->weight, (float)(pow(cfg->vision.hidden_size, -0.5) * f), seed));
  if (c->logit_scale) VKP_TRY(vkp_param_fill(m, c->logit_scale->weight, cfg->logit_scale_init_value));
  return VKP_OK;
}

// Registers every module; `init` false leaves the (zero-filled) parameters for a checkpoint.
static vkp_status build(vkp_ctx *ctx, const vkp_clip_config *cfg, bool init, uint64_t seed, vkp_clip **out,
                        vkp_error *err) {
  *out = NULL;
  VKP_TRY(vkp_clip_config_check(cfg, "clip config", err));
  vkp_clip *c = calloc(1, sizeof *c);
  if (!c) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  c->cfg = *cfg;
  vkp_status st = vkp_model_new(ctx, &c->model);
  if (st) {
    free(c);
    return vkp_error_set(err, st, "%s", vkp_ctx_error(ctx));
  }
  vkp_model *m = c->model;
  // Vision first: shallow visual prompt tuning without targets lands on the first vision block.
  if (cfg->has_vision) st = add_vision(c);
  if (!st && cfg->has_text) st = add_text(c);
  if (!st && cfg->has_text && cfg->has_text_projection) {
    c->text_projection = linear(m, "text_projection", -1, cfg->projection_dim, cfg->text.hidden_size, false);
    if (!c->text_projection) st = VKP_ERR_OOM;
  }
  if (!st && cfg->has_vision && cfg->has_visual_projection) {
    c->visual_projection = linear(m, "visual_projection", -1, cfg->projection_dim, cfg->vision.hidden_size, false);
    if (!c->visual_projection) st = VKP_ERR_OOM;
  }
  if (!st && cfg->has_logit_scale) st = add_logit_scale(c);
  if (!st && init) st = init_weights(c, seed);
  if (st) {
    vkp_error_set(err, st, "clip: %s", vkp_ctx_error(ctx)[0] ? vkp_ctx_error(ctx) : vkp_status_name(st));
    vkp_clip_free(c);
    return st;
  }
  *out = c;
  return VKP_OK;
}

vkp_status vkp_clip_new(vkp_ctx *ctx, const vkp_clip_config *cfg, uint64_t seed, vkp_clip **out, vkp_error *err) {
  return build(ctx, cfg, true, seed, out, err);
}

vkp_status vkp_clip_new_empty(vkp_ctx *ctx, const vkp_clip_config *cfg, vkp_clip **out, vkp_error *err) {
  return build(ctx, cfg, false, 0, out, err);
}

void vkp_clip_free(vkp_clip *c) {
  if (!c) return;
  vkp_model_free(c->model);
  free(c);
}

// ---- loading ------------------------------------------------------------------------------------

static bool is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool starts_with(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

// Sorting the checkpoint's tensors that matched no parameter: those of a tower not asked for and
// the `position_ids` buffers older transformers saved are expected; the rest are reported.
typedef struct load_names {
  const vkp_clip_config *cfg;
  int unexpected, missing;
  char first_unexpected[256], first_missing[256];
} load_names;

static void on_name(void *user, const char *kind, const char *name) {
  load_names *ln = user;
  if (!strcmp(kind, "missing")) {
    if (!ln->missing++) snprintf(ln->first_missing, sizeof ln->first_missing, "%s", name);
    return;
  }
  size_t n = strlen(name);
  bool skip = (n >= 13 && !strcmp(name + n - 13, ".position_ids")) ||
              (!ln->cfg->has_text && (starts_with(name, "text_model.") || starts_with(name, "text_projection."))) ||
              (!ln->cfg->has_vision && (starts_with(name, "vision_model.") || starts_with(name, "visual_projection."))) ||
              (!ln->cfg->has_logit_scale && !strcmp(name, "logit_scale"));
  if (!skip && !ln->unexpected++) snprintf(ln->first_unexpected, sizeof ln->first_unexpected, "%s", name);
}

// A tower's first and last layer (q_proj (C, C), fc1 (I, C)) and its projection (projection_dim, C)
// when `projection` names one; returns how many it added to w.
static int expect_tower(vkp_st_expect *w, const char *tower, int layers, int C, int I, const char *projection, int proj_dim) {
  char keys[192];
  int n = 0;
  snprintf(keys, sizeof keys, "%s_config.num_hidden_layers %d, %s_config.hidden_size %d, %s_config.intermediate_size %d", tower,
           layers, tower, C, tower, I);
  for (int k = 0; k < 2; k++) {
    vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){C, C}, "%s_model.encoder.layers.%d.self_attn.q_proj.weight", tower, k ? layers - 1 : 0);
    vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){I, C}, "%s_model.encoder.layers.%d.mlp.fc1.weight", tower, k ? layers - 1 : 0);
  }
  snprintf(keys, sizeof keys, "projection_dim %d, %s_config.hidden_size %d", proj_dim, tower, C);
  if (projection) vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){proj_dim, C}, "%s.weight", projection);
  return n;
}

// The tensors whose shapes follow from config.json (each tower's embeddings, its first and last
// layer, the projections), checked against the checkpoint's header before the model is allocated.
static vkp_status check_checkpoint_shapes(const vkp_safetensors *sf, const char *path, const char *dir,
                                          const vkp_clip_config *c, vkp_error *err) {
  vkp_st_expect w[16];
  int n = 0;
  char keys[192], config[1100];
  snprintf(config, sizeof config, "%s/config.json", dir);
  if (c->has_text) {
    const vkp_clip_text_config *t = &c->text;
    snprintf(keys, sizeof keys, "text_config.vocab_size %d, text_config.hidden_size %d", t->vocab_size, t->hidden_size);
    vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){t->vocab_size, t->hidden_size}, "text_model.embeddings.token_embedding.weight");
    snprintf(keys, sizeof keys, "text_config.max_position_embeddings %d, text_config.hidden_size %d", t->max_position_embeddings,
             t->hidden_size);
    vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){t->max_position_embeddings, t->hidden_size},
                      "text_model.embeddings.position_embedding.weight");
    n += expect_tower(w + n, "text", t->num_hidden_layers, t->hidden_size, t->intermediate_size,
                      c->has_text_projection ? "text_projection" : NULL, c->projection_dim);
  }
  if (c->has_vision) {
    const vkp_clip_vision_config *v = &c->vision;
    int64_t C = v->hidden_size, g = v->image_size / v->patch_size;
    snprintf(keys, sizeof keys, "vision_config.hidden_size %d, vision_config.num_channels %d, vision_config.patch_size %d",
             v->hidden_size, v->num_channels, v->patch_size);
    vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){C, v->num_channels, v->patch_size, v->patch_size},
                      "vision_model.embeddings.patch_embedding.weight");
    snprintf(keys, sizeof keys, "vision_config.image_size %d, vision_config.patch_size %d, vision_config.hidden_size %d",
             v->image_size, v->patch_size, v->hidden_size);
    vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){g * g + 1, C}, "vision_model.embeddings.position_embedding.weight");
    n += expect_tower(w + n, "vision", v->num_hidden_layers, v->hidden_size, v->intermediate_size,
                      c->has_visual_projection ? "visual_projection" : NULL, c->projection_dim);
  }
  return vkp_safetensors_expect(sf, path, config, w, n, err);
}

vkp_status vkp_clip_load(vkp_ctx *ctx, const char *dir, const vkp_clip_load_opts *opts, vkp_clip **out,
                         vkp_error *err) {
  *out = NULL;
  vkp_clip_load_opts o = opts ? *opts : (vkp_clip_load_opts){0};
  char path[1024];
  snprintf(path, sizeof path, "%s/config.json", dir);
  vkp_clip_config cfg;
  VKP_TRY(vkp_clip_config_load(path, &cfg, err));
  if (o.towers == VKP_CLIP_TEXT_ONLY) {
    if (!cfg.has_text) return vkp_error_set(err, VKP_ERR_INVALID, "%s: the checkpoint has no text tower", dir);
    cfg.has_vision = cfg.has_visual_projection = cfg.has_logit_scale = false;
    cfg.has_text_projection = false;   // decided by the file below
  } else if (o.towers == VKP_CLIP_VISION_ONLY) {
    if (!cfg.has_vision) return vkp_error_set(err, VKP_ERR_INVALID, "%s: the checkpoint has no vision tower", dir);
    cfg.has_text = cfg.has_text_projection = cfg.has_logit_scale = false;
    cfg.has_visual_projection = false;
  }
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (!is_file(path)) snprintf(path, sizeof path, "%s/model.fp16.safetensors", dir);
  if (!is_file(path)) return vkp_error_set(err, VKP_ERR_IO, "%s: no model.safetensors (or model.fp16.safetensors)", dir);
  vkp_safetensors *sf = NULL;
  VKP_TRY(vkp_safetensors_open(path, &sf, err));
  // A tower's projection is loaded when the file has it (CLIPModel's are required).
  if (cfg.has_text && vkp_safetensors_find(sf, "text_projection.weight")) cfg.has_text_projection = true;
  if (cfg.has_vision && vkp_safetensors_find(sf, "visual_projection.weight")) cfg.has_visual_projection = true;
  vkp_clip *c = NULL;
  // The checkpoint must fit the config before anything is allocated (a config.json that claims a
  // huge model must not cost its memory first).
  vkp_status st = check_checkpoint_shapes(sf, path, dir, &cfg, err);
  if (!st) st = build(ctx, &cfg, false, 0, &c, err);
  if (st) {
    vkp_safetensors_free(sf);
    return st;
  }
  // Matrices stay in the file's 16-bit dtype (frozen weights); vectors are f32.
  for (int i = 0; !st && !o.f32 && i < c->model->nparams; i++) {
    vkp_param *p = c->model->params[i];
    const vkp_st_tensor *t = vkp_safetensors_find(sf, p->name);
    if (p->ndim >= 2 && t && (t->dtype == VKP_DTYPE_F16 || t->dtype == VKP_DTYPE_BF16)) {
      st = vkp_param_set_dtype(c->model, p, t->dtype);
      if (st) vkp_error_set(err, st, "%s: %s", path, vkp_ctx_error(ctx));
    }
  }
  vkp_safetensors_free(sf);
  load_names names = {.cfg = &c->cfg};
  vkp_load_report rep = {0};
  if (!st) {
    st = vkp_model_load_safetensors(c->model, path, NULL, &rep, on_name, &names);
    if (st) vkp_error_set(err, st, "%s", vkp_ctx_error(ctx));
  }
  if (!st && names.missing)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %d model parameters are missing from the checkpoint (the first: '%s')", path,
                       names.missing, names.first_missing);
  if (st) {
    vkp_clip_free(c);
    return st;
  }
  if (names.unexpected)
    fprintf(stderr, "vkpeft: %s: %d tensors in the checkpoint are not used by CLIP (the first: '%s')\n", path,
            names.unexpected, names.first_unexpected);
  *out = c;
  return VKP_OK;
}

// ---- saving -------------------------------------------------------------------------------------

vkp_status vkp_clip_save(vkp_clip *c, const char *dir, vkp_error *err) {
  VKP_TRY(vkp_dir_create(dir, err));
  vkp_model *m = c->model;
  vkp_safetensors_writer *w = NULL;
  VKP_TRY(vkp_safetensors_writer_new(&w, err));
  vkp_status st = vkp_safetensors_writer_set_metadata(w, "format", "pt", err);
  for (int i = 0; i < m->nparams && !st; i++) {
    vkp_param *p = m->params[i];
    if (p->adapter) continue;
    float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
    if (!v) {
      st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      break;
    }
    st = vkp_param_read_f32(m, p, v);
    if (st) vkp_error_set(err, st, "%s", vkp_ctx_error(m->ctx));
    bool scalar = c->logit_scale && p == c->logit_scale->weight;   // nn.Parameter(torch.tensor(x)): shape []
    if (!st) st = vkp_safetensors_writer_add_f32(w, p->name, p->dtype, scalar ? 0 : p->ndim, p->shape, v, err);
    free(v);
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  if (st) return st;
  snprintf(path, sizeof path, "%s/config.json", dir);
  return vkp_clip_config_save(&c->cfg, path, err);
}

vkp_status vkp_clip_clamp_logit_scale(vkp_clip *c, float max) {
  if (!c->logit_scale) return VKP_OK;
  if (!(max > 0)) max = VKP_CLIP_LOGIT_SCALE_MAX;
  float v;
  VKP_TRY(vkp_param_read_f32(c->model, c->logit_scale->weight, &v));
  float clamped = v < 0 ? 0 : v > max ? max : v;
  return clamped == v ? VKP_OK : vkp_param_write_f32(c->model, c->logit_scale->weight, &clamped);
}
