// pairs_folder.c — caption folders in kohya's layout: root/N_name/img.png + img.txt (N repeats),
// or images with their caption files directly in root.
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "pairs_internal.h"

#define MAX_REPEATS 1000000

// Parses kohya's folder name "N_name" (or "N"): N a positive integer. Returns N, 0 if the name is
// not of that form; *name_at gets the name part ("" when none).
static int32_t parse_repeats(const char *folder, const char **name_at) {
  long long n = 0;
  const char *p = folder;
  if (!isdigit((unsigned char)*p)) return 0;
  for (; isdigit((unsigned char)*p); p++) {
    n = n * 10 + (*p - '0');
    if (n > MAX_REPEATS) return 0;
  }
  if (*p != '_' && *p != '\0') return 0;
  *name_at = *p ? p + 1 : p;
  return (int32_t)n;
}

static int has_ext(const char *name, const char *ext) {
  const char *dot = strrchr(name, '.');
  return dot && strcasecmp(dot, ext) == 0;
}

// Reads a caption file: one caption per non-empty line, trimmed. Errors name the file.
static vkp_status read_captions(const char *path, vkp_pairs_entry *e, vkp_error *err) {
  char *text = NULL;
  size_t len = 0;
  VKP_TRY(vkp_data_read_text(path, &text, &len, err));
  char *p = text;
  if (len >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
      (unsigned char)p[2] == 0xBF)
    p += 3;
  vkp_status st = VKP_OK;
  while (*p && st == VKP_OK) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    vkp_pairs_trim(p);
    if (*p && vkp_pairs_entry_caption(e, vkp_data_strdup(p)) != VKP_OK)
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
    p = nl ? nl + 1 : p + strlen(p);
  }
  free(text);
  if (st == VKP_OK && e->captions.n == 0)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: empty caption file", path);
  return st;
}

// Adds image `file` in folder `dir` (rel: its folder relative to root, "" for root itself) with
// its caption file; a missing caption is an error, or a warning with skip_bad.
static vkp_status add_image(const char *dir, const char *rel, const char *file, const char *ext,
                            int32_t repeats, const char *name, const vkp_data_load_opts *lo,
                            vkp_pairs_entries *out, vkp_error *err) {
  char *path = vkp_data_path_join(dir, file);
  const char *dot = strrchr(file, '.');
  size_t stem = dot ? (size_t)(dot - file) : strlen(file), rl = strlen(rel);
  char *key = malloc(rl + 1 + stem + 1);
  char *cap = path ? malloc(strlen(path) + strlen(ext) + 1) : NULL;
  if (!path || !key || !cap) {
    free(path);
    free(key);
    free(cap);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
  }
  size_t o = 0;
  if (rl) {
    memcpy(key, rel, rl);
    key[rl] = '/';
    o = rl + 1;
  }
  memcpy(key + o, file, stem);
  key[o + stem] = '\0';
  size_t pstem = strlen(path) - (strlen(file) - stem);
  memcpy(cap, path, pstem);
  strcpy(cap + pstem, ext);
  vkp_status st = VKP_OK;
  struct stat sb;
  if (has_ext(file, ".webp") || has_ext(file, ".avif")) {
    st = vkp_error_set(err, VKP_ERR_FORMAT,
                       "%s: WebP/AVIF images cannot be read (PNG, JPEG, BMP, GIF, TGA, PNM can)",
                       path);
  } else if (stat(cap, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: caption file missing (want %s beside the image)",
                       path, cap);
  } else {
    vkp_pairs_entry *e = vkp_pairs_entries_add(out, path, key);
    path = key = NULL;  // taken over
    if (!e) {
      free(cap);
      return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
    }
    e->repeats = repeats;
    if (*name && !(e->name = vkp_data_strdup(name)))
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
    else st = read_captions(cap, e, err);
    if (st != VKP_OK) vkp_pairs_entries_pop(out);
  }
  free(path);
  free(key);
  free(cap);
  if (st != VKP_OK && st != VKP_ERR_OOM && lo->skip_bad) {
    vkp_data_warn(lo, "skipping %s", err ? err->msg : "an image without a readable caption");
    if (err) vkp_error_clear(err);
    st = VKP_OK;
  }
  return st;
}

vkp_status vkp_pairs_load_folder(const char *root, const char *caption_ext,
                                 const vkp_pairs_opts *opts, vkp_pairs **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_folder: out is NULL");
  *out = NULL;
  if (!root) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_folder: root is NULL");
  vkp_data_load_opts lo;
  VKP_TRY(vkp_pairs_load_opts(root, opts, &lo, err));
  char ext[64];
  if (!caption_ext || !*caption_ext) caption_ext = ".txt";
  if (strlen(caption_ext) > 32)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: caption extension too long", root);
  snprintf(ext, sizeof ext, "%s%s", caption_ext[0] == '.' ? "" : ".", caption_ext);
  // With skip_bad, messages of skipped files still need a buffer to be warned with.
  vkp_error local;
  vkp_error *e = err ? err : &local;
  vkp_data_strings top = {0};
  vkp_pairs_entries entries = {0};
  vkp_status st = vkp_data_list_dir(root, &top, e);
  for (int32_t i = 0; st == VKP_OK && i < top.n; i++) {
    char *p = vkp_data_path_join(root, top.v[i]);
    struct stat sb;
    if (!p) {
      st = vkp_error_set(e, VKP_ERR_OOM, "%s: out of memory", root);
      break;
    }
    if (stat(p, &sb) != 0) {
      free(p);  // dangling link: ignored like any other non-image
      continue;
    }
    if (S_ISREG(sb.st_mode) && (vkp_data_is_image_name(top.v[i]) || has_ext(top.v[i], ".webp") ||
                                has_ext(top.v[i], ".avif"))) {
      st = add_image(root, "", top.v[i], ext, 1, "", &lo, &entries, e);
    } else if (S_ISDIR(sb.st_mode)) {
      const char *name = "";
      int32_t repeats = parse_repeats(top.v[i], &name);
      if (repeats < 1) {
        vkp_data_warn(&lo,
                      "%s: ignored: not a kohya `N_name` folder (N = repeats, a positive integer)",
                      p);
      } else {
        vkp_data_strings files = {0};
        st = vkp_data_list_dir(p, &files, e);
        for (int32_t k = 0; st == VKP_OK && k < files.n; k++) {
          char *f = vkp_data_path_join(p, files.v[k]);
          struct stat fb;
          if (!f) st = vkp_error_set(e, VKP_ERR_OOM, "%s: out of memory", p);
          else if (stat(f, &fb) == 0 && S_ISREG(fb.st_mode) &&
                   (vkp_data_is_image_name(files.v[k]) || has_ext(files.v[k], ".webp") ||
                    has_ext(files.v[k], ".avif")))
            st = add_image(p, top.v[i], files.v[k], ext, repeats, name, &lo, &entries, e);
          free(f);
        }
        vkp_data_free_strings(files.v, (size_t)files.n);
      }
    }
    free(p);
  }
  vkp_data_free_strings(top.v, (size_t)top.n);
  if (st == VKP_OK && entries.n == 0)
    st = vkp_error_set(e, VKP_ERR_FORMAT,
                       "%s: no images with captions (want img.png + img%s, in root or in N_name "
                       "folders)",
                       root, ext);
  if (st != VKP_OK) {
    vkp_pairs_entries_free(&entries);
    return st;
  }
  return vkp_pairs_build(root, &entries, opts, out, err);
}
