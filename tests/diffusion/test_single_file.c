// test_single_file.c — single-file (LDM / A1111 / ComfyUI) Stable Diffusion checkpoints against
// diffusers folders holding the same weights. A small random pipeline (UNet with cross-attention,
// VAE, CLIP text tower) is saved as a diffusers folder, and the same tensors are written to one
// .safetensors in the original SD layout by an explicit table for this tiny architecture (kept here,
// independent of the program's conversion in diffusion/ldm_keys.c). Both load through
// vkp_pipeline_load; a prompt's text states, a sampling run with classifier-free guidance and its
// VAE decode must come out the same. SD 1.x style: conv projections, 8 heads, transformers' CLIP
// keys, every tensor f16 (kept 16-bit on the device); SD 2.x style: linear projections, heads of
// 64, OpenCLIP's layout with the fused q/k/v and an extra last block that SD 2.x drops. Bad files
// (missing tensors, truncated, not SD) are clear errors, exit status 2 in the program. The key
// conversion at full SD size is checked name by name against diffusers' converter.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ldm_internal.h"
#include "vkp_cli_run.h"
#include "vkp_clip.h"
#include "vkp_pipeline.h"
#include "vkp_safetensors.h"
#include "vkp_sampler.h"
#include "vkp_test.h"
#include "vkp_text_encoder.h"
#include "vkp_unet.h"
#include "vkp_vae.h"

#define TOKENS 77

static const char *SCHED_CFG =
    "{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 1000, \"beta_start\": 0.00085, \"beta_end\": 0.012,"
    " \"beta_schedule\": \"scaled_linear\", \"clip_sample\": false, \"set_alpha_to_one\": false, \"steps_offset\": 1}";

// ---- the LDM layout of the tiny architecture (diffusers prefix -> original prefix) -------------

