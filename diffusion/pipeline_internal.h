// pipeline_internal.h — the vkp_pipeline object, shared by pipeline.c (load, sampling),
// pipeline_vae.c (encode/decode graphs, img2img latents) and pipeline_lora.c (LoRA files).
#ifndef VKP_PIPELINE_INTERNAL_H
#define VKP_PIPELINE_INTERNAL_H

#include "vkp_peft.h"
#include "vkp_pipeline.h"

#define VKP_PIPELINE_MAX_LORAS 32

typedef struct vkp_pipeline_lora {
  vkp_adapter *unet, *te;   // the file's parts (either may be NULL), owned by the models
  float scale;
  bool merged;
} vkp_pipeline_lora;

struct vkp_pipeline {
  vkp_ctx *ctx;
  char dir[1024];
  vkp_unet *unet;
  vkp_vae *vae;
  vkp_text_encoder *te;    // NULL: states come from the caller
  vkp_scheduler_config sched;
  bool have_sched;
  int lc, lh, lw;          // latent shape
  int tokens, dim;         // text states
  int factor;              // VAE downsampling
  // UNet graph, for 2·ub rows (uncond, cond per image); rebuilt when the batch or the adapters change
  vkp_graph *ug;
  int ub;
  vkp_tensor *u_x, *u_t, *u_ctx, *u_out;
  // VAE graphs (batch 1)
  vkp_graph *vg;
  vkp_tensor *v_z, *v_out;
  vkp_graph *eg;
  vkp_tensor *e_x, *e_mean, *e_logvar;
  vkp_pipeline_lora lora[VKP_PIPELINE_MAX_LORAS];
  int n_lora;
};

// An error from graph g (or the context) as "DIR: what: message".
vkp_status vkp_pipeline_graph_fail(vkp_pipeline *p, vkp_graph *g, vkp_status st, const char *what, vkp_error *err);

#endif
