// cmd_generate.c — `vkpeft generate`: text-to-image and img2img on a Stable-Diffusion pipeline
// (diffusion/vkp_pipeline.h): batches with per-image seeds, LoRAs from --lora and from the prompt's
// `<lora:NAME:SCALE>` tags, comparison grids, PNGs with A1111's `parameters` text chunk;
// `--tensors-in` / `--tensors-out` for parity checks without a text encoder. The pieces:
// tools/cli_generate.h.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_generate.h"
#include "vkp_data.h"
#include "vkp_device.h"
#include "vkp_pairs.h"
#include "vkp_pipeline.h"
#include "vkp_plot.h"
#include "vkp_png.h"
#include "vkp_progress.h"
#include "vkp_safetensors.h"
#include "vkpeft_cli.h"

// ---- one generation run -------------------------------------------------------------------------

typedef struct gen_run {
  vkp_gen_opts *o;
  vkp_pipeline *p;
  vkp_scheduler_config sched;    // the pipeline's, with --prediction-type applied (shallow copy)
  vkp_sampler_kind kind;
  int spacing;
  int lc, lh, lw, T, D, W, H;
  size_t n;                      // latent elements of one image
  float *cond, *uncond;          // (T·D) text states
  float *init_pixels;            // (3·H·W) in [-1, 1], img2img
  char *clean_prompt;            // the prompt without <lora:> tags
  bool karras;                   // the schedule the last run used
  char model_hash[11];
  char lora_hash[VKP_GEN_MAX_LORAS][13];
  const char *lora_hash_p[VKP_GEN_MAX_LORAS];
} gen_run;

static void progress_cb(void *user, int i, int n) { vkp_progress_update(user, i, i, NAN, NULL); }

static vkp_status encode_prompts(gen_run *r, vkp_error *err) {
  vkp_status st = vkp_pipeline_encode_prompt(r->p, r->clean_prompt, r->cond, err);
  if (!st) st = vkp_pipeline_encode_prompt(r->p, r->o->neg, r->uncond, err);
  return st;
}

// Samples `batch` images with seeds seeds[0..batch) and guidance cfg: final latents into lat
// (batch·n), RGB pixels into rgb (batch·3·W·H). conds: one text state per image (batch·T·D), or
// NULL for r->cond on every image.
static vkp_status sample_images(gen_run *r, int batch, const unsigned long long *seeds, double cfg, const float *conds,
                                float *lat, uint8_t *rgb, float *decoded, vkp_error *err) {
  vkp_gen_opts *o = r->o;
  vkp_sampler_opts so = vkp_sampler_opts_default(r->kind, o->steps);
  so.karras = o->karras;
  so.spacing = r->spacing;
  so.batch = batch;
  vkp_sampler *s = NULL;
  vkp_rng *rng = malloc((size_t)batch * sizeof *rng);
  if (!rng) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = vkp_sampler_new(&r->sched, &so, (size_t)batch * r->n, &s, err);
  if (st) goto done;
  r->karras = vkp_sampler_get_schedule(s)->karras;
  for (int k = 0; k < batch; k++) rng[k] = vkp_rng_new(seeds[k]);
  if (r->init_pixels) {
    if ((st = vkp_pipeline_img2img_latents(r->p, s, r->init_pixels, o->strength, rng, lat, err))) goto done;
  } else if (!o->tin) vkp_sampler_init_latents(s, rng, lat);
  else {   // diffusers' prepare_latents with given latents: times init_noise_sigma
    float ins = (float)vkp_sampler_init_noise_sigma(s);
    for (size_t i = 0; i < r->n; i++) lat[i] *= ins;
  }
  vkp_progress_opts po = {.label = "sampling", .total = vkp_sampler_evals(s) - vkp_sampler_get_begin(s), .unit = "it"};
  vkp_progress *bar = vkp_progress_new(&po);
  st = conds ? vkp_pipeline_sample_each(r->p, s, lat, conds, r->uncond, (float)cfg, rng, progress_cb, bar, err)
             : vkp_pipeline_sample(r->p, s, lat, r->cond, r->uncond, (float)cfg, rng, progress_cb, bar, err);
  vkp_progress_free(bar);
  if (st) goto done;
  for (int k = 0; k < batch && !st; k++)
    st = vkp_pipeline_decode(r->p, lat + (size_t)k * r->n, false, decoded, rgb + (size_t)k * 3 * r->W * r->H, err);
done:
  vkp_sampler_free(s);
  free(rng);
  return st;
}

