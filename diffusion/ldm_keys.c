// ldm_keys.c — the one place that converts the key names of original Stable Diffusion (LDM,
// CompVis / Stability) checkpoints, as A1111 and ComfyUI keep them in one .safetensors file, to
// the names vkpeft's models register (diffusers' UNet2DConditionModel and AutoencoderKL,
// transformers' CLIPTextModel). The layouts, one part at a time (prefixes stripped):
//
// UNet (`model.diffusion_model.`): `time_embed.0/2` = time_embedding.linear_1/2,
// `input_blocks.0.0` = conv_in, then input_blocks.K for K = 1, 2, ...: per down block i, one K per
// layer l (`.0` its ResBlock = down_blocks.i.resnets.l, `.1` its SpatialTransformer =
// down_blocks.i.attentions.l) and, except after the last block, one K for the downsampler
// (`.0.op` = down_blocks.i.downsamplers.0.conv); `middle_block.0/1/2` = mid_block.resnets.0,
// attentions.0, resnets.1; output_blocks.J for J = 0, 1, ...: per up block i, one J per layer
// (layers_per_block + 1 of them: `.0` ResBlock, `.1` SpatialTransformer in a cross-attention
// block; the last layer of every block but the last also has the Upsample, `.1.conv` or `.2.conv`
// after a transformer = up_blocks.i.upsamplers.0.conv); `out.0/2` = conv_norm_out, conv_out.
// ResBlocks: in_layers.0/2 = norm1/conv1, emb_layers.1 = time_emb_proj, out_layers.0/3 =
// norm2/conv2, skip_connection = conv_shortcut. Transformers keep diffusers' inner names.
//
// VAE (`first_stage_model.`): encoder/decoder `conv_in`, `conv_out` as they are, `norm_out` =
// conv_norm_out; encoder.down.I.block.J = encoder.down_blocks.I.resnets.J, `.downsample.conv` =
// downsamplers.0.conv; decoder.up.I counts from the bottom: decoder.up_blocks.(n-1-I), `.upsample`
// = upsamplers.0; mid.block_1/2 = mid_block.resnets.0/1; mid.attn_1.{norm,q,k,v,proj_out} =
// mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0} (1x1 convolutions there, Linear
// here: the same numbers, loaded by element count); nin_shortcut = conv_shortcut.
//
// SD 1.x text (`cond_stage_model.transformer.`): transformers' CLIPTextModel keys as they are
// (`text_model.` inserted for files from before transformers wrapped the tower).
//
// SD 2.x text (`cond_stage_model.model.`, OpenCLIP): token_embedding, positional_embedding,
// ln_final = text_model.embeddings.token_embedding, .position_embedding, final_layer_norm;
// transformer.resblocks.N = text_model.encoder.layers.N with ln_1/ln_2 = layer_norm1/2,
// attn.in_proj_{weight,bias} = self_attn.{q,k,v}_proj (rows in thirds), attn.out_proj =
// self_attn.out_proj, mlp.c_fc/c_proj = mlp.fc1/fc2.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldm_internal.h"

static bool starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

// `<prefix><int>.` at the start of s: *n = the int, returns the rest (NULL when s does not start so).
static const char *index_after(const char *s, const char *prefix, int *n) {
  if (!starts(s, prefix)) return NULL;
  s += strlen(prefix);
  char *end;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '.' || v < 0 || v > 100000) return NULL;
  *n = (int)v;
  return end + 1;
}

// Renames the leading component of `rest` by a table (from, to); NULL when none matches.
static const char *rename_head(const char *rest, const char *const (*table)[2], size_t n, const char **tail) {
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(table[i][0]);
    if (!strncmp(rest, table[i][0], len) && rest[len] == '.') {
      *tail = rest + len;
      return table[i][1];
    }
  }
  return NULL;
}

static int put(char out[3][VKP_LDM_NAME_MAX], const char *a, const char *b, const char *c) {
  int n = snprintf(out[0], VKP_LDM_NAME_MAX, "%s%s%s", a, b, c);
  return n > 0 && n < VKP_LDM_NAME_MAX;
}

// ---- UNet ---------------------------------------------------------------------------------------

static const char *const unet_resnet[][2] = {{"in_layers.0", "norm1"},         {"in_layers.2", "conv1"},
                                             {"emb_layers.1", "time_emb_proj"}, {"out_layers.0", "norm2"},
                                             {"out_layers.3", "conv2"},         {"skip_connection", "conv_shortcut"}};

