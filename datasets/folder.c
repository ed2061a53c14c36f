// folder.c — image folders: root/<class>/.../<image>, class ids in sorted folder-name order
// (the layout of torchvision's ImageFolder and Hugging Face's imagefolder).
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data_internal.h"
#include "vkp_vec.h"
#include "vkp_data.h"

#define MAX_DEPTH 16

typedef vkp_data_strings strvec;

static int strvec_push(strvec *s, char *str) {  // takes str; frees it on failure
  if (!str) return -1;
  if (vkp_vec_push(s, str)) {
    free(str);
    return -1;
  }
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char *vkp_data_path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t o = a;
  if (a && dir[a - 1] != '/') p[o++] = '/';
  memcpy(p + o, name, b + 1);
  return p;
}

int vkp_data_is_image_name(const char *name) {
  static const char *const ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif",
                                    ".tga", ".ppm", ".pgm", ".pnm"};
  const char *dot = strrchr(name, '.');
  if (!dot) return 0;
  for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
    if (strcasecmp(dot, ext[i]) == 0) return 1;
  return 0;
}

vkp_status vkp_data_list_dir(const char *dir, strvec *names, vkp_error *err) {
  DIR *d = opendir(dir);
  if (!d) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (strvec_push(names, vkp_data_strdup(e->d_name))) {
      closedir(d);
      return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
    }
  }
  closedir(d);
  if (names->n > 1) qsort(names->v, (size_t)names->n, sizeof *names->v, cmp_str);   // an empty folder: v is NULL
  return VKP_OK;
}

// Appends the image files under dir (recursively, sorted) to files.
static vkp_status collect(const char *dir, int depth, strvec *files, vkp_error *err) {
  strvec names = {0};
  vkp_status st = vkp_data_list_dir(dir, &names, err);
  for (int32_t i = 0; st == VKP_OK && i < names.n; i++) {
    char *p = vkp_data_path_join(dir, names.v[i]);
    struct stat sb;
    if (!p) {
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
    } else if (stat(p, &sb) != 0) {
      free(p);  // dangling link or vanished: ignore like any non-image entry
    } else if (S_ISDIR(sb.st_mode)) {
      if (depth >= MAX_DEPTH)
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: folders nested deeper than %d levels", p,
                           MAX_DEPTH);
      else st = collect(p, depth + 1, files, err);
      free(p);
    } else if (S_ISREG(sb.st_mode) && vkp_data_is_image_name(names.v[i])) {
      if (strvec_push(files, p)) st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
    } else {
      free(p);
    }
  }
  vkp_data_free_strings(names.v, (size_t)names.n);
  return st;
}

vkp_status vkp_data_load_folder(const char *root, const vkp_data_load_opts *opts,
                                vkp_dataset **out, vkp_error *err) {
  static const vkp_data_load_opts defaults = {0};
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_load_folder: out is NULL");
  *out = NULL;
  if (!root) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_load_folder: root is NULL");
  if (!opts) opts = &defaults;
  strvec entries = {0}, classes = {0}, files = {0};
  VKP_VEC(int32_t) labels = {0};   // (files.n)
  char **names = NULL;
  int n_classes = 0;
  vkp_status st = vkp_data_list_dir(root, &entries, err);
  if (st != VKP_OK) goto done;
  for (int32_t i = 0; i < entries.n; i++) {
    char *p = vkp_data_path_join(root, entries.v[i]);
    struct stat sb;
    if (!p) {
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", root);
      goto done;
    }
    if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
      free(p);
      if (strvec_push(&classes, vkp_data_strdup(entries.v[i]))) {
        st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", root);
        goto done;
      }
    } else {
      free(p);
    }
  }
  if (classes.n == 0) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no class sub-folders (want one folder per class)",
                       root);
    goto done;
  }
  if (opts->class_names) {
    n_classes = opts->n_class_names;
    if (n_classes < 1) {
      st = vkp_error_set(err, VKP_ERR_INVALID, "%s: empty class list", root);
      goto done;
    }
    names = calloc((size_t)n_classes, sizeof *names);
    if (!names) goto oom;
    for (int c = 0; c < n_classes; c++)
      if (!(names[c] = vkp_data_strdup(opts->class_names[c] ? opts->class_names[c] : ""))) goto oom;
  } else {
    n_classes = (int)classes.n;
    names = classes.v;  // taken over
    classes.v = NULL;
    classes.n = classes.cap = 0;
    classes.v = calloc((size_t)n_classes, sizeof *classes.v);
    if (!classes.v) goto oom;
    for (int c = 0; c < n_classes; c++)
      if (!(classes.v[c] = vkp_data_strdup(names[c]))) goto oom;
    classes.n = classes.cap = n_classes;
  }
  for (int32_t k = 0; k < classes.n; k++) {
    int id = -1;
    for (int c = 0; c < n_classes; c++)
      if (strcmp(names[c], classes.v[k]) == 0) id = c;
    char *dir = vkp_data_path_join(root, classes.v[k]);
    if (!dir) goto oom;
    if (id < 0) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: class folder '%s' is not in the given class list",
                         dir, classes.v[k]);
      free(dir);
      goto done;
    }
    int32_t before = files.n;
    st = collect(dir, 1, &files, err);
    if (st == VKP_OK && files.n == before) {
      if (opts->skip_bad)
        vkp_data_warn(opts, "%s: class folder has no images; class '%s' (id %d) stays empty", dir,
                       classes.v[k], id);
      else
        st = vkp_error_set(err, VKP_ERR_FORMAT,
                           "%s: class folder has no images (.png .jpg .jpeg .bmp .gif .tga .ppm "
                           ".pgm .pnm)",
                           dir);
    }
    free(dir);
    if (st != VKP_OK) goto done;
    if (vkp_vec_reserve(&labels, files.n)) goto oom;
    while (labels.n < files.n) labels.v[labels.n++] = id;
  }
  st = vkp_data_decode_files(root, files.v, labels.v, (size_t)files.n, names, n_classes, opts, out, err);
  files.v = NULL;  // taken over (freed) by decode_files_
  files.n = 0;
  names = NULL;
  goto done;
oom:
  st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", root);
done:
  vkp_data_free_strings(entries.v, (size_t)entries.n);
  vkp_data_free_strings(classes.v, (size_t)classes.n);
  vkp_data_free_strings(files.v, (size_t)files.n);
  vkp_data_free_strings(names, (size_t)n_classes);
  free(labels.v);
  return st;
}