static const char *const UNET_MAP[][2] = {
    {"conv_in.", "input_blocks.0.0."},
    {"time_embedding.linear_1.", "time_embed.0."},
    {"time_embedding.linear_2.", "time_embed.2."},
    {"down_blocks.0.resnets.0.", "input_blocks.1.0."},
    {"down_blocks.0.attentions.0.", "input_blocks.1.1."},
    {"down_blocks.0.downsamplers.0.conv.", "input_blocks.2.0.op."},
    {"down_blocks.1.resnets.0.", "input_blocks.3.0."},
    {"mid_block.resnets.0.", "middle_block.0."},
    {"mid_block.attentions.0.", "middle_block.1."},
    {"mid_block.resnets.1.", "middle_block.2."},
    {"up_blocks.0.resnets.0.", "output_blocks.0.0."},
    {"up_blocks.0.resnets.1.", "output_blocks.1.0."},
    {"up_blocks.0.upsamplers.0.", "output_blocks.1.1."},
    {"up_blocks.1.resnets.0.", "output_blocks.2.0."},
    {"up_blocks.1.attentions.0.", "output_blocks.2.1."},
    {"up_blocks.1.resnets.1.", "output_blocks.3.0."},
    {"up_blocks.1.attentions.1.", "output_blocks.3.1."},
    {"conv_norm_out.", "out.0."},
    {"conv_out.", "out.2."},
};
static const char *const UNET_RESNET[][2] = {{"norm1.", "in_layers.0."}, {"conv1.", "in_layers.2."},
                                             {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
                                             {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."}};
static const char *const VAE_MAP[][2] = {
    {"encoder.conv_norm_out.", "encoder.norm_out."},
    {"decoder.conv_norm_out.", "decoder.norm_out."},
    {"encoder.down_blocks.0.resnets.0.", "encoder.down.0.block.0."},
    {"encoder.down_blocks.0.downsamplers.0.", "encoder.down.0.downsample."},
    {"encoder.down_blocks.1.resnets.0.", "encoder.down.1.block.0."},
    {"encoder.mid_block.resnets.0.", "encoder.mid.block_1."},
    {"encoder.mid_block.resnets.1.", "encoder.mid.block_2."},
    {"encoder.mid_block.attentions.0.group_norm.", "encoder.mid.attn_1.norm."},
    {"encoder.mid_block.attentions.0.to_q.", "encoder.mid.attn_1.q."},
    {"encoder.mid_block.attentions.0.to_k.", "encoder.mid.attn_1.k."},
    {"encoder.mid_block.attentions.0.to_v.", "encoder.mid.attn_1.v."},
    {"encoder.mid_block.attentions.0.to_out.0.", "encoder.mid.attn_1.proj_out."},
    {"decoder.mid_block.resnets.0.", "decoder.mid.block_1."},
    {"decoder.mid_block.resnets.1.", "decoder.mid.block_2."},
    {"decoder.mid_block.attentions.0.group_norm.", "decoder.mid.attn_1.norm."},
    {"decoder.mid_block.attentions.0.to_q.", "decoder.mid.attn_1.q."},
    {"decoder.mid_block.attentions.0.to_k.", "decoder.mid.attn_1.k."},
    {"decoder.mid_block.attentions.0.to_v.", "decoder.mid.attn_1.v."},
    {"decoder.mid_block.attentions.0.to_out.0.", "decoder.mid.attn_1.proj_out."},
    {"decoder.up_blocks.0.resnets.0.", "decoder.up.1.block.0."},   // decoder blocks count from the bottom
    {"decoder.up_blocks.0.resnets.1.", "decoder.up.1.block.1."},
    {"decoder.up_blocks.0.upsamplers.0.", "decoder.up.1.upsample."},
    {"decoder.up_blocks.1.resnets.0.", "decoder.up.0.block.0."},
    {"decoder.up_blocks.1.resnets.1.", "decoder.up.0.block.1."},
    {"encoder.", "encoder."},   // conv_in, conv_out
    {"decoder.", "decoder."},
    {"quant_conv.", "quant_conv."},
    {"post_quant_conv.", "post_quant_conv."},
};
static const char *const OPENCLIP_LAYER[][2] = {{"layer_norm1.", "ln_1."}, {"layer_norm2.", "ln_2."},
                                                {"self_attn.out_proj.", "attn.out_proj."}, {"mlp.fc1.", "mlp.c_fc."},
                                                {"mlp.fc2.", "mlp.c_proj."}};

static bool starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

// table lookup: out = ldm prefix + rest (NULL when no row matches); *row = the row
static bool map_prefix(const char *const (*t)[2], size_t n, const char *key, char *out, size_t cap, int *row) {
  for (size_t i = 0; i < n; i++)
    if (starts(key, t[i][0])) {
      snprintf(out, cap, "%s%s", t[i][1], key + strlen(t[i][0]));
      *row = (int)i;
      return true;
    }
  return false;
}

static void add_raw(vkp_safetensors_writer *w, const char *name, const vkp_st_tensor *t, int ndim, const int64_t *shape) {
  vkp_error err = {0};
  if (vkp_safetensors_writer_add(w, name, t->dtype, ndim, shape, t->data, &err)) fail_msg("%s: %s", name, err.msg);
}

static vkp_safetensors *open_st(const char *path) {
  vkp_safetensors *sf = NULL;
  vkp_error err = {0};
  if (vkp_safetensors_open(path, &sf, &err)) fail_msg("%s", err.msg);
  return sf;
}

static void add_unet(vkp_safetensors_writer *w, const char *path, const char *skip) {
  vkp_safetensors *sf = open_st(path);
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    char mid[512], key[600];
    int row = 0;
    if (!map_prefix(UNET_MAP, sizeof UNET_MAP / sizeof *UNET_MAP, t->name, mid, sizeof mid, &row))
      fail_msg("no LDM name for UNet tensor '%s'", t->name);
    if (strstr(UNET_MAP[row][0], "resnets")) {   // rename inside the ResBlock
      const char *rest = t->name + strlen(UNET_MAP[row][0]);
      int r2;
      char inner[400];
      if (!map_prefix(UNET_RESNET, sizeof UNET_RESNET / sizeof *UNET_RESNET, rest, inner, sizeof inner, &r2))
        fail_msg("no LDM name for '%s'", t->name);
      snprintf(mid, sizeof mid, "%s%s", UNET_MAP[row][1], inner);
    }
    snprintf(key, sizeof key, "model.diffusion_model.%s", mid);
    if (!skip || strcmp(key, skip)) add_raw(w, key, t, t->ndim, t->shape);
  }
  vkp_safetensors_free(sf);
}

static void add_vae(vkp_safetensors_writer *w, const char *path) {
  vkp_safetensors *sf = open_st(path);
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    char mid[512], key[600];
    int row = 0;
    if (!map_prefix(VAE_MAP, sizeof VAE_MAP / sizeof *VAE_MAP, t->name, mid, sizeof mid, &row))
      fail_msg("no LDM name for VAE tensor '%s'", t->name);
    char *sc = strstr(mid, "conv_shortcut.");
    if (sc) memmove(sc, "nin_", 4), memmove(sc + 4, sc + 5, strlen(sc + 5) + 1);   // conv_shortcut -> nin_shortcut
    snprintf(key, sizeof key, "first_stage_model.%s", mid);
    // The mid-block attention is 1x1 convolutions in LDM.
    bool attn = strstr(t->name, "attentions.0.to_") && t->ndim == 2;
    int64_t conv[4] = {t->shape[0], attn ? t->shape[1] : 0, 1, 1};
    add_raw(w, key, t, attn ? 4 : t->ndim, attn ? conv : t->shape);
  }
  vkp_safetensors_free(sf);
}

// SD 1.x: transformers' keys under cond_stage_model.transformer.
static void add_clip(vkp_safetensors_writer *w, const char *path) {
  vkp_safetensors *sf = open_st(path);
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    char key[600];
    snprintf(key, sizeof key, "cond_stage_model.transformer.%s", t->name);
    add_raw(w, key, t, t->ndim, t->shape);
  }
  vkp_safetensors_free(sf);
}

