// classify_setup.c — config defaults, data sources, model construction and adapters for the
// image-classification workbench.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_classify.h"
#include "vkp_config.h"
#include "vkp_peft.h"
#include "vkp_trainer.h"

const char vkp_classify_defaults[] =
    "{"
    "\"output_dir\": \"runs/classify\","
    "\"model\": {\"pretrained\": null, \"image_size\": 0, \"base_dtype\": \"f32\","
    "  \"init\": {\"image_size\": 28, \"patch_size\": 4, \"num_channels\": 1, \"hidden_size\": 64,"
    "           \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"intermediate_size\": 128,"
    "           \"layer_norm_eps\": 1e-6, \"hidden_act\": \"gelu\", \"qkv_bias\": true}},"
    "\"data\": {\"train\": \"fashion-mnist\", \"val\": null, \"test\": \"fashion-mnist:test\", \"val_fraction\": 0.05,"
    "  \"limit_train\": 0, \"limit_test\": 0, \"normalize\": true, \"workers\": 2,"
    "  \"augment\": {\"random_crop_pad\": 0, \"hflip\": 0.0, \"random_resized_crop\": false}},"
    "\"peft\": [{\"method\": \"lora\", \"r\": 8, \"lora_alpha\": 16,"
    "            \"target_modules\": [\"query\", \"value\"], \"modules_to_save\": [\"classifier\"]}],"
    "\"train\": {\"optimizer\": \"adamw\", \"gradient_checkpointing\": false, \"lr\": 0.001, \"weight_decay\": 0.01, \"beta1\": 0.9, \"beta2\": 0.999,"
    "  \"momentum\": 0.9, \"max_grad_norm\": 1.0, \"schedule\": \"cosine\", \"warmup_steps\": 0, \"warmup_ratio\": 0.05,"
    "  \"batch_size\": 64, \"grad_accum\": 1, \"epochs\": 1, \"max_steps\": 0, \"eval_every\": 0, \"eval_batch\": 256,"
    "  \"val_limit\": 2000, \"log_every\": 10, \"checkpoint_every\": 0, \"keep_last\": 2, \"seed\": 0,"
    "  \"stop_after\": 0}"
    "}";

vkp_status vkp_classify_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err) {
  VKP_TRY(vkp_config_resolve(vkp_classify_defaults, path, sets, nsets, out, err));
  const cJSON *peft = vkp_config_get(*out, "peft");
  if (!cJSON_IsArray(peft)) {
    cJSON_Delete(*out);
    *out = NULL;
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'peft' must be a list of adapters", path ? path : "config");
  }
  return VKP_OK;
}

// ---- data sources ---------------------------------------------------------------------------

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

vkp_status vkp_classify_load_source(const char *spec, int channels, int size, const char *const *class_names,
                                    int n_class_names, vkp_dataset **out, vkp_error *err) {
  struct stat sb;
  vkp_data_load_opts o = {.channels = channels, .width = size, .height = size, .class_names = class_names,
                          .n_class_names = n_class_names};
  if (stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode)) return vkp_data_load_folder(spec, &o, out, err);
  if (ends_with(spec, ".csv") || ends_with(spec, ".jsonl") || ends_with(spec, ".txt"))
    return vkp_data_load_list(spec, &o, out, err);
  char name[256];
  snprintf(name, sizeof name, "%s", spec);
  char *colon = strchr(name, ':');
  const char *split = "train";
  if (colon) *colon = '\0', split = colon + 1;
  return vkp_data_load_named(name, split, out, err);
}

static vkp_status limit(vkp_dataset **ds, long n, uint64_t seed, vkp_error *err) {
  if (n <= 0 || (size_t)n >= (*ds)->count) return VKP_OK;
  // A stratified, seeded subset: the first n of a split.
  size_t *a = NULL, *b = NULL, na = 0, nb = 0;
  VKP_TRY(vkp_dataset_split(*ds, (double)n / (double)(*ds)->count, seed, true, &a, &na, &b, &nb, err));
  vkp_dataset *sub = NULL;
  vkp_status st = vkp_dataset_subset(*ds, b, nb, &sub, err);
  free(a), free(b);
  if (st) return st;
  vkp_dataset_free(*ds);
  *ds = sub;
  return VKP_OK;
}

