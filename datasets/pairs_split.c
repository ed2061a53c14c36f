// pairs_split.c — train / held-out split of a pair set by key: a key's side is a function of
// (seed, key) alone, so every image of a key is on one side and sets sharing keys split alike.
#include <stdlib.h>
#include <string.h>

#include "pairs_internal.h"

// u(seed, key) in [0, 1): 53 bits of a hash of the seed and the key's bytes.
static double key_uniform(uint64_t seed, const char *key) {
  uint64_t h = vkp_rng_key(vkp_rng_key_str(seed, key), VKP_DATA_STREAM_SPLIT, 0);
  return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

// Moves every image whose key equals image `pick`'s to side `to`.
static void move_key(const vkp_pairs *p, size_t pick, unsigned char *is_val, unsigned char to) {
  for (size_t i = 0; i < vkp_pairs_count(p); i++)
    if (strcmp(p->keys[i], p->keys[pick]) == 0) is_val[i] = to;
}

vkp_status vkp_pairs_split(const vkp_pairs *p, double val_fraction, uint64_t seed, size_t **train,
                           size_t *n_train, size_t **val, size_t *n_val, vkp_error *err) {
  if (!train || !n_train || !val || !n_val)
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_split: NULL output");
  *train = *val = NULL;
  *n_train = *n_val = 0;
  if (!p) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_split: NULL pairs");
  if (!(val_fraction >= 0.0 && val_fraction <= 1.0))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: held-out fraction %g outside [0, 1]",
                         p->images->name, val_fraction);
  size_t n = vkp_pairs_count(p);
  double *u = malloc((n ? n : 1) * sizeof *u);
  unsigned char *is_val = calloc(n ? n : 1, 1);
  if (!u || !is_val) {
    free(u);
    free(is_val);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", p->images->name);
  }
  size_t lo = 0, hi = 0, nv = 0;
  int two_keys = 0;
  for (size_t i = 0; i < n; i++) {
    u[i] = key_uniform(seed, p->keys[i]);
    is_val[i] = u[i] < val_fraction;
    nv += is_val[i];
    if (u[i] < u[lo]) lo = i;
    if (u[i] > u[hi]) hi = i;
    two_keys |= strcmp(p->keys[i], p->keys[0]) != 0;
  }
  if (two_keys && val_fraction > 0.0 && val_fraction < 1.0) {
    if (nv == 0) move_key(p, lo, is_val, 1);
    else if (nv == n) move_key(p, hi, is_val, 0);
  }
  free(u);
  nv = 0;
  for (size_t i = 0; i < n; i++) nv += is_val[i];
  size_t nt = n - nv;
  size_t *t = nt ? malloc(nt * sizeof *t) : NULL, *v = nv ? malloc(nv * sizeof *v) : NULL;
  if ((nt && !t) || (nv && !v)) {
    free(t);
    free(v);
    free(is_val);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", p->images->name);
  }
  for (size_t i = 0, a = 0, b = 0; i < n; i++) {
    if (is_val[i]) v[b++] = i;
    else t[a++] = i;
  }
  free(is_val);
  *train = t;
  *n_train = nt;
  *val = v;
  *n_val = nv;
  return VKP_OK;
}