static float *rand_floats(size_t n, uint64_t seed) {
  float *v = malloc(n * sizeof *v);
  vkp_rng r = vkp_rng_new(seed);
  vkp_rng_normal_fill(&r, v, n, 0.0, 0.5);
  return v;
}

// SD 2.x: OpenCLIP's layout under cond_stage_model.model., q/k/v fused; plus a last block, a
// projection and a logit scale that SD 2.x does not use.
static void add_openclip(vkp_safetensors_writer *w, const char *path, int layers, int H) {
  vkp_safetensors *sf = open_st(path);
  vkp_error err = {0};
  const char *P = "cond_stage_model.model.";
  char key[600], src[600];
  static const char *const top[][2] = {{"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
                                       {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
                                       {"text_model.final_layer_norm.weight", "ln_final.weight"},
                                       {"text_model.final_layer_norm.bias", "ln_final.bias"}};
  for (int i = 0; i < 4; i++) {
    const vkp_st_tensor *t = vkp_safetensors_find(sf, top[i][0]);
    assert_non_null(t);
    snprintf(key, sizeof key, "%s%s", P, top[i][1]);
    add_raw(w, key, t, t->ndim, t->shape);
  }
  for (int l = 0; l <= layers; l++) {
    for (size_t r = 0; r < sizeof OPENCLIP_LAYER / sizeof *OPENCLIP_LAYER; r++)
      for (int b = 0; b < 2; b++) {
        snprintf(src, sizeof src, "text_model.encoder.layers.%d.%s%s", l < layers ? l : 0, OPENCLIP_LAYER[r][0], b ? "bias" : "weight");
        snprintf(key, sizeof key, "%stransformer.resblocks.%d.%s%s", P, l, OPENCLIP_LAYER[r][1], b ? "bias" : "weight");
        const vkp_st_tensor *t = vkp_safetensors_find(sf, src);
        assert_non_null(t);
        if (l < layers) {
          add_raw(w, key, t, t->ndim, t->shape);
        } else {   // the block SD 2.x drops: other numbers of the same shape
          float *v = rand_floats(vkp_st_tensor_numel(t), 100 + r * 2 + b);
          if (vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, t->ndim, t->shape, v, &err)) fail_msg("%s", err.msg);
          free(v);
        }
      }
    for (int b = 0; b < 2; b++) {   // in_proj: q, k, v rows stacked
      size_t per = b ? (size_t)H : (size_t)H * H;
      float *qkv = malloc(3 * per * sizeof *qkv);
      for (int k = 0; k < 3; k++) {
        snprintf(src, sizeof src, "text_model.encoder.layers.%d.self_attn.%c_proj.%s", l < layers ? l : 0, "qkv"[k], b ? "bias" : "weight");
        const vkp_st_tensor *t = vkp_safetensors_find(sf, src);
        assert_non_null(t);
        assert_int_equal(t->dtype, VKP_DTYPE_F32);
        memcpy(qkv + k * per, t->data, per * sizeof(float));
      }
      if (l == layers)
        for (size_t e = 0; e < 3 * per; e++) qkv[e] = -qkv[e];
      snprintf(key, sizeof key, "%stransformer.resblocks.%d.attn.in_proj_%s", P, l, b ? "bias" : "weight");
      int64_t shape[2] = {3 * H, H};
      if (vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, b ? 1 : 2, shape, qkv, &err)) fail_msg("%s", err.msg);
      free(qkv);
    }
  }
  float *proj = rand_floats((size_t)H * H, 7), scale = 4.6f;
  snprintf(key, sizeof key, "%stext_projection", P);
  if (vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, 2, (int64_t[]){H, H}, proj, &err)) fail_msg("%s", err.msg);
  snprintf(key, sizeof key, "%slogit_scale", P);
  if (vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, 0, NULL, &scale, &err)) fail_msg("%s", err.msg);
  free(proj);
  vkp_safetensors_free(sf);
}

