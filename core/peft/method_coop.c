// method_coop.c — CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", 2022):
// n_ctx learned context vectors (D = the text tower's width) take the place of a hand-written
// template. They go after the leading token(s) (CLIP's start token) at the input of the text
// tower's first block, shared by every class ("unified context"), and the caption becomes just the
// class name: [SOS] ctx_1 .. ctx_n  name tokens  . [EOS].
//
// Positions are those transformers assigns to that whole sequence: the block's input already holds
// token + position embeddings for positions 0..T-1, so the hook gives context i the position
// embedding of position n_special + i and moves every later token from position j to j + n_ctx
// (x - pos[j] + pos[j + n]). The model's padding mask and EOS pooling follow the grown sequence
// (vkp_nn_prompts' contract). The position table is the EMBEDDING module `position_embedding`
// names (a suffix, as target_modules lists match) in the block's tower (the first component of
// the names agrees); "" gives the contexts no positions and leaves the tokens where they are.
//
// Initialisation: N(0, 0.02) as CoOp, or the embedding rows of `ctx_init_ids` (the token ids of
// `ctx_init`, e.g. "a photo of a", without start/end token) from the EMBEDDING module
// `token_embedding`: then the adapter computes exactly the hand-written template "a photo of a
// {}.". The core knows no tokenizer: the model package fills ctx_init_ids (vlm: vkp_clip_coop_resolve).
//
// Class-specific contexts (CoOp's CSC) are not supported: a prompt hook sees a batch of token
// sequences, not the class each row stands for. File: <block>.coop_ctx (n_ctx, D). No merge.
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"

static const vkp_peft_suffix coop_suffixes[] = {{"coop_ctx", "coop_ctx.%s"}};

static const vkp_peft_suffix *coop_suffix(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 1;
  return coop_suffixes;
}

static const vkp_json_field coop_fields[] = {
    // KEEP: ctx_init_ids (read first) sets n_ctx to its length when n_ctx is not given.
    {"n_ctx", VKP_JSON_INT, offsetof(vkp_peft_config, n_ctx), .lo = 1, .hi = 1024, .def = 16, .flags = VKP_JSON_KEEP},
    {"csc", VKP_JSON_BOOL, offsetof(vkp_peft_config, csc), .def = 0},
    {"ctx_init", VKP_JSON_STRING, offsetof(vkp_peft_config, ctx_init), .size = sizeof ((vkp_peft_config *)0)->ctx_init,
     .flags = VKP_JSON_NULL_DEFAULT},
    {"token_embedding", VKP_JSON_STRING, offsetof(vkp_peft_config, token_embedding), .def_str = "token_embedding",
     .size = sizeof ((vkp_peft_config *)0)->token_embedding},
    {"position_embedding", VKP_JSON_STRING, offsetof(vkp_peft_config, position_embedding),
     .def_str = "position_embedding", .size = sizeof ((vkp_peft_config *)0)->position_embedding},
};

// ctx_init_ids: a list of token ids (or null / []: none).
static vkp_status parse_ids(const cJSON *v, const char *where, vkp_peft_config *c, vkp_error *err) {
  c->n_ctx_init_ids = 0;
  if (cJSON_IsNull(v)) return VKP_OK;
  if (!cJSON_IsArray(v))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'ctx_init_ids' must be a list of token ids, not %s", where,
                         vkp_json_kind(v));
  const cJSON *e;
  cJSON_ArrayForEach(e, v) {
    if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e9 || e->valuedouble != (int)e->valuedouble)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'ctx_init_ids' must hold token ids (integers >= 0)", where);
    if (c->n_ctx_init_ids >= VKP_PEFT_MAX_CTX_IDS)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'ctx_init_ids' has more than %d ids", where, VKP_PEFT_MAX_CTX_IDS);
    c->ctx_init_ids[c->n_ctx_init_ids++] = (int)e->valuedouble;
  }
  if (c->n_ctx_init_ids) c->n_ctx = c->n_ctx_init_ids;   // the context length, unless n_ctx says otherwise
  return VKP_OK;
}

static void write_ids(cJSON *j, const vkp_peft_config *c) {
  if (!c->n_ctx_init_ids) {
    cJSON_AddNullToObject(j, "ctx_init_ids");
    return;
  }
  cJSON_AddItemToObject(j, "ctx_init_ids", cJSON_CreateIntArray(c->ctx_init_ids, c->n_ctx_init_ids));
}

static const vkp_peft_key coop_keys[] = {{"ctx_init_ids", parse_ids, write_ids}};

