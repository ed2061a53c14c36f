// cli_model.h — shared by the subcommands that load a model: argument parsing of
// --model/--adapter/--merge and loading a ViT with its adapters and preprocessing.
#ifndef VKPEFT_CLI_MODEL_H
#define VKPEFT_CLI_MODEL_H

#include "vkp_preprocess.h"
#include "vkp_vit.h"

#define VKP_CLI_MAX_ADAPTERS 16

typedef struct vkp_cli_model {
  const char *model_dir;
  const char *adapters[VKP_CLI_MAX_ADAPTERS];
  float scales[VKP_CLI_MAX_ADAPTERS];   // --adapter DIR[:scale]
  int n_adapters;
  bool merge;
} vkp_cli_model;

// Consumes argv[*i] (and its value) if it is --model, --adapter or --merge; returns 1 if consumed,
// 0 if not ours, -1 on a missing value or too many adapters.
int vkp_cli_model_arg(vkp_cli_model *m, int argc, char **argv, int *i);
// Loads the ViT and attaches the adapters (merged when m->merge); `tf` (may be NULL) gets the
// preprocessing from the first adapter's or the model's preprocessor_config.json.
vkp_status vkp_cli_model_load(vkp_ctx *ctx, const vkp_cli_model *m, vkp_vit **out, vkp_data_transform *tf,
                              vkp_error *err);

#endif