// ---- the models -----------------------------------------------------------------------------

typedef struct variant {
  bool v2;          // SD 2.x style
  bool f16;         // every tensor f16 in both layouts
  int text_width, text_layers;
} variant;

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) fail_msg("cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

// Rewrites a safetensors file with every tensor stored as f16.
static void to_f16(const char *path) {
  vkp_safetensors *sf = open_st(path);
  vkp_safetensors_writer *w = NULL;
  vkp_error err = {0};
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    size_t n = vkp_st_tensor_numel(t);
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (vkp_safetensors_read_f32(sf, t->name, v, n, &err) ||
        vkp_safetensors_writer_add_f32(w, t->name, VKP_DTYPE_F16, t->ndim, t->shape, v, &err))
      fail_msg("%s", err.msg);
    free(v);
  }
  vkp_safetensors_free(sf);
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
}

// A random pipeline saved as a diffusers folder `dir` (with a tokenizer and the SD scheduler).
static void make_folder(const variant *va, const char *dir) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  char p[600];
  assert_int_equal(mkdir(dir, 0755), 0);
  vkp_unet_config uc;
  vkp_unet_config_default(&uc);
  uc.n_blocks = 2;
  uc.sample_size = 8;
  int C[2] = {va->v2 ? 64 : 32, va->v2 ? 128 : 64};
  for (int i = 0; i < 2; i++) {
    uc.block_out_channels[i] = C[i];
    uc.down_cross[i] = i == 0;
    uc.up_cross[i] = i == 1;
    uc.layers_per_block[i] = 1;
    uc.heads[i] = va->v2 ? C[i] / 64 : 8;
    uc.cross_attention_dim[i] = va->text_width;
    uc.transformer_layers[i] = 1;
  }
  uc.use_linear_projection = va->v2;
  vkp_vae_config vc;
  vkp_vae_config_default(&vc);
  vc.n_blocks = 2;
  vc.block_out_channels[0] = 32, vc.block_out_channels[1] = 64;
  vc.layers_per_block = 1;
  vc.sample_size = 16;
  vkp_clip_config cc;
  vkp_clip_config_default(&cc);
  cc.has_vision = cc.has_visual_projection = cc.has_logit_scale = cc.has_text_projection = false;
  cc.text.hidden_size = va->text_width;
  cc.text.intermediate_size = 2 * va->text_width;
  cc.text.num_hidden_layers = va->text_layers;
  cc.text.num_attention_heads = va->text_width / 64;
  cc.text.hidden_act = va->v2 ? VKP_CLIP_ACT_GELU : VKP_CLIP_ACT_QUICK_GELU;
  vkp_unet *u = NULL;
  vkp_vae *v = NULL;
  vkp_clip *c = NULL;
  if (vkp_unet_new(ctx, &uc, 11, &u, &err) || vkp_vae_new(ctx, &vc, 12, &v, &err) || vkp_clip_new(ctx, &cc, 13, &c, &err))
    fail_msg("%s", err.msg);
  // diffusers initialises zero-init-free; make the norms and biases non-trivial so a swapped name shows
  for (int k = 0; k < 2; k++) {
    vkp_model *m = k ? v->model : u->model;
    for (int i = 0; i < m->nparams; i++)
      if (m->params[i]->ndim == 1) VKP_ASSERT_OK(ctx, vkp_param_init_uniform(m, m->params[i], 0.5f, 1000 + (uint64_t)i));
  }
  snprintf(p, sizeof p, "%s/unet", dir);
  if (vkp_unet_save(u, p, &err)) fail_msg("%s", err.msg);
  snprintf(p, sizeof p, "%s/vae", dir);
  if (vkp_vae_save(v, p, &err)) fail_msg("%s", err.msg);
  snprintf(p, sizeof p, "%s/text_encoder", dir);
  if (vkp_clip_save(c, p, &err)) fail_msg("%s", err.msg);
  vkp_unet_free(u), vkp_vae_free(v), vkp_clip_free(c);
  if (va->f16) {
    const char *files[3] = {"unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"};
    for (int i = 0; i < 3; i++) {
      snprintf(p, sizeof p, "%s/%s.safetensors", dir, files[i]);
      to_f16(p);
    }
  }
  snprintf(p, sizeof p, "%s/tokenizer", dir);
  assert_int_equal(mkdir(p, 0755), 0);
  const char *tok_files[2] = {"vocab.json", "merges.txt"};
  for (int i = 0; i < 2; i++) {
    char from[600];
    snprintf(from, sizeof from, "clip/model/%s", tok_files[i]);
    snprintf(p, sizeof p, "%s/tokenizer/%s", dir, tok_files[i]);
    vkp_test_copy_file(vkp_fixture_path(from), p);
  }
  // SD 1.x's tokenizer pads with the end token, SD 2.x's with "!" (id 0), as on the hub.
  snprintf(p, sizeof p, "%s/tokenizer/tokenizer_config.json", dir);
  write_text(p, va->v2 ? "{\"bos_token\": \"<|startoftext|>\", \"eos_token\": \"<|endoftext|>\", \"pad_token\": \"!\","
                         " \"unk_token\": \"<|endoftext|>\", \"model_max_length\": 77}"
                       : "{\"bos_token\": \"<|startoftext|>\", \"eos_token\": \"<|endoftext|>\", \"pad_token\": \"<|endoftext|>\","
                         " \"unk_token\": \"<|endoftext|>\", \"model_max_length\": 77}");
  snprintf(p, sizeof p, "%s/scheduler", dir);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", dir);
  write_text(p, SCHED_CFG);
  snprintf(p, sizeof p, "%s/model_index.json", dir);
  write_text(p, "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
                " \"vae\": [\"diffusers\", \"AutoencoderKL\"], \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],"
                " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], \"scheduler\": [\"diffusers\", \"DDIMScheduler\"]}");
}

