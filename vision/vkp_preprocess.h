// vkp_preprocess.h — the image preprocessing a model expects, saved beside it as HF's
// preprocessor_config.json (ViTImageProcessor: size, do_rescale/rescale_factor 1/255,
// do_normalize with image_mean/image_std), so eval/predict/export use what training used.
#ifndef VKP_PREPROCESS_H
#define VKP_PREPROCESS_H

#include "vkp_data.h"

// Writes dir/preprocessor_config.json for transform t (its size, mean and std).
vkp_status vkp_preprocess_save(const vkp_data_transform *t, int channels, const char *dir, vkp_error *err);
// Reads dir/preprocessor_config.json into an evaluation transform of size x size; a missing file
// gives VKP_ERR_NOT_FOUND (callers then fall back to no normalisation, with a warning).
vkp_status vkp_preprocess_load(const char *dir, int size, int channels, vkp_data_transform *t, vkp_error *err);

#endif
