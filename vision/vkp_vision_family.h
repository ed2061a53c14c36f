// vkp_vision_family.h — the ViT model family (family_vit.c) and its loaded object, for the
// subcommands that need the classifier itself (`predict`).
#ifndef VKP_VISION_FAMILY_H
#define VKP_VISION_FAMILY_H

#include "vkp_data.h"
#include "vkp_family.h"
#include "vkp_vit.h"

typedef struct vkp_vit_handle {
  vkp_vit *vit;                 // owned
  vkp_data_transform tf;        // preprocessing (preprocessor_config.json, else pixels scaled to [0, 1])
  bool tf_default;              // no preprocessor_config.json was found
} vkp_vit_handle;

extern const vkp_model_family vkp_family_vit;

#endif