static vkp_status coop_validate(const vkp_peft_config *c, const char *where, vkp_error *err) {
  if (c->csc)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                         "%s: key 'csc': class-specific contexts are not supported (the prompt hook does not know a "
                         "row's class); use the unified context (csc: false)",
                         where);
  if (c->n_ctx < 1) return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'n_ctx' must be at least 1, not %d", where, c->n_ctx);
  if (c->n_ctx_init_ids && c->n_ctx != c->n_ctx_init_ids)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'n_ctx' is %d, but 'ctx_init_ids' holds %d token ids", where,
                         c->n_ctx, c->n_ctx_init_ids);
  if (c->n_ctx_init_ids && !c->token_embedding[0])
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'ctx_init_ids' needs 'token_embedding' (the table to read)", where);
  return VKP_OK;
}

// ---- attach -------------------------------------------------------------------------------------

static bool coop_fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;   // a block that runs on a token sequence (has an attention site)
  return mod->kind == VKP_MODULE_BLOCK && (vkp_nn_block_sites(mod) & (VKP_NN_AFTER_ATTN | VKP_NN_AFTER_CROSS_ATTN));
}

// Without target_modules: the first block of a text tower (a name starting with "text":
// transformers' text_model.*, diffusers' text_encoder.*).
static bool coop_default_target(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  if (mod->layer != 0) return false;
  for (int i = 0; i < mod->n_names; i++)
    if (!strncmp(mod->names[i], "text", 4)) return true;
  return false;
}

static int coop_max_modules(const vkp_peft_config *c) {
  (void)c;
  return 1;
}

// Length of the first dotted component of a name ("text_model" of "text_model.encoder...").
static size_t tower_len(const char *name) {
  const char *dot = strchr(name, '.');
  return dot ? (size_t)(dot - name) : strlen(name);
}

static bool same_tower(const vkp_module *a, const vkp_module *b) {
  size_t n = tower_len(a->name);
  return n == tower_len(b->name) && !strncmp(a->name, b->name, n);
}

// The EMBEDDING module named `key` (a suffix at a '.' boundary) in the tower of `block`; the only
// one of the model when no module of that name is in the tower; NULL when none or ambiguous.
static vkp_module *find_embedding(const vkp_model *m, const vkp_module *block, const char *key) {
  vkp_module *here = NULL, *any = NULL;
  int n_any = 0;
  char *list[1] = {(char *)key};
  for (int i = 0; i < m->nmodules; i++) {
    vkp_module *mod = m->modules[i];
    if (mod->kind != VKP_MODULE_EMBEDDING || !mod->weight || !vkp_peft_names_match(mod, list, 1)) continue;
    if (same_tower(mod, block) && !here) here = mod;
    any = mod, n_any++;
  }
  return here ? here : n_any == 1 ? any : NULL;
}

static vkp_status coop_create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  vkp_error *err = vkp_ctx_err(m->ctx);
  const char *name = c->name, *mod = s->module->name;
  s->scaling = 1.0f;
  if (s->module->layer > 0)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "adapter '%s' (coop): '%s' is block %d; the contexts go in front of the first block (layer 0)",
                         name, mod, s->module->layer);
  if (c->ctx_init[0] && !c->n_ctx_init_ids)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "adapter '%s' (coop): key 'ctx_init' (\"%s\") has no 'ctx_init_ids': the model package fills "
                         "them from its tokenizer before attaching",
                         name, c->ctx_init);
  if (c->position_embedding[0]) {
    vkp_module *pos = find_embedding(m, s->module, c->position_embedding);
    if (!pos)
      return vkp_error_set(err, VKP_ERR_NOT_FOUND,
                           "adapter '%s' (coop): key 'position_embedding': no single EMBEDDING module '%s' for '%s' "
                           "(\"\" for none)",
                           name, c->position_embedding, mod);
    int64_t rows = pos->weight->shape[0];
    if (c->n_ctx + 2 > rows)   // start token + contexts + end token
      return vkp_error_set(err, VKP_ERR_INVALID,
                           "adapter '%s' (coop): key 'n_ctx' (%d) + a start and an end token exceed the %lld positions "
                           "of '%s'",
                           name, c->n_ctx, (long long)rows, pos->name);
  }
  int64_t D = s->module->in, shape[2] = {c->n_ctx, D};
  if (D <= 0) return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s' (coop): block '%s' has no width", name, mod);
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, shape));
  if (!c->n_ctx_init_ids) return vkp_param_init_normal(m, s->p[0], 0.02f, seed);
  // ctx_init: the rows of the token embedding table.
  vkp_module *tok = find_embedding(m, s->module, c->token_embedding);
  if (!tok)
    return vkp_error_set(err, VKP_ERR_NOT_FOUND, "adapter '%s' (coop): key 'token_embedding': no single EMBEDDING module '%s' for '%s'",
                         name, c->token_embedding, mod);
  if (tok->weight->shape[1] != D)
    return vkp_error_set(err, VKP_ERR_SHAPE, "adapter '%s' (coop): '%s' has width %lld, the block %lld", name, tok->name,
                         (long long)tok->weight->shape[1], (long long)D);
  for (int i = 0; i < c->n_ctx_init_ids; i++)
    if (c->ctx_init_ids[i] >= tok->weight->shape[0])
      return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s' (coop): key 'ctx_init_ids': id %d is past the %lld rows of '%s'",
                           name, c->ctx_init_ids[i], (long long)tok->weight->shape[0], tok->name);
  float *table = vkp_peft_read_param(m, tok->weight), *ctx = malloc((size_t)(c->n_ctx * D) * sizeof *ctx);
  vkp_status st = table && ctx ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (int i = 0; !st && i < c->n_ctx; i++) memcpy(ctx + i * D, table + (int64_t)c->ctx_init_ids[i] * D, (size_t)D * sizeof *ctx);
  if (!st) st = vkp_param_write_f32(m, s->p[0], ctx);
  free(table), free(ctx);
  return st;
}