// A ResBlock's key rest -> "<block>.<diffusers sub-name>...".
static int unet_resnet_name(const char *block, const char *rest, char out[3][VKP_LDM_NAME_MAX]) {
  const char *tail, *to = rename_head(rest, unet_resnet, sizeof unet_resnet / sizeof *unet_resnet, &tail);
  if (!to) return 0;
  char head[VKP_LDM_NAME_MAX];
  snprintf(head, sizeof head, "%s.%s", block, to);
  return put(out, head, tail, "");
}

// input_blocks.K.S.rest
static int unet_input_name(const vkp_unet_config *c, int K, int S, const char *rest, char out[3][VKP_LDM_NAME_MAX]) {
  char block[VKP_LDM_NAME_MAX];
  int k = 1;
  for (int i = 0; i < c->n_blocks; i++) {
    for (int l = 0; l < c->layers_per_block[i]; l++, k++) {
      if (k != K) continue;
      if (S == 0) {
        snprintf(block, sizeof block, "down_blocks.%d.resnets.%d", i, l);
        return unet_resnet_name(block, rest, out);
      }
      if (S != 1 || !c->down_cross[i]) return 0;
      snprintf(block, sizeof block, "down_blocks.%d.attentions.%d.", i, l);
      return put(out, block, rest, "");
    }
    if (i == c->n_blocks - 1) break;
    if (k++ != K) continue;
    if (S != 0 || !starts(rest, "op.")) return 0;
    snprintf(block, sizeof block, "down_blocks.%d.downsamplers.0.conv.", i);
    return put(out, block, rest + 3, "");
  }
  return 0;
}

// output_blocks.J.S.rest
static int unet_output_name(const vkp_unet_config *c, int J, int S, const char *rest, char out[3][VKP_LDM_NAME_MAX]) {
  char block[VKP_LDM_NAME_MAX];
  int j = 0, nb = c->n_blocks;
  for (int i = 0; i < nb; i++) {
    int n = c->layers_per_block[nb - 1 - i] + 1;
    if (J >= j + n) {
      j += n;
      continue;
    }
    int l = J - j, up_at = c->up_cross[i] ? 2 : 1;
    if (S == 0) {
      snprintf(block, sizeof block, "up_blocks.%d.resnets.%d", i, l);
      return unet_resnet_name(block, rest, out);
    }
    if (S == 1 && c->up_cross[i]) {
      snprintf(block, sizeof block, "up_blocks.%d.attentions.%d.", i, l);
      return put(out, block, rest, "");
    }
    if (S == up_at && l == n - 1 && i < nb - 1 && starts(rest, "conv.")) {
      snprintf(block, sizeof block, "up_blocks.%d.upsamplers.0.", i);
      return put(out, block, rest, "");
    }
    return 0;
  }
  return 0;
}

int vkp_ldm_unet_name(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]) {
  const vkp_unet_config *c = cfg;
  static const char *const fixed[][2] = {{"time_embed.0", "time_embedding.linear_1"}, {"time_embed.2", "time_embedding.linear_2"},
                                         {"out.0", "conv_norm_out"},                  {"out.2", "conv_out"}};
  const char *tail, *to = rename_head(key, fixed, sizeof fixed / sizeof *fixed, &tail);
  if (to) return put(out, to, tail, "");
  int K, S;
  const char *rest;
  if ((rest = index_after(key, "input_blocks.", &K)) && (rest = index_after(rest, "", &S))) {
    if (K == 0) return S == 0 ? put(out, "conv_in.", rest, "") : 0;
    return unet_input_name(c, K, S, rest, out);
  }
  if ((rest = index_after(key, "output_blocks.", &K)) && (rest = index_after(rest, "", &S)))
    return unet_output_name(c, K, S, rest, out);
  if (c->mid_block && (rest = index_after(key, "middle_block.", &S))) {
    if (S == 1) return put(out, "mid_block.attentions.0.", rest, "");
    if (S == 0) return unet_resnet_name("mid_block.resnets.0", rest, out);
    if (S == 2) return unet_resnet_name("mid_block.resnets.1", rest, out);
  }
  return 0;
}

// ---- VAE ----------------------------------------------------------------------------------------

static const char *const vae_resnet[][2] = {{"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"},
                                            {"conv2", "conv2"}, {"nin_shortcut", "conv_shortcut"}};
static const char *const vae_attention[][2] = {{"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"},
                                               {"v", "to_v"},          {"proj_out", "to_out.0"}};
static const char *const vae_top[][2] = {{"conv_in", "conv_in"}, {"conv_out", "conv_out"}, {"norm_out", "conv_norm_out"}};

static int vae_table_name(const char *block, const char *rest, const char *const (*table)[2], size_t n,
                          char out[3][VKP_LDM_NAME_MAX]) {
  const char *tail, *to = rename_head(rest, table, n, &tail);
  if (!to) return 0;
  char head[VKP_LDM_NAME_MAX];
  snprintf(head, sizeof head, "%s.%s", block, to);
  return put(out, head, tail, "");
}

