// pairs_emoji.c — the two emoji sets: Noto (ruby-tanuki-emoji: PNGs named by code points, names
// from Unicode's emoji-test.txt) and EmojiOne (ruby-gemojione: PNGs named by code points, names in
// its index.json). Both are keyed by code points, so the same emoji pairs across the styles.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "pairs_internal.h"

#define MAX_CPS 16  // code points in one emoji sequence (the longest RGI ones have 10)

// The key of a code point sequence: lower-case hex joined by '-', U+FE0F (variation selector)
// and U+200D (zero-width joiner) left out, as they are in one set's file names and not the other's.
static char *cps_key(const uint32_t *cp, int n) {
  char buf[MAX_CPS * 9 + 1];
  size_t o = 0;
  for (int i = 0; i < n; i++) {
    if (cp[i] == 0xFE0F || cp[i] == 0x200D) continue;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%x", o ? "-" : "", (unsigned)cp[i]);
  }
  buf[o] = '\0';
  return vkp_data_strdup(buf);
}

// Parses hex code points separated by spaces or '-' from s (up to `stop` or the end) into cp.
// Returns the count, -1 on a malformed or too long sequence.
static int parse_cps(const char *s, char stop, uint32_t *cp) {
  int n = 0;
  while (*s && *s != stop) {
    if (*s == ' ' || *s == '\t' || *s == '-') {
      s++;
      continue;
    }
    char *end;
    unsigned long v = strtoul(s, &end, 16);
    if (end == s || v > 0x10FFFF || n == MAX_CPS) return -1;
    cp[n++] = (uint32_t)v;
    s = end;
  }
  return n;
}

// A new entry for `file` in `dir`, keyed by cp, named and captioned by `name` (lower-cased).
static vkp_status add_emoji(vkp_pairs_entries *out, const char *dir, const char *file,
                            const uint32_t *cp, int n, const char *name, const char *what,
                            vkp_error *err) {
  vkp_pairs_entry *e = vkp_pairs_entries_add(out, vkp_data_path_join(dir, file), cps_key(cp, n));
  if (!e || !e->key || !(e->name = vkp_data_strdup(name)))
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
  vkp_pairs_lower(vkp_pairs_trim(e->name));
  if (vkp_pairs_entry_caption(e, vkp_data_strdup(e->name)) != VKP_OK)
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
  return VKP_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

// Noto's file name of a sequence: flags (two regional indicators) are "XY.png", the rest
// "emoji_u" + 4-digit-or-more lower-case hex joined by '_' + ".png", without U+FE0F.
static void noto_file(const uint32_t *cp, int n, char *buf, size_t cap) {
  if (n == 2 && cp[0] >= 0x1F1E6 && cp[0] <= 0x1F1FF && cp[1] >= 0x1F1E6 && cp[1] <= 0x1F1FF) {
    snprintf(buf, cap, "%c%c.png", 'A' + (int)(cp[0] - 0x1F1E6), 'A' + (int)(cp[1] - 0x1F1E6));
    return;
  }
  size_t o = (size_t)snprintf(buf, cap, "emoji_u");
  int first = 1;
  for (int i = 0; i < n && o < cap; i++) {
    if (cp[i] == 0xFE0F) continue;
    o += (size_t)snprintf(buf + o, cap - o, "%s%04x", first ? "" : "_", (unsigned)cp[i]);
    first = 0;
  }
  if (o < cap) snprintf(buf + o, cap - o, ".png");
}

// One data line of emoji-test.txt: "1F600 ; fully-qualified # 😀 E1.0 grinning face".
// Returns 1 with the code points and the name (pointing into line), 0 for a comment or blank
// line, -1 when malformed.
static int parse_test_line(char *line, uint32_t *cp, int *n, const char **name) {
  char *s = line;
  while (*s == ' ' || *s == '\t') s++;
  if (!*s || *s == '#') return 0;
  char *semi = strchr(s, ';'), *hash = strchr(s, '#');
  if (!semi || !hash || hash < semi) return -1;
  if ((*n = parse_cps(s, ';', cp)) <= 0) return -1;
  char *p = hash + 1;
  while (*p == ' ') p++;
  while (*p && *p != ' ') p++;  // the emoji itself
  while (*p == ' ') p++;
  if (p[0] != 'E' || !isdigit((unsigned char)p[1])) return -1;  // "E13.0", the version
  while (*p && *p != ' ') p++;
  while (*p == ' ') p++;
  vkp_pairs_trim(p);
  if (!*p) return -1;
  *name = p;
  return 1;
}

vkp_status vkp_pairs_load_noto(const char *dir, const char *emoji_test_txt,
                               const vkp_pairs_opts *opts, vkp_pairs **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_noto: out is NULL");
  *out = NULL;
  if (!dir || !emoji_test_txt)
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_noto: NULL folder or names file");
  char *text = NULL;
  size_t len = 0;
  vkp_data_strings files = {0};
  vkp_pairs_entries entries = {0};
  unsigned char *taken = NULL;
  VKP_TRY(vkp_data_read_text(emoji_test_txt, &text, &len, err));
  vkp_status st = vkp_data_list_dir(dir, &files, err);  // sorted
  if (st == VKP_OK && !(taken = calloc((size_t)files.n + 1, 1)))
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
  char *p = text;
  for (int line = 1; st == VKP_OK && *p; line++) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    uint32_t cp[MAX_CPS];
    int n = 0;
    const char *name = NULL;
    int rc = parse_test_line(p, cp, &n, &name);
    if (rc < 0) {
      st = vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s:%d: not an emoji-test.txt line (code points ; status # emoji Ex.y "
                         "name)",
                         emoji_test_txt, line);
    } else if (rc > 0) {
      char file[MAX_CPS * 9 + 16];
      noto_file(cp, n, file, sizeof file);
      char *key = file;
      char **hit = bsearch(&key, files.v, (size_t)files.n, sizeof *files.v, cmp_str);
      if (hit && !taken[hit - files.v]) {  // the first line of a file names it
        taken[hit - files.v] = 1;
        st = add_emoji(&entries, dir, file, cp, n, name, dir, err);
      }
    }
    p = nl ? nl + 1 : p + strlen(p);
  }
  free(text);
  free(taken);
  vkp_data_free_strings(files.v, (size_t)files.n);
  if (st == VKP_OK && entries.n == 0)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no emoji PNG named by a line of %s", dir,
                       emoji_test_txt);
  if (st != VKP_OK) {
    vkp_pairs_entries_free(&entries);
    return st;
  }
  return vkp_pairs_build(dir, &entries, opts, out, err);
}

