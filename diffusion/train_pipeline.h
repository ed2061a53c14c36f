// train_pipeline.h — the diffusion trainer's final pipeline folder (train_pipeline.c).
#ifndef VKP_DIFFUSION_TRAIN_PIPELINE_H
#define VKP_DIFFUSION_TRAIN_PIPELINE_H

#include "train_internal.h"

// True when the run's pipeline differs from model.pretrained: a random-init UNet
// (model.init.unet), a `full` method, or parts from elsewhere (model.vae, model.text_encoder).
bool vkp_dtrain_new_pipeline(const vkp_dtrainer *t);
// Writes dir/pipeline/ (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) as
// diffusers lays it out, for `vkpeft generate --model dir/pipeline`. The tokenizer's vocab.json +
// merges.txt are copied from the folder it was loaded from (VKP_ERR_INVALID naming
// model.tokenizer for the built-in one, which has no such files).
vkp_status vkp_dtrain_save_pipeline(vkp_dtrainer *t, const char *dir, vkp_error *err);

#endif
