// clip_eval_data.c — the data specs of `vkpeft eval` / `vkpeft embed` on CLIP models: image–text
// pair sets (named, caption folders, lists) and labelled image sets, with a deterministic split.
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "vkp_clip_eval.h"

static bool known_in(const char *(*list)(int), const char *name) {
  for (int i = 0; list(i); i++)
    if (!strcmp(list(i), name)) return true;
  return false;
}

static bool ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcasecmp(s + a - b, suf);
}

static bool is_image_name(const char *n) {
  static const char *const ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".pnm"};
  for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
    if (ends_with(n, ext[i])) return true;
  return false;
}

// A folder is a caption folder (kohya) when it holds images itself or `N_name` sub-folders;
// otherwise it is an image-classification folder (one sub-folder per class).
static bool is_caption_folder(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return false;
  bool yes = false;
  struct dirent *e;
  while (!yes && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (is_image_name(e->d_name)) {
      yes = true;
      break;
    }
    const char *u = strchr(e->d_name, '_');
    if (u && u > e->d_name && strspn(e->d_name, "0123456789") == (size_t)(u - e->d_name)) {
      char p[4400];
      struct stat sb;
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      yes = !stat(p, &sb) && S_ISDIR(sb.st_mode);
    }
  }
  closedir(d);
  return yes;
}

// A list is a pair list when its first line names a caption: a CSV header with a `caption` or
// `text` column, or a JSON object with a "caption" or "text" key.
static bool is_caption_list(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return true;   // let the pair reader report it
  char line[4096] = "";
  while (fgets(line, sizeof line, f) && strspn(line, " \t\r\n") == strlen(line)) {
  }
  fclose(f);
  for (char *c = line; *c; c++) *c = (char)tolower((unsigned char)*c);
  if (strchr(line, '{')) return strstr(line, "\"caption\"") || strstr(line, "\"text\"");
  for (char *tok = strtok(line, ",\r\n"); tok; tok = strtok(NULL, ",\r\n")) {
    while (*tok == ' ' || *tok == '"') tok++;
    if (!strncmp(tok, "caption", 7) || !strncmp(tok, "text", 4)) return true;
  }
  return false;
}

void vkp_clip_eval_data_free(vkp_clip_eval_data *d) {
  if (!d) return;
  vkp_pairs_free(d->pairs);
  vkp_dataset_free(d->labelled);
  free(d->idx), free(d->other_idx);
  memset(d, 0, sizeof *d);
}

// Parses "val|train|all[:FRACTION[:SEED]]".
static bool parse_split(const char *s, int *side, double *frac, uint64_t *seed) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", s);
  char *a = strtok(buf, ":"), *b = strtok(NULL, ":"), *c = strtok(NULL, ":");
  if (!a || strtok(NULL, ":")) return false;
  if (!strcmp(a, "val")) *side = 1;
  else if (!strcmp(a, "train")) *side = 0;
  else if (!strcmp(a, "all")) *side = -1;
  else return false;
  char *end;
  if (b) {
    *frac = strtod(b, &end);
    if (*end || *frac <= 0 || *frac >= 1) return false;
  }
  if (c) {
    *seed = strtoull(c, &end, 10);
    if (*end) return false;
  }
  return true;
}

vkp_status vkp_clip_eval_data_load(const char *spec, vkp_clip_eval_data *d, vkp_error *err) {
  memset(d, 0, sizeof *d);
  if (!spec || !*spec) return vkp_error_set(err, VKP_ERR_INVALID, "--data: no data spec");
  snprintf(d->spec, sizeof d->spec, "%s", spec);
  // The source: the whole spec when it is a path, else the part before the first ':' that names a
  // path or a known set.
  char src[4096];
  const char *split = NULL;
  struct stat sb;
  snprintf(src, sizeof src, "%s", spec);
  if (stat(spec, &sb)) {
    for (char *c = strchr(src, ':'); c; c = strchr(c + 1, ':')) {
      *c = '\0';
      if (!stat(src, &sb) || known_in(vkp_pairs_known_name, src) || known_in(vkp_data_known_name, src)) {
        split = spec + (c - src) + 1;
        break;
      }
      *c = ':';
    }
  }
  int side = -1;
  double frac = 0.1;
  uint64_t seed = 0;
  bool named_labelled = known_in(vkp_data_known_name, src);
  if (split && !named_labelled && !parse_split(split, &side, &frac, &seed))
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "--data %s: unknown split '%s' (val, train or all, optionally :FRACTION[:SEED], e.g. val:0.1:0)", spec, split);
  vkp_status st;
  vkp_pairs_opts po = {.channels = 3};
  if (known_in(vkp_pairs_known_name, src)) st = vkp_pairs_load_named(src, &po, &d->pairs, err);
  else if (named_labelled) {
    st = vkp_data_load_named(src, split ? split : "test", &d->labelled, err);
    // The probe's training side of a named set: its train split (when this is not it).
    if (!st && strcmp(split ? split : "test", "train")) snprintf(d->other_named, sizeof d->other_named, "%s:train", src);
  } else if (!stat(src, &sb) && S_ISDIR(sb.st_mode)) {
    if (is_caption_folder(src)) st = vkp_pairs_load_folder(src, NULL, &po, &d->pairs, err);
    else st = vkp_data_load_folder(src, &(vkp_data_load_opts){0}, &d->labelled, err);
  } else if (!stat(src, &sb)) {
    if (is_caption_list(src)) st = vkp_pairs_load_list(src, &po, &d->pairs, err);
    else st = vkp_data_load_list(src, &(vkp_data_load_opts){0}, &d->labelled, err);
  } else
    return vkp_error_set(err, VKP_ERR_NOT_FOUND,
                         "--data %s: no such file or folder, and not a known set (emoji-noto, emoji-emojione, icons-*, digits, "
                         "fashion-mnist, mnist)", spec);
  if (st && named_labelled && !split) {   // sets without a test split (digits): "train"
    vkp_error_clear(err);
    st = vkp_data_load_named(src, "train", &d->labelled, err);
    d->other_named[0] = '\0';
  }
  if (st) return st;
  if (named_labelled || side < 0) return VKP_OK;
  // A split: pairs by key (vkp_pairs_split: the same key is held out of every set), labelled
  // images stratified by class (vkp_dataset_split).
  size_t *tr = NULL, *va = NULL, ntr = 0, nva = 0;
  st = d->pairs ? vkp_pairs_split(d->pairs, frac, seed, &tr, &ntr, &va, &nva, err)
                : vkp_dataset_split(d->labelled, frac, seed, true, &tr, &ntr, &va, &nva, err);
  if (st) {
    vkp_clip_eval_data_free(d);
    return st;
  }
  d->split = true;
  d->idx = side ? va : tr, d->n = side ? nva : ntr;
  d->other_idx = side ? tr : va, d->n_other = side ? ntr : nva;
  if (!d->n) {
    vkp_clip_eval_data_free(d);
    return vkp_error_set(err, VKP_ERR_INVALID, "--data %s: the split leaves no images", spec);
  }
  return VKP_OK;
}