// ---- forward ------------------------------------------------------------------------------------

static vkp_tensor *coop_prompts(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *x, int n_special) {
  vkp_graph *g = m->graph;
  const vkp_peft_config *c = &s->adapter->cfg;
  vkp_tensor *p = vkp_param_tensor(m, s->p[0]);
  if (!p) return NULL;
  int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2], n = p->shape[0], ns = n_special;
  if (x->ndim != 3 || D != p->shape[1] || T < ns) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "coop: the input of '%s' is not (B, T >= %d, %lld)", s->module->name, n_special,
                   (long long)p->shape[1]);
    return NULL;
  }
  vkp_tensor *pos = NULL;
  if (c->position_embedding[0]) {
    vkp_module *pm = find_embedding(m, s->module, c->position_embedding);
    if (!pm) {
      vkp_graph_fail(g, VKP_ERR_NOT_FOUND, "coop: no EMBEDDING module '%s' (key 'position_embedding')", c->position_embedding);
      return NULL;
    }
    if (T + n > pm->weight->shape[0]) {
      vkp_graph_fail(g, VKP_ERR_SHAPE,
                     "coop: key 'n_ctx' (%lld) + %lld tokens exceed the %lld positions of '%s' (shorten the text or n_ctx)",
                     (long long)n, (long long)T, (long long)pm->weight->shape[0], pm->name);
      return NULL;
    }
    pos = vkp_param_tensor(m, pm->weight);
  }
  vkp_tensor *ctx = vkp_add(g, vkp_fill(g, VKP_DTYPE_F32, 3, (int64_t[]){B, n, D}, 0.0f), p);
  if (s->adapter->scale != 1.0f) ctx = vkp_scale(g, ctx, s->adapter->scale);
  if (pos) ctx = vkp_add(g, ctx, vkp_slice(g, pos, 0, ns, n));
  vkp_tensor *out = ns ? vkp_concat(g, vkp_contiguous(g, vkp_slice(g, x, 1, 0, ns)), ctx, 1) : ctx;
  if (T == ns) return out;
  vkp_tensor *tail = vkp_contiguous(g, vkp_slice(g, x, 1, ns, T - ns));
  if (pos)   // token j moves from position j to j + n
    tail = vkp_add(g, vkp_sub(g, tail, vkp_slice(g, pos, 0, ns, T - ns)), vkp_slice(g, pos, 0, ns + n, T - ns));
  return vkp_concat(g, out, tail, 1);
}

// ---- table entry ----------------------------------------------------------------------------------

static const vkp_peft_alias coop_aliases[] = {{"context_optimization", NULL}};
// On a ViT (compare / bench): contexts after the class token of the first block, no positions.
static const vkp_peft_preset coop_presets[] = {
    {"coop", "{\"method\":\"coop\",\"n_ctx\":4,\"token_embedding\":\"\",\"position_embedding\":\"\",\"target_modules\":\".*\","
             "\"layers_to_transform\":[0],\"modules_to_save\":[\"@head\"]}",
     true},
};

const vkp_peft_method_def vkp_method_coop = {
    .id = VKP_PEFT_COOP,
    .name = "coop",
    .peft_type = "VKPEFT_COOP",
    .level = VKP_PEFT_LEVEL_SEQUENCE,
    .summary = "learned context vectors after the start token of a text tower, in place of a template (CoOp)",
    .aliases = coop_aliases,
    .n_aliases = 1,
    .fields = coop_fields,
    .n_fields = sizeof coop_fields / sizeof *coop_fields,
    .keys = coop_keys,
    .n_keys = 1,
    .validate = coop_validate,
    .fits = coop_fits,
    .default_target = coop_default_target,
    .max_modules = coop_max_modules,
    .create = coop_create,
    .suffixes = coop_suffix,
    .prompts = coop_prompts,
    .presets = coop_presets,
    .n_presets = 1,
};
