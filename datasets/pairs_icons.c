// pairs_icons.c — an icon theme's size folder as image–text pairs: each PNG of the folder's size
// is one image, named by its file name ("folder-music.png" -> "folder music"); symbolic links to
// it are aliases whose names become further captions.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <stb/stb_image.h>

#include "pairs_internal.h"

#define MAX_DEPTH 16

typedef struct icon_file {
  char *path;  // as found under the folder
  char *real;  // realpath
  int is_link;
} icon_file;

typedef VKP_VEC(icon_file) icon_files;

static void icon_files_free(icon_files *f) {
  for (int32_t i = 0; i < f->n; i++) {
    free(f->v[i].path);
    free(f->v[i].real);
  }
  free(f->v);
}

// The PNGs (files or links to files) under dir, recursively.
static vkp_status collect(const char *dir, int depth, icon_files *out, vkp_error *err) {
  vkp_data_strings names = {0};
  vkp_status st = vkp_data_list_dir(dir, &names, err);
  for (int32_t i = 0; st == VKP_OK && i < names.n; i++) {
    char *p = vkp_data_path_join(dir, names.v[i]);
    struct stat sb, lb;
    if (!p) {
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
    } else if (stat(p, &sb) != 0 || lstat(p, &lb) != 0) {
      free(p);  // a dangling link
    } else if (S_ISDIR(sb.st_mode)) {
      if (depth < MAX_DEPTH) st = collect(p, depth + 1, out, err);
      free(p);
    } else {
      const char *dot = strrchr(names.v[i], '.');
      char *real = S_ISREG(sb.st_mode) && dot && strcasecmp(dot, ".png") == 0 ? realpath(p, NULL)
                                                                                : NULL;
      if (!real || vkp_vec_push(out, ((icon_file){p, real, S_ISLNK(lb.st_mode)}))) {
        free(p);
        if (real) st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
        free(real);
      }
    }
  }
  vkp_data_free_strings(names.v, (size_t)names.n);
  return st;
}

static int cmp_real(const void *a, const void *b) {
  const icon_file *x = a, *y = b;
  int c = strcmp(x->real, y->real);
  if (c) return c;
  if (x->is_link != y->is_link) return x->is_link - y->is_link;  // the file itself first
  return strcmp(x->path, y->path);
}

// "folder-music.png" -> "folder music": the file stem, '-' and '_' as spaces, lower-cased.
static char *icon_name(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  char *s = vkp_data_strdup(base);
  if (!s) return NULL;
  char *dot = strrchr(s, '.');
  if (dot) *dot = '\0';
  for (char *q = s; *q; q++)
    if (*q == '-' || *q == '_') *q = ' ';
  vkp_pairs_lower(vkp_pairs_trim(s));
  return s;
}

static int has_caption(const vkp_pairs_entry *e, const char *c) {
  for (int32_t k = 0; k < e->captions.n; k++)
    if (strcmp(e->captions.v[k], c) == 0) return 1;
  return 0;
}

static int cmp_entry_path(const void *a, const void *b) {
  return strcmp(((const vkp_pairs_entry *)a)->path, ((const vkp_pairs_entry *)b)->path);
}

vkp_status vkp_pairs_load_icons(const char *dir, int size, const vkp_pairs_opts *opts,
                                vkp_pairs **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_icons: out is NULL");
  *out = NULL;
  if (!dir || size < 1)
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_icons: NULL folder or size < 1");
  icon_files f = {0};
  vkp_pairs_entries entries = {0};
  vkp_status st = collect(dir, 1, &f, err);
  // One image per real file: the file itself names it (or, when only links to it are in the
  // folder, the first link), the other links add their names as captions.
  qsort(f.v, (size_t)f.n, sizeof *f.v, cmp_real);
  for (int32_t g0 = 0, g1; st == VKP_OK && g0 < f.n; g0 = g1) {
    for (g1 = g0 + 1; g1 < f.n && strcmp(f.v[g1].real, f.v[g0].real) == 0;) g1++;
    int w = 0, h = 0, comp = 0;
    if (stbi_info(f.v[g0].real, &w, &h, &comp) && (w != size || h != size))
      continue;  // another size (animation strips, links into other size folders); an unreadable
                 // file stays, for the decoder to report
    char *name = icon_name(f.v[g0].path);
    vkp_pairs_entry *e = vkp_pairs_entries_add(&entries, vkp_data_strdup(f.v[g0].path), name);
    if (!e || !name || !(e->name = vkp_data_strdup(name)) ||
        vkp_pairs_entry_caption(e, vkp_data_strdup(name)) != VKP_OK) {
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
      break;
    }
    for (int32_t j = g0 + 1; j < g1 && st == VKP_OK; j++) {
      char *alias = icon_name(f.v[j].path);
      if (!alias) st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
      else if (has_caption(e, alias)) free(alias);
      else if (vkp_pairs_entry_caption(e, alias) != VKP_OK)
        st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
    }
  }
  icon_files_free(&f);
  if (st == VKP_OK && entries.n == 0)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no %dx%d PNG icons", dir, size, size);
  if (st != VKP_OK) {
    vkp_pairs_entries_free(&entries);
    return st;
  }
  qsort(entries.v, (size_t)entries.n, sizeof *entries.v, cmp_entry_path);
  return vkp_pairs_build(dir, &entries, opts, out, err);
}
