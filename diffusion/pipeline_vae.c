// pipeline_vae.c — the pipeline's VAE graphs (batch 1: decode for every image, encode for an
// init image) and img2img's starting latents as diffusers' StableDiffusionImg2ImgPipeline
// prepares them (vkp_pipeline.h).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_internal.h"

static vkp_status vae_graph(vkp_pipeline *p, vkp_error *err) {
  if (p->vg) return VKP_OK;
  vkp_status st;
  if ((st = vkp_graph_new(p->ctx, &p->vg))) return vkp_pipeline_graph_fail(p, NULL, st, "VAE graph", err);
  p->v_z = vkp_tensor_input(p->vg, "latents", VKP_DTYPE_F32, 4, (int64_t[]){1, p->lc, p->lh, p->lw});
  if ((st = vkp_vae_decode(p->vae, p->vg, p->v_z, &p->v_out)))
    return vkp_pipeline_graph_fail(p, p->vg, st, "VAE decode", err);
  vkp_graph_output(p->vg, p->v_out);
  if ((st = vkp_graph_compile(p->vg))) return vkp_pipeline_graph_fail(p, p->vg, st, "VAE decode: compile", err);
  return VKP_OK;
}

static vkp_status encode_graph(vkp_pipeline *p, vkp_error *err) {
  if (p->eg) return VKP_OK;
  vkp_status st;
  int W = p->lw * p->factor, H = p->lh * p->factor;
  if ((st = vkp_graph_new(p->ctx, &p->eg))) return vkp_pipeline_graph_fail(p, NULL, st, "VAE encode graph", err);
  p->e_x = vkp_tensor_input(p->eg, "pixels", VKP_DTYPE_F32, 4, (int64_t[]){1, 3, H, W});
  if ((st = vkp_vae_encode(p->vae, p->eg, p->e_x, &p->e_mean, &p->e_logvar)))
    return vkp_pipeline_graph_fail(p, p->eg, st, "VAE encode", err);
  vkp_graph_output(p->eg, p->e_mean);
  vkp_graph_output(p->eg, p->e_logvar);
  if ((st = vkp_graph_compile(p->eg))) return vkp_pipeline_graph_fail(p, p->eg, st, "VAE encode: compile", err);
  return VKP_OK;
}

vkp_status vkp_pipeline_decode(vkp_pipeline *p, const float *latents, bool unscaled, float *decoded, uint8_t *rgb,
                               vkp_error *err) {
  vkp_status st = vae_graph(p, err);
  if (st) return st;
  size_t n = (size_t)p->lc * p->lh * p->lw;
  int W = p->lw * p->factor, H = p->lh * p->factor;
  float *z = malloc(n * sizeof(float));
  if (!z) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  float sf = p->vae->cfg.scaling_factor, sh = p->vae->cfg.has_shift_factor ? p->vae->cfg.shift_factor : 0.0f;
  if (unscaled) sf = 1, sh = 0;
  for (size_t i = 0; i < n; i++) z[i] = latents[i] / sf + sh;
  st = vkp_graph_set_input(p->vg, p->v_z, z, n * sizeof(float));
  free(z);
  if (!st) st = vkp_graph_run(p->vg);
  if (!st) st = vkp_graph_read(p->vg, p->v_out, decoded, (size_t)3 * W * H * sizeof(float));
  if (st) return vkp_pipeline_graph_fail(p, p->vg, st, "VAE decode: run", err);
  if (rgb) {
    size_t hw = (size_t)W * H;
    for (size_t i = 0; i < hw; i++)
      for (int c = 0; c < 3; c++) {
        float v = decoded[c * hw + i] * 0.5f + 0.5f;
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        rgb[i * 3 + c] = (uint8_t)lrintf(v * 255.0f);
      }
  }
  return VKP_OK;
}

vkp_status vkp_pipeline_encode_image(vkp_pipeline *p, const float *pixels, float *mean, float *logvar,
                                     vkp_error *err) {
  vkp_status st = encode_graph(p, err);
  if (st) return st;
  size_t n = (size_t)p->lc * p->lh * p->lw, np = (size_t)3 * p->lh * p->lw * p->factor * p->factor;
  st = vkp_graph_set_input(p->eg, p->e_x, pixels, np * sizeof(float));
  if (!st) st = vkp_graph_run(p->eg);
  if (!st) st = vkp_graph_read(p->eg, p->e_mean, mean, n * sizeof(float));
  if (!st) st = vkp_graph_read(p->eg, p->e_logvar, logvar, n * sizeof(float));
  if (st) return vkp_pipeline_graph_fail(p, p->eg, st, "VAE encode: run", err);
  return VKP_OK;
}

vkp_status vkp_pipeline_img2img_latents(vkp_pipeline *p, vkp_sampler *s, const float *pixels, double strength,
                                        vkp_rng *rng, float *latents, vkp_error *err) {
  if (!(strength >= 0 && strength <= 1))
    return vkp_error_set(err, VKP_ERR_INVALID, "strength %g: must be in [0, 1]", strength);
  const vkp_sampler_schedule *sch = vkp_sampler_get_schedule(s);
  int begin = vkp_sampler_strength_begin(s, strength);
  if (begin >= sch->n_evals)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "strength %g with %d steps: int(steps·strength) = 0 leaves no step to run (diffusers "
                         "raises here too)", strength, sch->steps);
  int batch = vkp_sampler_batch(s);
  size_t n = (size_t)p->lc * p->lh * p->lw, bn = (size_t)batch * n;
  float *mean = malloc(n * sizeof(float)), *logvar = malloc(n * sizeof(float));
  float *x0 = malloc(bn * sizeof(float)), *noise = malloc(bn * sizeof(float));
  vkp_status st = VKP_OK;
  if (!mean || !logvar || !x0 || !noise) {
    st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    goto done;
  }
  if ((st = vkp_pipeline_encode_image(p, pixels, mean, logvar, err))) goto done;
  // latent_dist.sample(generator): mean + exp(logvar/2)·randn, per image from its generator, then
  // (· − shift_factor)·scaling_factor; then randn noise from the same generators (float32 as torch).
  float sf = p->vae->cfg.scaling_factor, sh = p->vae->cfg.has_shift_factor ? p->vae->cfg.shift_factor : 0.0f;
  vkp_sampler_randn(s, rng, x0);
  for (size_t i = 0; i < bn; i++) {
    size_t j = i % n;
    float std = expf(0.5f * logvar[j]);
    x0[i] = (mean[j] + std * x0[i] - sh) * sf;
  }
  vkp_sampler_randn(s, rng, noise);
  vkp_sampler_set_begin(s, begin);
  vkp_sampler_add_noise(s, begin, x0, noise, latents);
done:
  free(mean), free(logvar), free(x0), free(noise);
  return st;
}
