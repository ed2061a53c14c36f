// train_pixels.h — the VAE's input pixels of a pair set's image, shared by the diffusion trainer
// (train_data.c, where they live) and the VAE trainer (vae_train*.c).
#ifndef VKP_DIFFUSION_TRAIN_PIXELS_H
#define VKP_DIFFUSION_TRAIN_PIXELS_H

#include "vkp_pairs.h"

// Composites a transform's (4, R, R) [0, 1] output in place: RGB onto `alpha` ("white", "black",
// "drop": as is), rescaled to [-1, 1]; the alpha plane stays in [0, 1].
void vkp_diffusion_finish_pixels(int resolution, vkp_alpha_mode alpha, float *px);
// Image i of p resized (shorter side) to `resolution`, center-cropped, finished as above into
// out (4, R, R). Errors: those of vkp_data_transform_apply.
vkp_status vkp_diffusion_pixels(const vkp_pairs *p, size_t i, int resolution, vkp_alpha_mode alpha, float *out, vkp_error *err);

#endif