vkp_status vkp_classify_data_load(const cJSON *cfg, int image_size, int channels, vkp_classify_data *d, vkp_error *err) {
  memset(d, 0, sizeof *d);
  const char *train = vkp_config_string(cfg, "data.train"), *val = vkp_config_string(cfg, "data.val"),
             *test = vkp_config_string(cfg, "data.test");
  long seed, limit_train, limit_test;
  double val_fraction;
  vkp_status st = vkp_config_int(cfg, "train.seed", 0, 1l << 40, &seed, err);
  if (!st) st = vkp_config_int(cfg, "data.limit_train", 0, 1l << 40, &limit_train, err);
  if (!st) st = vkp_config_int(cfg, "data.limit_test", 0, 1l << 40, &limit_test, err);
  if (!st) st = vkp_config_real(cfg, "data.val_fraction", 0, 0.9, &val_fraction, err);
  if (!st && !train) st = vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.train' is required");
  // Images are decoded at the model's resolution and channel count (data sets of fixed-size
  // images, e.g. IDX, keep theirs: the transform resizes).
  if (!st) st = vkp_classify_load_source(train, channels, image_size, NULL, 0, &d->train, err);
  if (!st) st = limit(&d->train, limit_train, (uint64_t)seed, err);
  const char *const *names = d->train ? (const char *const *)d->train->class_names : NULL;
  int n_names = d->train ? d->train->n_classes : 0;
  if (!st && val) st = vkp_classify_load_source(val, channels, image_size, names, n_names, &d->val, err);
  if (!st && test) st = vkp_classify_load_source(test, channels, image_size, names, n_names, &d->test, err);
  if (!st && d->test) st = limit(&d->test, limit_test, (uint64_t)seed + 1, err);
  if (!st && d->test && d->test->n_classes != d->train->n_classes)
    st = vkp_error_set(err, VKP_ERR_SHAPE, "data: the test set '%s' has %d classes, the training set %d", test,
                       d->test->n_classes, d->train->n_classes);
  if (!st && !d->val && val_fraction > 0) {
    d->val_in_train = true;
    st = vkp_dataset_split(d->train, val_fraction, (uint64_t)seed, true, &d->train_idx, &d->n_train, &d->val_idx, &d->n_val, err);
  } else if (!st) {
    d->n_train = d->train->count;
    d->train_idx = malloc(d->n_train * sizeof *d->train_idx);
    for (size_t i = 0; d->train_idx && i < d->n_train; i++) d->train_idx[i] = i;
    if (d->val) {
      d->n_val = d->val->count;
      d->val_idx = malloc(d->n_val * sizeof *d->val_idx);
      for (size_t i = 0; d->val_idx && i < d->n_val; i++) d->val_idx[i] = i;
    }
  }
  if (!st && d->n_train == 0) st = vkp_error_set(err, VKP_ERR_INVALID, "data: the training set '%s' is empty", train);
  // Transforms: normalisation by the training set's statistics.
  vkp_data_transform t = {.out_w = image_size, .out_h = image_size, .out_channels = channels, .crop = VKP_CROP_NONE};
  if (!st && vkp_config_bool(cfg, "data.normalize")) {
    float mean[4] = {0}, sd[4] = {0};
    st = vkp_dataset_mean_std(d->train, d->train_idx, d->n_train, mean, sd, err);
    int src_c = d->train ? d->train->channels : 1;
    for (int c = 0; c < channels; c++) {
      if (src_c == channels) t.mean[c] = mean[c], t.std[c] = sd[c];
      else {   // channel conversion: use the average statistics
        double m = 0, s = 0;
        for (int k = 0; k < src_c; k++) m += mean[k] / src_c, s += sd[k] / src_c;
        t.mean[c] = (float)m, t.std[c] = (float)s;
      }
    }
  }
  d->eval_tf = t;
  d->train_tf = t;
  long pad = (long)vkp_config_number(cfg, "data.augment.random_crop_pad");
  if (pad > 0) d->train_tf.crop = VKP_CROP_RANDOM_PAD, d->train_tf.pad = (int)pad;
  if (vkp_config_bool(cfg, "data.augment.random_resized_crop")) d->train_tf.crop = VKP_CROP_RANDOM_RESIZED;
  d->train_tf.hflip = (float)vkp_config_number(cfg, "data.augment.hflip");
  if (!st && d->train) st = vkp_data_transform_check(&d->train_tf, d->train->channels, err);
  if (st) vkp_classify_data_free(d);
  return st;
}