// "<coder>.mid.*" -> "<coder>.mid_block.*"
static int vae_mid_name(const char *coder, const char *rest, char out[3][VKP_LDM_NAME_MAX]) {
  char block[VKP_LDM_NAME_MAX];
  int r;
  const char *sub;
  if ((sub = index_after(rest, "block_", &r)) && (r == 1 || r == 2)) {
    snprintf(block, sizeof block, "%s.mid_block.resnets.%d", coder, r - 1);
    return vae_table_name(block, sub, vae_resnet, sizeof vae_resnet / sizeof *vae_resnet, out);
  }
  if (starts(rest, "attn_1.")) {
    snprintf(block, sizeof block, "%s.mid_block.attentions.0", coder);
    return vae_table_name(block, rest + 7, vae_attention, sizeof vae_attention / sizeof *vae_attention, out);
  }
  return 0;
}

int vkp_ldm_vae_name(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]) {
  const vkp_vae_config *c = cfg;
  if (starts(key, "quant_conv.") || starts(key, "post_quant_conv.")) return put(out, key, "", "");
  bool enc = starts(key, "encoder."), dec = starts(key, "decoder.");
  if (!enc && !dec) return 0;
  const char *coder = enc ? "encoder" : "decoder", *rest = key + 8, *sub;
  char block[VKP_LDM_NAME_MAX];
  int n = vae_table_name(coder, rest, vae_top, sizeof vae_top / sizeof *vae_top, out);
  if (n) return n;
  if (starts(rest, "mid.")) return vae_mid_name(coder, rest + 4, out);
  int I, J;
  if ((sub = index_after(rest, enc ? "down." : "up.", &I))) {
    if (I >= c->n_blocks) return 0;
    int b = enc ? I : c->n_blocks - 1 - I;
    const char *blocks = enc ? "down_blocks" : "up_blocks", *sampler = enc ? "downsample" : "upsample";
    size_t len = strlen(sampler);
    if (!strncmp(sub, sampler, len) && sub[len] == '.') {   // "downsample." -> "downsamplers.0."
      snprintf(block, sizeof block, "%s.%s.%d.%srs.0", coder, blocks, b, sampler);
      return put(out, block, sub + len, "");
    }
    if ((sub = index_after(sub, "block.", &J))) {
      snprintf(block, sizeof block, "%s.%s.%d.resnets.%d", coder, blocks, b, J);
      return vae_table_name(block, sub, vae_resnet, sizeof vae_resnet / sizeof *vae_resnet, out);
    }
  }
  return 0;
}

// ---- text towers --------------------------------------------------------------------------------

int vkp_ldm_clip_name(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]) {
  (void)cfg;
  if (starts(key, "text_model.")) return put(out, key, "", "");
  if (starts(key, "embeddings.") || starts(key, "encoder.") || starts(key, "final_layer_norm."))
    return put(out, "text_model.", key, "");
  return 0;
}

int vkp_ldm_openclip_name(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]) {
  const vkp_clip_text_config *t = cfg;
  static const char *const top[][2] = {{"token_embedding", "text_model.embeddings.token_embedding"},
                                       {"ln_final", "text_model.final_layer_norm"}};
  static const char *const layer[][2] = {{"ln_1", "layer_norm1"},
                                         {"ln_2", "layer_norm2"},
                                         {"attn.out_proj", "self_attn.out_proj"},
                                         {"mlp.c_fc", "mlp.fc1"},
                                         {"mlp.c_proj", "mlp.fc2"}};
  if (!strcmp(key, "positional_embedding")) return put(out, "text_model.embeddings.position_embedding.weight", "", "");
  const char *tail, *to = rename_head(key, top, sizeof top / sizeof *top, &tail), *rest;
  if (to) return put(out, to, tail, "");
  int N;
  if (!(rest = index_after(key, "transformer.resblocks.", &N)) || N >= t->num_hidden_layers) return 0;
  char head[48];
  snprintf(head, sizeof head, "text_model.encoder.layers.%d.", N);
  if (!strcmp(rest, "attn.in_proj_weight") || !strcmp(rest, "attn.in_proj_bias")) {
    const char *what = strstr(rest, "weight") ? "weight" : "bias";
    for (int k = 0; k < 3; k++) snprintf(out[k], VKP_LDM_NAME_MAX, "%sself_attn.%c_proj.%s", head, "qkv"[k], what);
    return 3;
  }
  if (!(to = rename_head(rest, layer, sizeof layer / sizeof *layer, &tail))) return 0;
  return put(out, head, to, tail);
}
