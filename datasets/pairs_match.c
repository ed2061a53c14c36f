// pairs_match.c — the images two pair sets share by key, and taking names across (the same emoji
// drawn in two styles).
#include <stdlib.h>
#include <string.h>

#include "pairs_internal.h"

typedef struct keyed {
  const char *key;
  size_t index;
} keyed;

static int cmp_keyed(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : (x->index > y->index) - (x->index < y->index);
}

static int cmp_key_only(const void *a, const void *b) {
  return strcmp(((const keyed *)a)->key, ((const keyed *)b)->key);
}

// For every image of a, the image of b with its key (the first one), or SIZE_MAX: into map.
static vkp_status match_map(const vkp_pairs *a, const vkp_pairs *b, size_t *map, vkp_error *err) {
  size_t nb = vkp_pairs_count(b);
  keyed *sorted = malloc((nb ? nb : 1) * sizeof *sorted);
  if (!sorted) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", b->images->name);
  for (size_t j = 0; j < nb; j++) sorted[j] = (keyed){b->keys[j], j};
  qsort(sorted, nb, sizeof *sorted, cmp_keyed);
  // Keep the first image of each key, so bsearch finds that one.
  size_t u = 0;
  for (size_t j = 0; j < nb; j++)
    if (u == 0 || strcmp(sorted[u - 1].key, sorted[j].key) != 0) sorted[u++] = sorted[j];
  for (size_t i = 0; i < vkp_pairs_count(a); i++) {
    keyed q = {a->keys[i], 0};
    const keyed *hit = bsearch(&q, sorted, u, sizeof *sorted, cmp_key_only);
    map[i] = hit ? hit->index : SIZE_MAX;
  }
  free(sorted);
  return VKP_OK;
}

vkp_status vkp_pairs_match(const vkp_pairs *a, const vkp_pairs *b, size_t **ia, size_t **ib,
                           size_t *n, vkp_error *err) {
  if (!ia || !ib || !n) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_match: NULL output");
  *ia = *ib = NULL;
  *n = 0;
  if (!a || !b) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_match: NULL pairs");
  size_t na = vkp_pairs_count(a);
  size_t *map = malloc((na ? na : 1) * sizeof *map);
  if (!map) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", a->images->name);
  vkp_status st = match_map(a, b, map, err);
  size_t m = 0;
  for (size_t i = 0; st == VKP_OK && i < na; i++) m += map[i] != SIZE_MAX;
  if (st == VKP_OK && m) {
    *ia = malloc(m * sizeof **ia);
    *ib = malloc(m * sizeof **ib);
    if (!*ia || !*ib) {
      free(*ia);
      free(*ib);
      *ia = *ib = NULL;
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", a->images->name);
    } else {
      for (size_t i = 0, k = 0; i < na; i++)
        if (map[i] != SIZE_MAX) {
          (*ia)[k] = i;
          (*ib)[k++] = map[i];
        }
      *n = m;
    }
  }
  free(map);
  return st;
}

vkp_status vkp_pairs_adopt_names(vkp_pairs *dst, const vkp_pairs *src, vkp_error *err) {
  if (!dst || !src) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_adopt_names: NULL pairs");
  size_t n = vkp_pairs_count(dst), n_caps = 0;
  const char *what = dst->images->name;
  size_t *map = malloc((n ? n : 1) * sizeof *map);
  const char **names = calloc(n ? n : 1, sizeof *names);
  size_t *start = calloc(n + 1, sizeof *start);
  int32_t *labels = malloc((n ? n : 1) * sizeof *labels);
  char **caps = NULL, **class_names = NULL;
  int n_classes = 0;
  size_t made = 0;
  vkp_status st = VKP_OK;
  if (!map || !names || !start || !labels) goto oom;
  if ((st = match_map(dst, src, map, err)) != VKP_OK) goto done;
  for (size_t i = 0; i < n; i++) {
    n_caps += map[i] != SIZE_MAX ? vkp_pairs_n_captions(src, map[i]) : vkp_pairs_n_captions(dst, i);
    names[i] = map[i] != SIZE_MAX ? vkp_pairs_name(src, map[i]) : vkp_pairs_name(dst, i);
  }
  if (!(caps = calloc(n_caps ? n_caps : 1, sizeof *caps))) goto oom;
  for (size_t i = 0; i < n; i++) {
    const vkp_pairs *from = map[i] != SIZE_MAX ? src : dst;
    size_t j = map[i] != SIZE_MAX ? map[i] : i;
    start[i] = made;
    for (size_t k = 0; k < vkp_pairs_n_captions(from, j); k++)
      if (!(caps[made++] = vkp_data_strdup(vkp_pairs_caption(from, j, k)))) goto oom;
  }
  start[n] = made;
  if (vkp_pairs_name_ids((char *const *)names, n, &class_names, &n_classes, labels) != VKP_OK)
    goto oom;
  // Commit.
  vkp_data_free_strings(dst->captions, dst->caption_start[n]);
  free(dst->caption_start);
  dst->captions = caps;
  dst->caption_start = start;
  caps = NULL;
  start = NULL;
  vkp_data_free_strings(dst->images->class_names, (size_t)dst->images->n_classes);
  dst->images->class_names = class_names;
  dst->images->n_classes = n_classes;
  memcpy(dst->images->labels, labels, n * sizeof *labels);
  goto done;
oom:
  st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
done:
  vkp_data_free_strings(caps, made);
  free(start);
  free(map);
  free(names);
  free(labels);
  return st;
}