void vkp_classify_data_free(vkp_classify_data *d) {
  vkp_dataset_free(d->train);
  vkp_dataset_free(d->val);
  vkp_dataset_free(d->test);
  free(d->train_idx);
  free(d->val_idx);
  memset(d, 0, sizeof *d);
}

// ---- model ----------------------------------------------------------------------------------

static vkp_status config_from_init(const cJSON *init, vkp_vit_config *c, vkp_error *err) {
  vkp_vit_config_default(c);
  struct { const char *key; int *dst; int lo, hi; } ints[] = {
      {"image_size", &c->image_size, 1, 4096}, {"patch_size", &c->patch_size, 1, 512},
      {"num_channels", &c->num_channels, 1, 4}, {"hidden_size", &c->hidden_size, 1, 8192},
      {"num_hidden_layers", &c->num_hidden_layers, 0, VKP_VIT_MAX_LAYERS},
      {"num_attention_heads", &c->num_attention_heads, 1, 256}, {"intermediate_size", &c->intermediate_size, 1, 32768}};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
    char path[64];
    long v;
    snprintf(path, sizeof path, "model.init.%s", ints[i].key);
    VKP_TRY(vkp_config_int(init, ints[i].key, ints[i].lo, ints[i].hi, &v, err));
    *ints[i].dst = (int)v;
  }
  c->layer_norm_eps = (float)vkp_config_number(init, "layer_norm_eps");
  c->qkv_bias = vkp_config_bool(init, "qkv_bias");
  const char *act = vkp_config_string(init, "hidden_act");
  c->gelu_tanh = act && strcmp(act, "gelu");
  if (c->hidden_size % c->num_attention_heads)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: model.init.hidden_size must be divisible by num_attention_heads");
  if (c->image_size % c->patch_size)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: model.init.image_size must be divisible by patch_size");
  return VKP_OK;
}

vkp_status vkp_classify_model(vkp_ctx *ctx, const cJSON *cfg, int n_classes, const char *const *class_names,
                              vkp_vit **out, vkp_error *err) {
  *out = NULL;
  const char *pre = vkp_config_string(cfg, "model.pretrained");
  long size;
  VKP_TRY(vkp_config_int(cfg, "model.image_size", 0, 4096, &size, err));
  long seed = (long)vkp_config_number(cfg, "train.seed");
  vkp_vit *v = NULL;
  if (pre) {
    VKP_TRY(vkp_vit_load_labels(ctx, pre, (int)size, n_classes, &v, err));
  } else {
    vkp_vit_config c;
    VKP_TRY(config_from_init(vkp_config_get(cfg, "model.init"), &c, err));
    // model.image_size is the resolution the data is decoded at: a new model is built for it
    // (the data and the model must agree, or batches would not fit the pixel input).
    if (size > 0 && size != c.image_size) {
      if (size % c.patch_size)
        return vkp_error_set(err, VKP_ERR_INVALID, "config: model.image_size %ld must be divisible by model.init.patch_size %d",
                             size, c.patch_size);
      c.image_size = (int)size;
    }
    c.num_labels = n_classes;
    vkp_status st = vkp_vit_new(ctx, &c, (uint64_t)seed, &v);
    if (st) return vkp_error_set(err, st, "config: model.init: %s", vkp_ctx_error(ctx));
  }
  for (int i = 0; i < n_classes && i < 256 && class_names; i++)
    snprintf(v->cfg.labels[i], sizeof v->cfg.labels[i], "%s", class_names[i]);
  *out = v;
  return VKP_OK;
}

vkp_status vkp_classify_attach(vkp_vit *v, const cJSON *peft_list, uint64_t seed, vkp_error *err) {
  return vkp_trainer_attach(v->model, peft_list, seed, NULL, NULL, err);
}