static void fill_params(gen_run *r, vkp_gen_params *g, unsigned long long seed, double cfg, const char *sampler) {
  vkp_gen_opts *o = r->o;
  const char *mn = o->model + strlen(o->model);
  while (mn > o->model && mn[-1] == '/') mn--;
  static char name[512];
  const char *b = mn;
  while (b > o->model && b[-1] != '/') b--;
  snprintf(name, sizeof name, "%.*s", (int)(mn - b), b);
  char *dot = strrchr(name, '.');
  if (dot && r->model_hash[0]) *dot = 0;   // a checkpoint file: its stem, as A1111
  *g = (vkp_gen_params){.prompt = o->tin ? "" : o->prompt, .negative = o->neg, .steps = o->steps, .sampler = sampler,
                        .cfg = cfg, .seed = seed, .width = r->W, .height = r->H, .model_name = name,
                        .model_hash = r->model_hash, .strength = r->init_pixels ? o->strength : -1,
                        .clip_skip = o->clip_skip, .loras = o->loras, .n_loras = o->n_lora,
                        .lora_hashes = r->lora_hash_p};
}

static vkp_status write_png(const char *path, const vkp_image *img, const vkp_gen_params *g, vkp_error *err) {
  char *par = vkp_gen_params_text(g);
  if (!par) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_png_text txt = {"parameters", par};
  vkp_status st = vkp_png_write(path, img, &txt, 1, err);
  free(par);
  if (!st) printf("wrote %s (%dx%d)\n", path, img->width, img->height);
  return st;
}

static vkp_status write_tensors(gen_run *r, const float *lat, float *decoded, vkp_error *err) {
  vkp_status st = vkp_pipeline_decode(r->p, lat, true, decoded, NULL, err);   // as the fixtures define `decoded`
  vkp_safetensors_writer *w = NULL;
  if (!st) st = vkp_safetensors_writer_new(&w, err);
  if (!st)
    st = vkp_safetensors_writer_add_f32(w, "final_latents", VKP_DTYPE_F32, 4, (int64_t[]){1, r->lc, r->lh, r->lw}, lat, err);
  if (!st) st = vkp_safetensors_writer_add_f32(w, "decoded", VKP_DTYPE_F32, 4, (int64_t[]){1, 3, r->H, r->W}, decoded, err);
  if (!st) st = vkp_safetensors_writer_save(w, r->o->tout, err);
  vkp_safetensors_writer_free(w);
  return st;
}

// The grid PNG (NNNNN-grid.png): the cells in rows of `cols`, each captioned, with the generation
// parameters `g` (its `extra` says what the grid varies) in the PNG's text chunk.
static vkp_status write_grid(vkp_gen_out *out, const vkp_image *cells, const char *const *captions, int n, int cols,
                             const vkp_gen_params *g, vkp_error *err) {
  vkp_image *grid = NULL;
  char path[1200];
  vkp_status st = vkp_gen_grid(cells, captions, n, cols, NULL, &grid, err);
  if (!st) {
    vkp_gen_out_path(out, 0, 1, 0, true, path, sizeof path);
    st = write_png(path, grid, g, err);
  }
  vkp_image_free(grid);
  return st;
}

