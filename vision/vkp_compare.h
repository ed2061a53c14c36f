// vkp_compare.h — the PEFT method comparison: every method on the same base, data and budget.
#ifndef VKP_COMPARE_H
#define VKP_COMPARE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkp_status.h"

typedef struct vkp_compare_row {
  char method[32];
  double test_acc, best_val_acc, images_per_s, seconds;
  int64_t trainable, total;
  uint64_t peak_bytes, arena_bytes;
} vkp_compare_row;

// The methods: every preset of the PEFT method table (vkp_peft_method.h), then a hybrid.
int vkp_compare_method_count(void);
const char *vkp_compare_method_name(int i);
// True for the methods `vkpeft bench peft` runs by default (all but the table's extra presets).
bool vkp_compare_method_default(int i);
// The `peft` list (a new JSON array, caller frees) method i trains on a ViT; the head trains in
// every method but full. NULL with err set on failure.
cJSON *vkp_compare_method_peft(int i, vkp_error *err);
// Index of a method name (the first len characters of name), or -1.
int vkp_compare_method_find(const char *name, size_t len);
// Trains `base_cfg` (a resolved classification config; its peft list is replaced) once per method
// (all, or the n_only names given) into <output_dir>/<method>/. rows needs room for every method.
vkp_status vkp_compare_run(const cJSON *base_cfg, const char *const *only, int n_only, bool quiet, vkp_compare_row *rows,
                           int *n_rows, vkp_error *err);
// Writes compare.md, compare.json and compare.png (accuracy vs trainable parameters) to out_dir.
vkp_status vkp_compare_write(const char *out_dir, const char *title, const vkp_compare_row *rows, int n, vkp_error *err);

#endif
