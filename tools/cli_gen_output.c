// cli_gen_output.c — what `vkpeft generate` writes besides pixels (cli_generate.h): A1111's
// `parameters` text with its LoRA and model short hashes, and the output file names.
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_generate.h"
#include "vkp_fileio.h"
#include "vkp_sha256.h"
#include "vkp_strbuf.h"

// ---- parameters ---------------------------------------------------------------------------------

// A1111's quote(): values holding ',', ':' or a newline are written as a JSON string.
static void put_quoted(vkp_strbuf *b, const char *v) {
  if (strpbrk(v, ",:\n\"")) vkp_strbuf_json_string(b, v);
  else vkp_strbuf_puts(b, v);
}

char *vkp_gen_params_text(const vkp_gen_params *g) {
  vkp_strbuf b = {0};
  vkp_strbuf_puts(&b, g->prompt ? g->prompt : "");
  for (int k = 0; k < g->n_loras; k++)
    if (!g->loras[k].from_prompt)
      vkp_strbuf_printf(&b, "%s<lora:%s:%g>", b.len ? " " : "", g->loras[k].name, g->loras[k].scale);
  if (g->negative && g->negative[0]) vkp_strbuf_printf(&b, "\nNegative prompt: %s", g->negative);
  vkp_strbuf_printf(&b, "\nSteps: %d, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %dx%d", g->steps, g->sampler, g->cfg,
                     g->seed, g->width, g->height);
  if (g->model_hash && g->model_hash[0]) vkp_strbuf_printf(&b, ", Model hash: %s", g->model_hash);
  vkp_strbuf_puts(&b, ", Model: ");
  put_quoted(&b, g->model_name);
  if (g->batch_size > 1) vkp_strbuf_printf(&b, ", Batch size: %d, Batch pos: %d", g->batch_size, g->batch_pos);
  if (g->strength >= 0) vkp_strbuf_printf(&b, ", Denoising strength: %g", g->strength);
  if (g->clip_skip > 1) vkp_strbuf_printf(&b, ", Clip skip: %d", g->clip_skip);
  // Lora hashes: "alias: hash, ..." with ':' and ',' removed from the alias, as A1111.
  vkp_strbuf h = {0};
  for (int k = 0; k < g->n_loras; k++) {
    if (!g->lora_hashes || !g->lora_hashes[k]) continue;
    if (h.len) vkp_strbuf_puts(&h, ", ");
    for (const char *c = g->loras[k].name; *c; c++)
      if (*c != ':' && *c != ',') vkp_strbuf_put(&h, c, 1);
    vkp_strbuf_printf(&h, ": %s", g->lora_hashes[k]);
  }
  if (h.len && h.p) {
    vkp_strbuf_puts(&b, ", Lora hashes: ");
    put_quoted(&b, h.p);
  }
  free(h.p);
  if (g->extra && g->extra[0]) vkp_strbuf_printf(&b, ", %s", g->extra);
  vkp_strbuf_puts(&b, ", Version: vkpeft");
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

// Hashes of big files are remembered in $XDG_CACHE_HOME/vkpeft/sha256.tsv (else ~/.cache/...), one
// line "HASH<TAB>OFFSET<TAB>SIZE<TAB>MTIME_NS<TAB>REALPATH", as A1111 keeps its cache.json: a 2 GB
// checkpoint costs ~10 s to hash once, nothing after. A cache that cannot be read or written is
// ignored.
static bool cache_path(char *out, size_t cap) {
  const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (x && x[0]) snprintf(out, cap, "%s/vkpeft", x);
  else if (home && home[0]) snprintf(out, cap, "%s/.cache/vkpeft", home);
  else return false;
  return true;
}

static vkp_status sha256_cached(const char *path, uint64_t offset, char hex[65], vkp_error *err) {
  struct stat sb;
  char real[PATH_MAX], dir[1024], file[1100], key[PATH_MAX + 100];
  if (stat(path, &sb) || !realpath(path, real)) return vkp_sha256_file(path, offset, hex, err);
  snprintf(key, sizeof key, "%llu\t%lld\t%lld\t%s", (unsigned long long)offset, (long long)sb.st_size,
           (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec, real);
  char *text = NULL;
  size_t len = 0;
  vkp_error ignore = {0};
  bool have_dir = cache_path(dir, sizeof dir);
  snprintf(file, sizeof file, "%s/sha256.tsv", dir);
  if (have_dir && !vkp_file_read_all(file, 64 << 20, &text, &len, &ignore)) {
    for (char *line = text; line && *line;) {
      char *nl = strchr(line, '\n');
      if (nl) *nl = 0;
      if (strlen(line) > 65 && line[64] == '\t' && !strcmp(line + 65, key)) {
        memcpy(hex, line, 64);
        hex[64] = 0;
        free(text);
        return VKP_OK;
      }
      line = nl ? nl + 1 : NULL;
      if (nl) *nl = '\n';
    }
  }
  vkp_status st = vkp_sha256_file(path, offset, hex, err);
  if (!st && have_dir && !vkp_dir_create(dir, &ignore)) {
    char add[PATH_MAX + 200];
    int n = snprintf(add, sizeof add, "%s\t%s\n", hex, key);
    const void *chunks[2] = {text, add};
    size_t sizes[2] = {text ? len : 0, (size_t)n};
    vkp_file_write_atomic(file, chunks, sizes, 2, &ignore);
  }
  free(text);
  return st;
}

vkp_status vkp_gen_lora_hash(const char *path, char out[13], vkp_error *err) {
  uint64_t offset = 0;
  size_t n = strlen(path);
  if (n > 12 && !strcmp(path + n - 12, ".safetensors")) {
    FILE *f = fopen(path, "rb");
    unsigned char h[8];
    if (!f) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open", path);
    size_t got = fread(h, 1, 8, f);
    fclose(f);
    if (got != 8) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: too short for a safetensors header", path);
    for (int i = 7; i >= 0; i--) offset = offset << 8 | h[i];
    offset += 8;
  }
  char hex[65];
  vkp_status st = sha256_cached(path, offset, hex, err);
  if (st) return st;
  snprintf(out, 13, "%.12s", hex);
  return VKP_OK;
}

vkp_status vkp_gen_model_hash(const char *path, char out[11], vkp_error *err) {
  char hex[65];
  vkp_status st = sha256_cached(path, 0, hex, err);
  if (st) return st;
  snprintf(out, 11, "%.10s", hex);
  return VKP_OK;
}

// ---- file names ---------------------------------------------------------------------------------

vkp_status vkp_gen_out_open(const char *output, vkp_gen_out *o, vkp_error *err) {
  memset(o, 0, sizeof *o);
  size_t n = strlen(output);
  if (n > 4 && !strcasecmp(output + n - 4, ".png")) {
    snprintf(o->base, sizeof o->base, "%.*s", (int)(n - 4), output);
    return VKP_OK;
  }
  while (n > 1 && output[n - 1] == '/') n--;
  snprintf(o->base, sizeof o->base, "%.*s", (int)n, output);
  o->dir = true;
  vkp_status st = vkp_dir_create(o->base, err);
  if (st) return st;
  // What killed runs left (`00003-7.png.tmp.XXXXXXXX`) would take a number: removed first.
  vkp_dir_remove_stale_tmp(o->base, 0);
  DIR *d = opendir(o->base);
  if (!d) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot list the output folder", o->base);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!isdigit((unsigned char)e->d_name[0])) continue;
    int v = atoi(e->d_name);
    if (v + 1 > o->next) o->next = v + 1;
  }
  closedir(d);
  return VKP_OK;
}

void vkp_gen_out_path(vkp_gen_out *o, int k, int n, unsigned long long seed, bool grid, char *path, size_t cap) {
  if (o->dir) {
    if (grid) snprintf(path, cap, "%s/%05d-grid.png", o->base, o->next++);
    else snprintf(path, cap, "%s/%05d-%llu.png", o->base, o->next++, seed);
  } else if (n > 1 && !grid) snprintf(path, cap, "%s-%d.png", o->base, k);
  else snprintf(path, cap, "%s.png", o->base);
}