// The folder's weights as one LDM file (`skip`: a key left out; `extra`: a tensor no model uses).
static void make_single_file(const variant *va, const char *dir, const char *file, const char *skip, bool extra) {
  vkp_safetensors_writer *w = NULL;
  vkp_error err = {0};
  char p[600];
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.safetensors", dir);
  add_unet(w, p, skip);
  snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.safetensors", dir);
  add_vae(w, p);
  snprintf(p, sizeof p, "%s/text_encoder/model.safetensors", dir);
  if (va->v2) add_openclip(w, p, va->text_layers, va->text_width);
  else add_clip(w, p);
  // What such files also hold: the training schedule's buffers, EMA bookkeeping.
  float ac[1000] = {0}, decay = 0.9999f;
  if (extra && vkp_safetensors_writer_add_f32(w, "model.diffusion_model.label_emb.0.0.weight", VKP_DTYPE_F32, 2, (int64_t[]){4, 4}, ac,
                                              &err))
    fail_msg("%s", err.msg);
  if (vkp_safetensors_writer_add_f32(w, "alphas_cumprod", VKP_DTYPE_F32, 1, (int64_t[]){1000}, ac, &err) ||
      vkp_safetensors_writer_add_f32(w, "model_ema.decay", VKP_DTYPE_F32, 0, NULL, &decay, &err) ||
      vkp_safetensors_writer_save(w, file, &err))
    fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
}

// ---- the comparison -----------------------------------------------------------------------------

typedef struct run_out {
  float cond[TOKENS * 128], uncond[TOKENS * 128];
  float latents[4 * 8 * 8], decoded[3 * 16 * 16];
  vkp_dtype unet_dtype, text_dtype;
  vkp_unet_config ucfg;
} run_out;

static void run_pipeline(const char *model, run_out *o) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_pipeline *p = NULL;
  vkp_pipeline_opts po = {.width = 16, .height = 16, .text_encoder = VKP_PIPELINE_TEXT_REQUIRED};
  if (vkp_pipeline_load(ctx, model, &po, &p, &err)) fail_msg("%s: %s", model, err.msg);
  int tokens, dim, c, h, w;
  vkp_pipeline_text_shape(p, &tokens, &dim);
  vkp_pipeline_latent_shape(p, &c, &h, &w);
  assert_int_equal(tokens, TOKENS);
  assert_true(dim <= 128);
  assert_int_equal(c * h * w, 4 * 8 * 8);
  if (vkp_pipeline_encode_prompt(p, "a photo of an astronaut riding a horse", o->cond, &err) ||
      vkp_pipeline_encode_prompt(p, "blurry", o->uncond, &err))
    fail_msg("%s: %s", model, err.msg);
  vkp_sampler *s = NULL;
  vkp_sampler_opts so = vkp_sampler_opts_default(VKP_SAMPLER_EULER, 3);
  if (vkp_sampler_new(vkp_pipeline_scheduler_config(p), &so, (size_t)c * h * w, &s, &err)) fail_msg("%s", err.msg);
  vkp_rng rng = vkp_rng_new(42);
  vkp_sampler_init_latents(s, &rng, o->latents);
  if (vkp_pipeline_sample(p, s, o->latents, o->cond, o->uncond, 5.0f, &rng, NULL, NULL, &err) ||
      vkp_pipeline_decode(p, o->latents, false, o->decoded, NULL, &err))
    fail_msg("%s: %s", model, err.msg);
  vkp_sampler_free(s);
  o->unet_dtype = vkp_pipeline_unet(p)->conv_in->weight->dtype;
  o->text_dtype = vkp_text_encoder_clip(vkp_pipeline_text_encoder(p))->text.token_embedding->weight->dtype;
  o->ucfg = vkp_pipeline_unet(p)->cfg;
  vkp_pipeline_free(p);
}