vkp_status vkp_pairs_load_emojione(const char *dir, const char *index_json,
                                   const vkp_pairs_opts *opts, vkp_pairs **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_emojione: out is NULL");
  *out = NULL;
  if (!dir || !index_json)
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_emojione: NULL folder or index");
  char *text = NULL;
  size_t len = 0;
  VKP_TRY(vkp_data_read_text(index_json, &text, &len, err));
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a JSON object (want gemojione's index)",
                         index_json);
  }
  vkp_pairs_entries entries = {0};
  vkp_status st = VKP_OK;
  const cJSON *item;
  cJSON_ArrayForEach(item, root) {
    const cJSON *uni = cJSON_GetObjectItemCaseSensitive(item, "unicode");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
    uint32_t cp[MAX_CPS];
    int n = cJSON_IsString(uni) ? parse_cps(uni->valuestring, '\0', cp) : -1;
    if (n <= 0 || !cJSON_IsString(name) || !name->valuestring[0] ||
        strlen(uni->valuestring) > MAX_CPS * 9) {
      st = vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s: entry \"%s\": want \"unicode\" (hex code points joined by '-') and "
                         "\"name\" strings",
                         index_json, item->string ? item->string : "?");
      break;
    }
    char file[MAX_CPS * 9 + 8];
    snprintf(file, sizeof file, "%s.png", uni->valuestring);
    if ((st = add_emoji(&entries, dir, file, cp, n, name->valuestring, index_json, err)) != VKP_OK)
      break;
  }
  cJSON_Delete(root);
  if (st == VKP_OK && entries.n == 0)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no entries", index_json);
  if (st != VKP_OK) {
    vkp_pairs_entries_free(&entries);
    return st;
  }
  return vkp_pairs_build(dir, &entries, opts, out, err);
}