// --grid: one image per value, side by side with the value under each.
static vkp_status run_grid(gen_run *r, vkp_gen_out *out, float *lat, uint8_t *rgb, float *decoded, vkp_error *err) {
  vkp_gen_opts *o = r->o;
  static const char *const titles[] = {"", "seed", "LoRA scale", "CFG scale"};
  char labels[VKP_GEN_MAX_GRID][64];
  const char *lp[VKP_GEN_MAX_GRID];
  vkp_image cells[VKP_GEN_MAX_GRID];
  size_t img = (size_t)3 * r->W * r->H;
  vkp_status st = VKP_OK;
  for (int k = 0; k < o->n_grid && !st; k++) {
    double v = o->grid_values[k], cfg = o->cfg;
    unsigned long long seed = o->seed;
    if (o->grid == VKP_GEN_GRID_SEEDS) seed = (unsigned long long)v;
    else if (o->grid == VKP_GEN_GRID_CFG) cfg = v;
    else {
      for (int i = 0; i < vkp_pipeline_lora_count(r->p) && !st; i++) st = vkp_pipeline_set_lora_scale(r->p, i, (float)v, err);
      for (int i = 0; i < o->n_lora; i++) o->loras[i].scale = (float)v;
      if (!st && !o->tin) st = encode_prompts(r, err);   // a text-encoder part changes the states
    }
    if (!st) st = sample_images(r, 1, &seed, cfg, NULL, lat, rgb + k * img, decoded, err);
    snprintf(labels[k], sizeof labels[k], "%s %g", titles[o->grid], v);
    lp[k] = labels[k];
    cells[k] = (vkp_image){.width = r->W, .height = r->H, .channels = 3, .data = rgb + k * img};
  }
  if (!st) {
    char extra[1200], vals[1024] = "";
    for (int k = 0; k < o->n_grid; k++)
      snprintf(vals + strlen(vals), sizeof vals - strlen(vals), "%s%g", k ? ", " : "", o->grid_values[k]);
    static const char *const names[] = {"", "seeds", "lora-scale", "cfg"};
    snprintf(extra, sizeof extra, "Grid: %s, Grid values: \"%s\"", names[o->grid], vals);
    vkp_gen_params g;
    for (int i = 0; o->grid == VKP_GEN_GRID_LORA_SCALE && i < o->n_lora; i++) o->loras[i].scale = (float)o->grid_values[0];
    fill_params(r, &g, o->grid == VKP_GEN_GRID_SEEDS ? (unsigned long long)o->grid_values[0] : o->seed,
                o->grid == VKP_GEN_GRID_CFG ? o->grid_values[0] : o->cfg, vkp_sampler_a1111_name(r->kind, r->karras));
    g.extra = extra;
    st = write_grid(out, cells, lp, o->n_grid, o->n_grid, &g, err);
  }
  return st;
}

// --prompts: image (i, k) is prompt i with seed SEED + k, exactly what `--prompt P_i --seed SEED
// --batch N` gives as its image k; the images of up to VKP_GEN_PROMPTS_PER_BATCH prompts share a
// UNet batch. Then every image in one captioned grid (when there are not too many).
static vkp_status run_prompts(gen_run *r, vkp_gen_out *out, char **prompts, int np, vkp_error *err) {
  vkp_gen_opts *o = r->o;
  int total = np * o->batch, chunk = o->batch * (np < VKP_GEN_PROMPTS_PER_BATCH ? np : VKP_GEN_PROMPTS_PER_BATCH);
  size_t img = (size_t)3 * r->W * r->H, td = (size_t)r->T * r->D;
  bool grid = total > 1 && total <= VKP_GEN_MAX_PROMPTS_GRID;
  float *lat = malloc((size_t)chunk * r->n * sizeof(float)), *conds = malloc((size_t)chunk * td * sizeof(float));
  float *decoded = malloc(img * sizeof(float));
  uint8_t *rgb = malloc((grid ? (size_t)total : (size_t)chunk) * img);
  unsigned long long *seeds = malloc((size_t)chunk * sizeof *seeds);
  vkp_image *cells = calloc((size_t)total, sizeof *cells);
  vkp_status st = VKP_OK;
  if (!lat || !conds || !decoded || !rgb || !seeds || !cells) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  const char *sampler = NULL;
  if (!st) st = vkp_pipeline_encode_prompt(r->p, o->neg, r->uncond, err);   // one negative prompt for all
  for (int first = 0; first < total && !st; first += chunk) {
    int b = total - first < chunk ? total - first : chunk;
    for (int j = 0; j < b && !st; j++) {
      int i = (first + j) / o->batch, k = (first + j) % o->batch;
      seeds[j] = o->seed + (unsigned long long)k;
      if (k == 0) st = vkp_pipeline_encode_prompt(r->p, prompts[i], conds + (size_t)j * td, err);
      else memcpy(conds + (size_t)j * td, conds + (size_t)(j - 1) * td, td * sizeof(float));
    }
    uint8_t *px = rgb + (grid ? (size_t)first * img : 0);
    if (!st) st = sample_images(r, b, seeds, o->cfg, conds, lat, px, decoded, err);
    sampler = vkp_sampler_a1111_name(r->kind, r->karras);
    for (int j = 0; j < b && !st; j++) {
      int i = (first + j) / o->batch, k = (first + j) % o->batch;
      char path[1200];
      vkp_gen_params gp;
      fill_params(r, &gp, seeds[j], o->cfg, sampler);
      gp.prompt = prompts[i];
      gp.batch_size = o->batch, gp.batch_pos = k;
      vkp_gen_out_path(out, k, o->batch, seeds[j], false, path, sizeof path);
      cells[first + j] = (vkp_image){.width = r->W, .height = r->H, .channels = 3, .data = px + (size_t)j * img};
      st = write_png(path, &cells[first + j], &gp, err);
    }
  }
  if (!st && grid) {
    const char **caps = malloc((size_t)total * sizeof *caps);
    if (!caps) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    for (int j = 0; caps && j < total; j++) caps[j] = prompts[j / o->batch];
    if (!st) {
      char extra[64];
      vkp_gen_params gp;
      fill_params(r, &gp, o->seed, o->cfg, sampler);
      gp.prompt = prompts[0];
      snprintf(extra, sizeof extra, "Grid: prompts, Prompts: %d", np);
      gp.extra = extra;
      st = write_grid(out, cells, caps, total, o->batch > 1 ? o->batch : 0, &gp, err);
    }
    free(caps);
  } else if (!st && total > VKP_GEN_MAX_PROMPTS_GRID)
    printf("no grid: %d images (a grid is written for at most %d)\n", total, VKP_GEN_MAX_PROMPTS_GRID);
  free(lat), free(conds), free(decoded), free(rgb), free(seeds), free(cells);
  return st;
}