static double max_diff(const float *a, const float *b, size_t n, double *scale) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), s = fmax(s, fabs(b[i]));
  *scale = s;
  return d;
}

static void compare(const char *what, const float *a, const float *b, size_t n) {
  double s, d = max_diff(a, b, n, &s);
  printf("  %-22s max |single file - folder| = %.3g (max |value| %.3g)\n", what, d, s);
  assert_true(s > 1e-3);   // something was computed
  assert_true(d <= 1e-6 * s);
}

static void check_variant(void **state, const variant *va) {
  char dir[300], file[300];
  vkp_test_dir_path(state, "pipeline", dir, sizeof dir);
  vkp_test_dir_path(state, "model.safetensors", file, sizeof file);
  make_folder(va, dir);
  make_single_file(va, dir, file, NULL, false);
  run_out *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
  run_pipeline(dir, a);
  run_pipeline(file, b);
  size_t nt = (size_t)TOKENS * va->text_width;
  compare("text states (prompt)", b->cond, a->cond, nt);
  compare("text states (negative)", b->uncond, a->uncond, nt);
  compare("final latents", b->latents, a->latents, sizeof a->latents / sizeof *a->latents);
  compare("decoded", b->decoded, a->decoded, sizeof a->decoded / sizeof *a->decoded);
  // The architecture read from the shapes is the one saved.
  assert_int_equal(b->ucfg.use_linear_projection, va->v2);
  assert_int_equal(b->ucfg.heads[1], a->ucfg.heads[1]);
  assert_int_equal(b->ucfg.block_out_channels[1], a->ucfg.block_out_channels[1]);
  assert_int_equal(b->ucfg.up_cross[1], true);
  assert_int_equal(b->ucfg.up_cross[0], false);
  vkp_dtype want = va->f16 ? VKP_DTYPE_F16 : VKP_DTYPE_F32;
  assert_int_equal(b->unet_dtype, want);
  assert_int_equal(b->text_dtype, want);
  free(a), free(b);
}

static void test_sd1_style(void **state) {
  variant va = {.v2 = false, .f16 = true, .text_width = 64, .text_layers = 2};
  check_variant(state, &va);
}

static void test_sd2_style(void **state) {
  variant va = {.v2 = true, .f16 = false, .text_width = 128, .text_layers = 2};
  check_variant(state, &va);
}

// ---- bad files ----------------------------------------------------------------------------------

static void expect_load_error(const char *path, vkp_status want, const char *needle1, const char *needle2) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_pipeline *p = NULL;
  vkp_pipeline_opts po = {.text_encoder = VKP_PIPELINE_TEXT_IF_PRESENT};
  vkp_status st = vkp_pipeline_load(ctx, path, &po, &p, &err);
  printf("  %s\n", err.msg);
  assert_null(p);
  assert_int_equal(st, want);
  if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
    fail_msg("'%s' does not name '%s' / '%s'", err.msg, needle1, needle2 ? needle2 : "");
}

