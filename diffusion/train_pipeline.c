// train_pipeline.c — the pipeline folder a diffusion run that made a new base writes at its end.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train_pipeline.h"
#include "vkp_config.h"
#include "vkp_fileio.h"

bool vkp_dtrain_new_pipeline(const vkp_dtrainer *t) {
  const cJSON *c = t->cfg, *item;
  bool full = false;
  cJSON_ArrayForEach(item, vkp_config_get(c, "peft")) {
    const char *m = vkp_config_string(item, "method");
    full |= m && !strcmp(m, "full");
  }
  return full || cJSON_GetObjectItemCaseSensitive(vkp_config_get(c, "model.init"), "unet") || vkp_config_string(c, "model.vae") ||
         vkp_config_string(c, "model.text_encoder");
}

static vkp_status copy_file(const char *from, const char *to, vkp_error *err) {
  char *buf;
  size_t len;
  VKP_TRY(vkp_file_read_all(from, (size_t)1 << 30, &buf, &len, err));
  vkp_status st = vkp_file_write_atomic(to, (const void *const[]){buf}, (const size_t[]){len}, 1, err);
  free(buf);
  return st;
}

static bool is_file(const char *p) {
  struct stat sb;
  return !stat(p, &sb) && S_ISREG(sb.st_mode);
}

// vocab.json + merges.txt (and the token configs when present) of the tokenizer's folder.
static vkp_status save_tokenizer(vkp_dtrainer *t, const char *out, vkp_error *err) {
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(vkp_text_encoder_tokenizer(t->te), &info);
  char src[1300], from[1500], to[1500];
  snprintf(src, sizeof src, "%s", info.source ? info.source : "");
  snprintf(from, sizeof from, "%s/tokenizer/vocab.json", src);
  if (is_file(from)) snprintf(src, sizeof src, "%s/tokenizer", info.source);
  snprintf(from, sizeof from, "%s/vocab.json", src);
  if (!is_file(from))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'model.tokenizer': the pipeline needs a tokenizer folder (vocab.json + merges.txt); "
                         "the text encoder's is %s", info.source ? info.source : "built in");
  VKP_TRY(vkp_dir_create(out, err));
  const char *files[] = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"};
  for (int i = 0; i < 4; i++) {
    snprintf(from, sizeof from, "%s/%s", src, files[i]);
    snprintf(to, sizeof to, "%s/%s", out, files[i]);
    if (i < 2 || is_file(from)) VKP_TRY(copy_file(from, to, err));
  }
  return VKP_OK;
}

static const char MODEL_INDEX[] =
    "{\n  \"_class_name\": \"StableDiffusionPipeline\",\n  \"_diffusers_version\": \"0.30.0\",\n"
    "  \"feature_extractor\": [null, null],\n  \"safety_checker\": [null, null],\n  \"requires_safety_checker\": false,\n"
    "  \"scheduler\": [\"diffusers\", \"DDPMScheduler\"],\n  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],\n"
    "  \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n  \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],\n"
    "  \"vae\": [\"diffusers\", \"AutoencoderKL\"]\n}\n";

vkp_status vkp_dtrain_save_pipeline(vkp_dtrainer *t, const char *dir, vkp_error *err) {
  char out[1300], path[1400], from[1400];
  snprintf(out, sizeof out, "%s/pipeline", dir);
  VKP_TRY(vkp_dir_create(out, err));
  snprintf(path, sizeof path, "%s/unet", out);
  VKP_TRY(vkp_unet_save(t->unet, path, err));
  snprintf(path, sizeof path, "%s/vae", out);
  VKP_TRY(vkp_vae_save(t->vae, path, err));
  snprintf(path, sizeof path, "%s/text_encoder", out);
  VKP_TRY(vkp_clip_save(vkp_text_encoder_clip(t->te), path, err));
  snprintf(path, sizeof path, "%s/tokenizer", out);
  VKP_TRY(save_tokenizer(t, path, err));
  snprintf(path, sizeof path, "%s/scheduler", out);
  VKP_TRY(vkp_dir_create(path, err));
  snprintf(from, sizeof from, "%s/scheduler/scheduler_config.json", vkp_config_string(t->cfg, "model.pretrained"));
  snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", out);
  VKP_TRY(copy_file(from, path, err));
  snprintf(path, sizeof path, "%s/model_index.json", out);
  VKP_TRY(vkp_file_write_atomic(path, (const void *const[]){MODEL_INDEX}, (const size_t[]){sizeof MODEL_INDEX - 1}, 1, err));
  if (!t->quiet) printf("vkpeft train: pipeline saved in %s (vkpeft generate --model %s)\n", out, out);
  return VKP_OK;
}
