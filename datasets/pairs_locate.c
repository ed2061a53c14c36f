// pairs_locate.c — the named image–text sets: where their Debian packages put the files, and
// loading them at their size (no downloads: scripts/setup installs the packages).
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pairs_internal.h"

enum { SET_NOTO, SET_EMOJIONE, SET_ICONS };

typedef struct pair_set {
  const char *name;
  int kind;
  int size;                   // load size (square)
  const char *package;        // the Debian package
  const char *roots[5];       // glob patterns of the package's folder (a gem, an icon theme size)
  const char *images_rel;     // the PNG folder under a root ("" = the root)
  const char *names_rel;      // the names file under a root (NULL for icons)
  const char *names_in_env;   // the names file's name in $VKPEFT_DATA_DIR/<name>/
} pair_set;

#define GEM_ROOTS(gem)                                                                           \
  {"/usr/share/rubygems-integration/all/gems/" gem "-*", "/usr/lib/ruby/gems/*/gems/" gem "-*",  \
   "/var/lib/gems/*/gems/" gem "-*", "/usr/local/lib/ruby/gems/*/gems/" gem "-*", NULL}

static const pair_set SETS[] = {
    {"emoji-noto", SET_NOTO, 72, "ruby-tanuki-emoji", GEM_ROOTS("tanuki_emoji"),
     "app/assets/images/tanuki_emoji", "vendor/unicode/emoji-test.txt", "emoji-test.txt"},
    {"emoji-emojione", SET_EMOJIONE, 64, "ruby-gemojione", GEM_ROOTS("gemojione"), "assets/png",
     "config/index.json", "index.json"},
    {"icons-paper", SET_ICONS, 48, "paper-icon-theme",
     {"/usr/share/icons/Paper/48x48", "/usr/local/share/icons/Paper/48x48", NULL}, "", NULL, NULL},
    {"icons-oxygen", SET_ICONS, 48, "oxygen-icon-theme",
     {"/usr/share/icons/oxygen/base/48x48", "/usr/share/icons/oxygen/48x48",
      "/usr/local/share/icons/oxygen/base/48x48", NULL},
     "", NULL, NULL},
    {"icons-tango", SET_ICONS, 32, "tango-icon-theme",
     {"/usr/share/icons/Tango/32x32", "/usr/local/share/icons/Tango/32x32", NULL}, "", NULL, NULL},
};
#define N_SETS ((int)(sizeof SETS / sizeof SETS[0]))

const char *vkp_pairs_known_name(int i) { return i >= 0 && i < N_SETS ? SETS[i].name : NULL; }

static const pair_set *find_set(const char *name) {
  for (int i = 0; name && i < N_SETS; i++)
    if (strcmp(SETS[i].name, name) == 0) return &SETS[i];
  return NULL;
}

static int is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

// Fills out from a root folder if its images (and names file) are there.
static int try_root(const pair_set *s, const char *root, const char *images_rel,
                    const char *names_rel, vkp_pairs_files *out) {
  vkp_pairs_files f = {{0}, {0}};
  int a = snprintf(f.images, sizeof f.images, "%s%s%s", root, *images_rel ? "/" : "", images_rel);
  if (a < 0 || (size_t)a >= sizeof f.images || !is_dir(f.images)) return 0;
  if (s->kind != SET_ICONS) {
    int b = snprintf(f.names, sizeof f.names, "%s/%s", root, names_rel);
    if (b < 0 || (size_t)b >= sizeof f.names || !is_file(f.names)) return 0;
  }
  *out = f;
  return 1;
}

// Appends ", s" to buf (or s when empty), silently truncating.
static void append(char *buf, size_t cap, const char *s) {
  size_t n = strlen(buf);
  snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", s);
}

vkp_status vkp_pairs_locate(const char *name, vkp_pairs_files *out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_locate: out is NULL");
  memset(out, 0, sizeof *out);
  const pair_set *s = find_set(name);
  if (!s)
    return vkp_error_set(err, VKP_ERR_NOT_FOUND,
                         "unknown image-text set '%s' (known: emoji-noto, emoji-emojione, "
                         "icons-paper, icons-oxygen, icons-tango)",
                         name ? name : "(null)");
  char looked[1024] = "";
  const char *env = getenv("VKPEFT_DATA_DIR");
  if (env && *env) {
    char dir[VKP_DATA_PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/%s", env, s->name);
    if (n > 0 && (size_t)n < sizeof dir) {
      append(looked, sizeof looked, dir);
      if (try_root(s, dir, "", s->names_in_env ? s->names_in_env : "", out)) return VKP_OK;
    }
  }
  for (int i = 0; s->roots[i]; i++) {
    append(looked, sizeof looked, s->roots[i]);
    glob_t g;
    if (glob(s->roots[i], 0, NULL, &g) != 0) continue;
    // Several versions: the last in glob's (sorted) order.
    for (size_t k = g.gl_pathc; k-- > 0;)
      if (try_root(s, g.gl_pathv[k], s->images_rel, s->names_rel ? s->names_rel : "", out)) {
        globfree(&g);
        return VKP_OK;
      }
    globfree(&g);
  }
  return vkp_error_set(err, VKP_ERR_NOT_FOUND,
                       "%s is not installed: apt-get install %s (or run `bash scripts/setup` as "
                       "root) (looked in %s)",
                       s->name, s->package, looked);
}

vkp_status vkp_pairs_load_named(const char *name, const vkp_pairs_opts *opts, vkp_pairs **out,
                                vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_named: out is NULL");
  *out = NULL;
  vkp_pairs_files f;
  VKP_TRY(vkp_pairs_locate(name, &f, err));
  const pair_set *s = find_set(name);
  vkp_pairs_opts o = opts ? *opts : (vkp_pairs_opts){0};
  if (o.width <= 0 && o.height <= 0) o.width = o.height = s->size;
  vkp_pairs *p = NULL;
  vkp_status st = s->kind == SET_NOTO       ? vkp_pairs_load_noto(f.images, f.names, &o, &p, err)
                  : s->kind == SET_EMOJIONE ? vkp_pairs_load_emojione(f.images, f.names, &o, &p, err)
                                            : vkp_pairs_load_icons(f.images, s->size, &o, &p, err);
  if (st != VKP_OK) return st;
  char *copy = vkp_data_strdup(s->name);
  if (!copy) {
    vkp_pairs_free(p);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", s->name);
  }
  free(p->images->name);
  p->images->name = copy;
  *out = p;
  return VKP_OK;
}