static void test_bad_files(void **state) {
  variant va = {.v2 = false, .f16 = false, .text_width = 64, .text_layers = 1};
  char dir[300], file[300], args[2000], png[300];
  vkp_test_dir_path(state, "pipeline", dir, sizeof dir);
  vkp_test_dir_path(state, "missing.safetensors", file, sizeof file);
  vkp_test_dir_path(state, "out.png", png, sizeof png);
  make_folder(&va, dir);
  // Through the program, a tensor no model uses: reported with its name, the image still made.
  char extra[300];
  vkp_test_dir_path(state, "extra.safetensors", extra, sizeof extra);
  make_single_file(&va, dir, extra, NULL, true);
  snprintf(args, sizeof args, "generate --model %s --prompt cat --steps 1 --width 16 --height 16 --output %s", extra, png);
  vkp_cli_expect(args, 0, "1 tensors are not used by the UNet, VAE or text encoder (the first: 'model.diffusion_model.label_emb.0.0.weight')");
  if (strstr(vkp_cli_output(), "alphas_cumprod")) fail_msg("an expected tensor reported:\n%s", vkp_cli_output());
  assert_int_equal(access(png, F_OK), 0);
  assert_int_equal(unlink(png), 0);
  // A tensor missing: the file and the parameter named; exit 2 in the program.
  make_single_file(&va, dir, file, "model.diffusion_model.output_blocks.2.1.proj_out.weight", false);
  expect_load_error(file, VKP_ERR_FORMAT, "missing.safetensors", "up_blocks.1.attentions.0.proj_out.weight");
  snprintf(args, sizeof args, "generate --model %s --prompt cat --steps 1 --output %s", file, png);
  vkp_cli_expect(args, 2, "missing.safetensors: 1 UNet parameters are missing from the checkpoint (the first: 'up_blocks.1.attentions.0.proj_out.weight'");
  assert_int_equal(access(png, F_OK), -1);
  // Truncated: the safetensors reader names the file.
  char cut[300];
  vkp_test_dir_path(state, "cut.safetensors", cut, sizeof cut);
  make_single_file(&va, dir, cut, NULL, false);
  struct stat sb;
  assert_int_equal(stat(cut, &sb), 0);
  assert_int_equal(truncate(cut, sb.st_size - 1000), 0);
  expect_load_error(cut, VKP_ERR_FORMAT, "cut.safetensors", NULL);
  snprintf(args, sizeof args, "generate --model %s --prompt cat --steps 1 --output %s", cut, png);
  vkp_cli_expect(args, 2, "cut.safetensors");
  // Another model's safetensors.
  char vit[400];
  snprintf(vit, sizeof vit, "%s", vkp_fixture_path("vit/model/model.safetensors"));
  expect_load_error(vit, VKP_ERR_FORMAT, "model.safetensors", "not a Stable Diffusion checkpoint");
  snprintf(args, sizeof args, "generate --model %s --prompt cat --steps 1 --output %s", vit, png);
  vkp_cli_expect(args, 2, "not a Stable Diffusion checkpoint");
}

// ---- full-size names ----------------------------------------------------------------------------

// The conversion at SD 1.5 / SD 2.x sizes (4 blocks, 2 layers, upsamplers after transformers), key by
// key against the names diffusers' converter gives (scripts/convert_original_stable_diffusion_to_diffusers.py).
static void expect_name(vkp_ldm_map_fn f, const void *cfg, const char *key, int n, const char *want0, const char *want2) {
  char out[3][VKP_LDM_NAME_MAX];
  int got = f(cfg, key, out);
  if (got != n || (n && strcmp(out[0], want0)) || (n == 3 && strcmp(out[2], want2)))
    fail_msg("%s -> %d names ('%s'), want %d ('%s')", key, got, got ? out[0] : "", n, want0 ? want0 : "");
}