// Grey+alpha or RGBA pixels composited onto white into a new RGB image (an icon or emoji as it looks
// on a page, as the training data loaders flatten them: vkp_data_rgba_to_rgb); *img is replaced.
static vkp_status flatten_alpha_on_white(vkp_image **img, vkp_error *err) {
  const vkp_image *in = *img;
  if (in->channels != 2 && in->channels != 4) return VKP_OK;
  vkp_image *rgb;
  VKP_TRY(vkp_image_new(in->width, in->height, 3, &rgb, err));
  for (int y = 0; y < in->height; y++)
    vkp_data_alpha_to_rgb(in->data + (size_t)y * vkp_image_stride(in), (size_t)in->width, in->channels,
                          VKP_ALPHA_WHITE, rgb->data + (size_t)y * in->width * 3);
  vkp_image_free(*img);
  *img = rgb;
  return VKP_OK;
}

static vkp_status read_init_image(gen_run *r, const char *path, vkp_error *err) {
  vkp_image *img = NULL;
  vkp_status st = vkp_png_read(path, &img, NULL, NULL, err);
  if (st) return st;
  if (!(r->init_pixels = malloc((size_t)3 * r->W * r->H * sizeof(float)))) {
    vkp_image_free(img);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  if ((st = flatten_alpha_on_white(&img, err))) {
    vkp_image_free(img);
    return st;
  }
  // [0, 255] -> [-1, 1] (diffusers' VaeImageProcessor: 2·(v/255) − 1), resized (bilinear) to the size.
  vkp_data_transform t = {.out_w = r->W, .out_h = r->H, .out_channels = 3, .mean = {0.5f, 0.5f, 0.5f},
                          .std = {0.5f, 0.5f, 0.5f}};
  st = vkp_data_transform_apply(&t, img->data, img->width, img->height, img->channels, 0, r->init_pixels, err);
  if (st) st = vkp_error_set(err, st, "%s: %s", path, err->msg);
  if (img->width != r->W || img->height != r->H)
    fprintf(stderr, "vkpeft generate: %s: %dx%d resized to %dx%d\n", path, img->width, img->height, r->W, r->H);
  vkp_image_free(img);
  return st;
}

int cmd_generate(int argc, char **argv) {
  vkp_gen_opts o;
  int rc = vkp_gen_parse_args(argc, argv, &o);
  if (rc >= 0) return rc;
  vkp_error err = {0};
  int name_karras;
  gen_run r = {.o = &o};
  if (vkp_sampler_parse_name(o.sampler_name, &r.kind, &name_karras, &err))
    return vkp_cli_fail("generate", err.status, err.msg);
  if (name_karras == 1) o.karras = 1;
  r.spacing = VKP_SAMPLER_FROM_CONFIG;
  if (o.spacing_s) {
    if (!strcmp(o.spacing_s, "leading")) r.spacing = VKP_SPACING_LEADING;
    else if (!strcmp(o.spacing_s, "trailing")) r.spacing = VKP_SPACING_TRAILING;
    else if (!strcmp(o.spacing_s, "linspace")) r.spacing = VKP_SPACING_LINSPACE;
    else return vkp_gen_bad("--timestep-spacing %s: expected leading, linspace or trailing", o.spacing_s);
  }
  if (o.pred_s && strcmp(o.pred_s, "epsilon") && strcmp(o.pred_s, "v_prediction"))
    return vkp_gen_bad("--prediction-type %s: expected epsilon or v_prediction", o.pred_s);
  if (o.init_image && (int)(o.steps * o.strength) == 0) {
    char m[256];
    snprintf(m, sizeof m, "--strength %g with %d steps: int(steps·strength) = 0 leaves no step to run", o.strength, o.steps);
    return vkp_cli_fail("generate", VKP_ERR_INVALID, m);
  }

  vkp_status st = VKP_OK;
  vkp_ctx *ctx = NULL;
  vkp_safetensors *sf = NULL;
  float *lat = NULL, *decoded = NULL;
  uint8_t *rgb = NULL;
  const vkp_st_tensor *lt = NULL, *ct = NULL;
  vkp_gen_out out = {0};
  char **prompts = NULL;
  int n_prompts = 0;
  if (o.prompts_file && (st = vkp_gen_prompts_read(o.prompts_file, &prompts, &n_prompts, &err))) goto done;
  if (o.prompt && (st = vkp_gen_prompt_loras(o.prompt, o.lora_dir, o.loras, &o.n_lora, &r.clean_prompt, &err))) goto done;
  if (o.init_image && (!o.width || !o.height)) {   // default size: the init image's
    vkp_image *img = NULL;
    if ((st = vkp_png_read(o.init_image, &img, NULL, NULL, &err))) goto done;
    if (!o.width) o.width = img->width;
    if (!o.height) o.height = img->height;
    vkp_image_free(img);
  }
  vkp_pipeline_opts po = {.width = o.width, .height = o.height, .clip_skip = o.clip_skip,
                          .text_encoder = o.tin ? VKP_PIPELINE_TEXT_NONE : VKP_PIPELINE_TEXT_REQUIRED};
  if (o.tin) {
    if ((st = vkp_safetensors_open(o.tin, &sf, &err))) goto done;
    if (!(lt = vkp_safetensors_find(sf, "sample/initial_latents")) || !(ct = vkp_safetensors_find(sf, "sample/cond"))) {
      st = vkp_error_set(&err, VKP_ERR_NOT_FOUND, "%s: no tensor '%s'", o.tin, lt ? "sample/cond" : "sample/initial_latents");
      goto done;
    }
    if (lt->ndim != 4 || lt->shape[0] != 1 || ct->ndim != 3 || ct->shape[0] != 1) {
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: %s: expected shape %s", o.tin, lt->ndim != 4 || lt->shape[0] != 1 ?
                         "sample/initial_latents" : "sample/cond", lt->ndim != 4 || lt->shape[0] != 1 ? "(1, C, h, w)" :
                         "(1, tokens, dim)");
      goto done;
    }
    po.latent_height = (int)lt->shape[2];
    po.latent_width = (int)lt->shape[3];
    po.text_tokens = (int)ct->shape[1];
  }
  if ((st = vkp_ctx_new(NULL, &ctx, &err))) goto done;
  if ((st = vkp_pipeline_load(ctx, o.model, &po, &r.p, &err))) goto done;
  vkp_pipeline_latent_shape(r.p, &r.lc, &r.lh, &r.lw);
  vkp_pipeline_text_shape(r.p, &r.T, &r.D);
  vkp_pipeline_image_size(r.p, &r.W, &r.H);
  r.n = (size_t)r.lc * r.lh * r.lw;
  r.sched = *vkp_pipeline_scheduler_config(r.p);
  if (o.pred_s) r.sched.prediction_type = strcmp(o.pred_s, "epsilon") ? VKP_PRED_V : VKP_PRED_EPSILON;
  int n_img = o.grid ? o.n_grid : o.batch;
  size_t img_bytes = (size_t)3 * r.W * r.H;
  if (!prompts) {   // --prompts sizes its own buffers by the prompts of a UNet batch
    lat = malloc((size_t)o.batch * r.n * sizeof(float));
    decoded = malloc(img_bytes * sizeof(float));
    rgb = malloc((size_t)n_img * img_bytes);
  }
  r.cond = malloc((size_t)r.T * r.D * sizeof(float));
  r.uncond = calloc((size_t)r.T * r.D, sizeof(float));
  if ((!prompts && (!lat || !decoded || !rgb)) || !r.cond || !r.uncond) {
    st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
    goto done;
  }
  // LoRAs first: a text-encoder part must be in place before the prompts are encoded.
  for (int k = 0; k < o.n_lora; k++) {
    if ((st = vkp_pipeline_add_lora(r.p, o.loras[k].path, o.loras[k].scale, o.merge, &err))) goto done;
    struct stat sb;
    if (!stat(o.loras[k].path, &sb) && S_ISREG(sb.st_mode)) {
      if ((st = vkp_gen_lora_hash(o.loras[k].path, r.lora_hash[k], &err))) goto done;
      r.lora_hash_p[k] = r.lora_hash[k];
    }
  }
  struct stat mst;
  if (!stat(o.model, &mst) && S_ISREG(mst.st_mode) && (st = vkp_gen_model_hash(o.model, r.model_hash, &err))) goto done;
  if (o.tin) {
    if (vkp_st_tensor_numel(lt) != r.n || ct->shape[2] != r.D) {
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: %s does not fit the model (%d latent channels, cross_attention_dim %d)",
                         o.tin, vkp_st_tensor_numel(lt) != r.n ? "sample/initial_latents" : "sample/cond", r.lc, r.D);
      goto done;
    }
    if ((st = vkp_safetensors_read_f32(sf, "sample/initial_latents", lat, r.n, &err))) goto done;
    if ((st = vkp_safetensors_read_f32(sf, "sample/cond", r.cond, (size_t)r.T * r.D, &err))) goto done;
    const vkp_st_tensor *ut = vkp_safetensors_find(sf, "sample/uncond");
    if (ut && vkp_st_tensor_numel(ut) != (size_t)r.T * r.D) {
      st = vkp_error_set(&err, VKP_ERR_SHAPE, "%s: sample/uncond: shape differs from sample/cond", o.tin);
      goto done;
    }
    if (ut && (st = vkp_safetensors_read_f32(sf, "sample/uncond", r.uncond, (size_t)r.T * r.D, &err))) goto done;
  } else if (!prompts && (st = encode_prompts(&r, &err))) goto done;
  if (o.init_image && (st = read_init_image(&r, o.init_image, &err))) goto done;
  if (o.output && (st = vkp_gen_out_open(o.output, &out, &err))) goto done;
  if (o.grid) {
    st = run_grid(&r, &out, lat, rgb, decoded, &err);
    goto done;
  }
  if (prompts) {
    st = run_prompts(&r, &out, prompts, n_prompts, &err);
    goto done;
  }
  unsigned long long seeds[VKP_GEN_MAX_BATCH];
  for (int k = 0; k < o.batch; k++) seeds[k] = o.seed + (unsigned long long)k;
  if ((st = sample_images(&r, o.batch, seeds, o.cfg, NULL, lat, rgb, decoded, &err))) goto done;
  if (o.tout && (st = write_tensors(&r, lat, decoded, &err))) goto done;
  for (int k = 0; o.output && k < o.batch && !st; k++) {
    char path[1200];
    vkp_gen_params g;
    fill_params(&r, &g, seeds[k], o.cfg, vkp_sampler_a1111_name(r.kind, r.karras));
    g.batch_size = o.batch, g.batch_pos = k;
    vkp_gen_out_path(&out, k, o.batch, seeds[k], false, path, sizeof path);
    vkp_image img = {.width = r.W, .height = r.H, .channels = 3, .data = rgb + k * img_bytes};
    st = write_png(path, &img, &g, &err);
  }
done:
  free(lat), free(decoded), free(rgb), free(r.cond), free(r.uncond), free(r.init_pixels), free(r.clean_prompt);
  vkp_gen_prompts_free(prompts, n_prompts);
  vkp_pipeline_free(r.p);
  vkp_ctx_free(ctx);
  vkp_safetensors_free(sf);
  return st ? vkp_cli_fail("generate", st, err.msg) : VKP_EXIT_OK;
}