static void test_sd_names(void **state) {
  (void)state;
  vkp_unet_config u = {.n_blocks = 4, .mid_block = true};
  for (int i = 0; i < 4; i++) u.layers_per_block[i] = 2, u.down_cross[i] = i < 3, u.up_cross[i] = i > 0;
  static const char *const unet[][2] = {
      {"input_blocks.0.0.bias", "conv_in.bias"},
      {"input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"},
      {"input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"},
      {"input_blocks.8.1.transformer_blocks.0.ff.net.2.bias", "down_blocks.2.attentions.1.transformer_blocks.0.ff.net.2.bias"},
      {"input_blocks.11.0.in_layers.0.weight", "down_blocks.3.resnets.1.norm1.weight"},
      {"middle_block.1.proj_out.weight", "mid_block.attentions.0.proj_out.weight"},
      {"middle_block.2.out_layers.3.bias", "mid_block.resnets.1.conv2.bias"},
      {"output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"},
      {"output_blocks.5.1.proj_in.weight", "up_blocks.1.attentions.2.proj_in.weight"},
      {"output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"},
      {"output_blocks.8.2.conv.weight", "up_blocks.2.upsamplers.0.conv.weight"},
      {"output_blocks.11.0.emb_layers.1.weight", "up_blocks.3.resnets.2.time_emb_proj.weight"},
      {"output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight", "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight"},
      {"time_embed.2.weight", "time_embedding.linear_2.weight"},
      {"out.0.weight", "conv_norm_out.weight"},
  };
  for (size_t i = 0; i < sizeof unet / sizeof *unet; i++) expect_name(vkp_ldm_unet_name, &u, unet[i][0], 1, unet[i][1], NULL);
  expect_name(vkp_ldm_unet_name, &u, "output_blocks.11.2.conv.weight", 0, NULL, NULL);   // no upsampler in the last block
  expect_name(vkp_ldm_unet_name, &u, "label_emb.0.0.weight", 0, NULL, NULL);
  vkp_vae_config v = {.n_blocks = 4, .layers_per_block = 2};
  static const char *const vae[][2] = {
      {"decoder.up.3.block.0.conv1.weight", "decoder.up_blocks.0.resnets.0.conv1.weight"},
      {"decoder.up.0.block.2.nin_shortcut.bias", "decoder.up_blocks.3.resnets.2.conv_shortcut.bias"},
      {"decoder.up.1.upsample.conv.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight"},
      {"encoder.down.2.downsample.conv.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight"},
      {"encoder.mid.attn_1.proj_out.weight", "encoder.mid_block.attentions.0.to_out.0.weight"},
      {"decoder.mid.block_2.norm2.bias", "decoder.mid_block.resnets.1.norm2.bias"},
      {"decoder.norm_out.bias", "decoder.conv_norm_out.bias"},
      {"post_quant_conv.weight", "post_quant_conv.weight"},
  };
  for (size_t i = 0; i < sizeof vae / sizeof *vae; i++) expect_name(vkp_ldm_vae_name, &v, vae[i][0], 1, vae[i][1], NULL);
  vkp_clip_text_config t = {.num_hidden_layers = 23};   // SD 2.x: OpenCLIP's 24 blocks, the last dropped
  expect_name(vkp_ldm_openclip_name, &t, "transformer.resblocks.22.mlp.c_proj.weight", 1, "text_model.encoder.layers.22.mlp.fc2.weight", NULL);
  expect_name(vkp_ldm_openclip_name, &t, "transformer.resblocks.0.attn.in_proj_bias", 3, "text_model.encoder.layers.0.self_attn.q_proj.bias",
              "text_model.encoder.layers.0.self_attn.v_proj.bias");
  expect_name(vkp_ldm_openclip_name, &t, "transformer.resblocks.23.mlp.c_proj.weight", 0, NULL, NULL);
  expect_name(vkp_ldm_openclip_name, &t, "text_projection", 0, NULL, NULL);
  expect_name(vkp_ldm_openclip_name, &t, "positional_embedding", 1, "text_model.embeddings.position_embedding.weight", NULL);
  expect_name(vkp_ldm_clip_name, &t, "embeddings.token_embedding.weight", 1, "text_model.embeddings.token_embedding.weight", NULL);
}

// A UNet whose mid block has transformer blocks but no proj_in (seen while writing fuzz_ldm): the reader
// dereferenced the missing tensor; now it is an error naming it.
static void test_missing_mid_proj_in(void **state) {
  char path[300];
  vkp_test_dir_path(state, "mid.safetensors", path, sizeof path);
  static const struct {
    const char *name;
    int ndim;
    int64_t shape[4];
  } t[] = {
      {"input_blocks.0.0.weight", 4, {32, 4, 3, 3}},      {"out.2.weight", 4, {4, 32, 3, 3}},
      {"time_embed.0.weight", 2, {128, 32}},               {"input_blocks.1.0.out_layers.3.weight", 4, {32, 32, 3, 3}},
      {"middle_block.0.in_layers.0.weight", 1, {32}},      {"middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2, {32, 64}},
  };
  vkp_error err = {0};
  vkp_safetensors_writer *w;
  if (vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  static float zeros[32 * 32 * 9];
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    char name[200];
    snprintf(name, sizeof name, VKP_LDM_UNET_PREFIX "%s", t[i].name);
    if (vkp_safetensors_writer_add_f32(w, name, VKP_DTYPE_F32, t[i].ndim, t[i].shape, zeros, &err)) fail_msg("%s", err.msg);
  }
  if (vkp_safetensors_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_safetensors *sf = NULL;
  if (vkp_safetensors_open(path, &sf, &err)) fail_msg("%s", err.msg);
  vkp_unet_config c;
  assert_int_equal(vkp_ldm_unet_config(sf, false, &c, &err), VKP_ERR_FORMAT);
  printf("  %s\n", err.msg);
  assert_non_null(strstr(err.msg, "'" VKP_LDM_UNET_PREFIX "middle_block.1.proj_in.weight' is missing"));
  vkp_safetensors_free(sf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sd_names),
      cmocka_unit_test_setup_teardown(test_missing_mid_proj_in, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_sd1_style, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_sd2_style, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_bad_files, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
