// clip_tok_load.c — building a CLIP tokenizer from its files: OpenAI's gzip'd merges list
// (vocabulary made as simple_tokenizer.py makes it) or an HF folder (vocab.json + merges.txt +
// tokenizer_config.json), and the copy of OpenAI's file linked into the program.
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "clip_tok_internal.h"
#include "vkp_fileio.h"

#define OPENAI_MERGES (49152 - 256 - 2)   // simple_tokenizer.py uses the first 48894 merges
#define MAX_FILE_BYTES (256u << 20)
#define MAX_ID (1 << 24)

// ---- string -> id map (load time only) ----------------------------------------------------------

typedef struct strmap_slot { uint32_t off, len; int32_t id; } strmap_slot;
typedef struct strmap {
  strmap_slot *slots;   // len == UINT32_MAX: empty
  uint32_t cap, count;
  clip_bytes pool;      // the keys, back to back
} strmap;

static uint32_t str_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u;   // FNV-1a
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

static strmap_slot *strmap_find(const strmap *m, const char *s, size_t n) {
  uint32_t i = str_hash(s, n) & (m->cap - 1);
  for (;; i = (i + 1) & (m->cap - 1)) {
    strmap_slot *e = &m->slots[i];
    if (e->len == UINT32_MAX || (e->len == n && !memcmp(m->pool.v + e->off, s, n))) return e;
  }
}

static vkp_status strmap_init(strmap *m, uint32_t expected) {
  memset(m, 0, sizeof *m);
  m->cap = 1024;
  while (m->cap < 2 * expected) m->cap *= 2;
  m->slots = malloc((size_t)m->cap * sizeof *m->slots);
  if (!m->slots) return VKP_ERR_OOM;
  for (uint32_t i = 0; i < m->cap; i++) m->slots[i].len = UINT32_MAX;
  return VKP_OK;
}

static void strmap_free(strmap *m) {
  free(m->slots);
  free(m->pool.v);
  memset(m, 0, sizeof *m);
}

// Sets s -> id (a later id for the same string wins, as dict(zip(vocab, range)) does).
static vkp_status strmap_put(strmap *m, const char *s, size_t n, int32_t id) {
  if (2 * (m->count + 1) > m->cap) {
    strmap bigger = *m;
    bigger.cap *= 2;
    bigger.slots = malloc((size_t)bigger.cap * sizeof *bigger.slots);
    if (!bigger.slots) return VKP_ERR_OOM;
    for (uint32_t i = 0; i < bigger.cap; i++) bigger.slots[i].len = UINT32_MAX;
    for (uint32_t i = 0; i < m->cap; i++)
      if (m->slots[i].len != UINT32_MAX)
        *strmap_find(&bigger, m->pool.v + m->slots[i].off, m->slots[i].len) = m->slots[i];
    free(m->slots);
    *m = bigger;
  }
  strmap_slot *e = strmap_find(m, s, n);
  if (e->len == UINT32_MAX) {
    if (m->pool.n > INT32_MAX - (int64_t)n - 1 || vkp_vec_reserve(&m->pool, (int64_t)m->pool.n + (int64_t)n + 1))
      return VKP_ERR_OOM;
    memcpy(m->pool.v + m->pool.n, s, n);
    e->off = (uint32_t)m->pool.n;
    e->len = (uint32_t)n;
    m->pool.n += (int32_t)n;
    m->count++;
  }
  e->id = id;
  return VKP_OK;
}

static int32_t strmap_get(const strmap *m, const char *s, size_t n) {
  const strmap_slot *e = strmap_find(m, s, n);
  return e->len == UINT32_MAX ? -1 : e->id;
}

// ---- bytes_to_unicode --------------------------------------------------------------------------

// GPT-2's byte -> character map: printable Latin-1 bytes stand for themselves, the others for
// U+0100 onwards in byte order. `order[k]` is the byte whose character is vocabulary entry k.
static void byte_chars(uint32_t cp[256], uint8_t order[256]) {
  int k = 0, extra = 0;
  for (int b = 0; b < 256; b++)
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) cp[b] = (uint32_t)b, order[k++] = (uint8_t)b;
  for (int b = 0; b < 256; b++)
    if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)))
      cp[b] = 256u + (uint32_t)extra++, order[k++] = (uint8_t)b;
}

// "<char of b>" (+ "</w>") in buf; returns its length.
static size_t byte_symbol(uint32_t cp, bool end, char buf[8]) {
  size_t n = 0;
  if (cp < 0x80) buf[n++] = (char)cp;
  else buf[n++] = (char)(0xC0 | (cp >> 6)), buf[n++] = (char)(0x80 | (cp & 0x3F));
  if (end) memcpy(buf + n, "</w>", 4), n += 4;
  return n;
}

static void byte_ids_from(vkp_clip_tokenizer *tok, const strmap *vocab) {
  uint32_t cp[256];
  uint8_t order[256];
  char buf[8];
  byte_chars(cp, order);
  for (int b = 0; b < 256; b++) {
    tok->byte_id[b] = strmap_get(vocab, buf, byte_symbol(cp[b], false, buf));
    tok->byte_end_id[b] = strmap_get(vocab, buf, byte_symbol(cp[b], true, buf));
  }
}

// ---- merges text ---------------------------------------------------------------------------------

typedef struct merge_line { const char *a, *b; size_t na, nb; int line; } merge_line;
typedef VKP_VEC(merge_line) merge_lines;

// Splits `text` into merges: lines starting with "#version" are headers, blank lines may only end
// the file, every other line must be two symbols separated by spaces or tabs (a trailing '\r' is
// dropped).
// `first_is_header`: line 1 is a header whatever it says (OpenAI's file starts with one that
// gzip's file name sticks to). Stops after `max` merges.
static vkp_status parse_merges(const char *text, size_t len, const char *what, bool first_is_header, int max,
                               merge_lines *out, vkp_error *err) {
  const char *p = text, *end = text + len;
  for (int line = 1; p < end && out->n < max; line++) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *start = p, *q = p, *e = eol;
    p = eol + 1;
    if (e > q && e[-1] == '\r') e--;
    if ((line == 1 && first_is_header) || (e - q >= 8 && !memcmp(q, "#version", 8))) continue;
    const char *tok[2] = {NULL, NULL};
    size_t n_tok[2] = {0, 0};
    int k = 0;
    while (q < e) {
      while (q < e && (*q == ' ' || *q == '\t')) q++;
      if (q == e) break;
      const char *s = q;
      while (q < e && *q != ' ' && *q != '\t') q++;
      if (k < 2) tok[k] = s, n_tok[k] = (size_t)(q - s);
      k++;
    }
    if (k == 0) {   // blank: fine at the end of the file only (a blank merge would shift ids)
      while (p < end && (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t')) p++;
      if (p == end) break;
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: line %d is blank; a merge needs two symbols", what, line);
    }
    if (k != 2) {
      int shown = e - start > 60 ? 60 : (int)(e - start);
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: line %d: a merge needs two symbols, found %d (\"%.*s\")", what,
                           line, k, shown, start);
    }
    merge_line m = {tok[0], tok[1], n_tok[0], n_tok[1], line};
    if (vkp_vec_push(out, m)) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
  }
  return VKP_OK;
}

// ---- gzip --------------------------------------------------------------------------------------

static bool is_gzip(const unsigned char *p, size_t n) { return n >= 2 && p[0] == 0x1F && p[1] == 0x8B; }

// Inflates a gzip stream into a new NUL-terminated buffer *out (caller frees).
static vkp_status gunzip(const unsigned char *src, size_t n, const char *what, char **out, size_t *out_len,
                         vkp_error *err) {
  *out = NULL;
  *out_len = 0;
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return vkp_error_set(err, VKP_ERR_OOM, "%s: cannot start zlib", what);
  size_t cap = n * 3 + 4096, len = 0;
  char *buf = malloc(cap + 1);
  vkp_status st = buf ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
  zs.next_in = (Bytef *)src;
  zs.avail_in = (uInt)n;
  while (!st) {
    if (len == cap) {
      if (cap >= MAX_FILE_BYTES) {
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: decompresses to more than %u MiB", what, MAX_FILE_BYTES >> 20);
        break;
      }
      char *bigger = realloc(buf, 2 * cap + 1);
      if (!bigger) {
        st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
        break;
      }
      buf = bigger;
      cap *= 2;
    }
    zs.next_out = (Bytef *)buf + len;
    zs.avail_out = (uInt)(cap - len);
    int r = inflate(&zs, Z_NO_FLUSH);
    len = cap - zs.avail_out;
    if (r == Z_STREAM_END) break;
    if (r == Z_OK || (r == Z_BUF_ERROR && zs.avail_out == 0)) continue;
    if (r == Z_BUF_ERROR) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: gzip data is truncated", what);
    else if (r == Z_MEM_ERROR) st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
    else st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: gzip data is corrupt (%s)", what, zs.msg ? zs.msg : "zlib error");
  }
  inflateEnd(&zs);
  if (st) {
    free(buf);
    return st;
  }
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return VKP_OK;
}

// ---- OpenAI: the vocabulary follows from the merges ---------------------------------------------

// simple_tokenizer.py: vocab = the 256 byte characters, the same + "</w>", one entry per merge
// (the two symbols joined), "<|startoftext|>", "<|endoftext|>"; ids in that order.
static vkp_status build_openai(vkp_clip_tokenizer *tok, const char *text, size_t len, const char *what,
                               vkp_error *err) {
  const char *eol = memchr(text, '\n', len);
  size_t first = eol ? (size_t)(eol - text) : len;
  bool header = false;
  for (size_t i = 0; i + 8 <= first && !header; i++) header = !memcmp(text + i, "#version", 8);
  if (!header || memchr(text, '\0', first))
    return vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s: not a CLIP BPE merges file (its first line has no '#version' header)", what);
  merge_lines ml = {0};
  strmap vocab = {0};
  clip_bytes joined = {0};
  vkp_status st = parse_merges(text, len, what, true, OPENAI_MERGES, &ml, err);
  if (!st && ml.n == 0) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: holds no merges", what);
  if (!st && strmap_init(&vocab, 2 * 256 + (uint32_t)ml.n + 2)) st = VKP_ERR_OOM;
  uint32_t cp[256];
  uint8_t order[256];
  char sym[8];
  byte_chars(cp, order);
  for (int k = 0; k < 512 && !st; k++) st = strmap_put(&vocab, sym, byte_symbol(cp[order[k % 256]], k >= 256, sym), k);
  for (int32_t i = 0; i < ml.n && !st; i++) {
    const merge_line *m = &ml.v[i];
    joined.n = 0;
    if (vkp_vec_reserve(&joined, (int64_t)(m->na + m->nb))) st = VKP_ERR_OOM;
    if (st) break;
    memcpy(joined.v, m->a, m->na);
    memcpy(joined.v + m->na, m->b, m->nb);
    st = strmap_put(&vocab, joined.v, m->na + m->nb, 512 + i);
  }
  int32_t n_vocab = 512 + ml.n;
  if (!st) st = strmap_put(&vocab, "<|startoftext|>", 15, n_vocab);
  if (!st) st = strmap_put(&vocab, "<|endoftext|>", 13, n_vocab + 1);
  if (!st) st = clip_tok_merges_init(&tok->merges, (uint32_t)ml.n);
  for (int32_t i = 0; i < ml.n && !st; i++) {
    const merge_line *m = &ml.v[i];
    joined.n = 0;
    memcpy(joined.v, m->a, m->na);
    memcpy(joined.v + m->na, m->b, m->nb);
    int32_t a = strmap_get(&vocab, m->a, m->na), b = strmap_get(&vocab, m->b, m->nb);
    // A merge whose parts are not symbols can never apply (as in bpe_ranks): skip it.
    if (a >= 0 && b >= 0) st = clip_tok_merges_put(&tok->merges, a, b, i, strmap_get(&vocab, joined.v, m->na + m->nb));
  }
  if (st == VKP_ERR_OOM && err && err->status != VKP_ERR_OOM) vkp_error_set(err, st, "%s: out of memory", what);
  if (!st) {
    byte_ids_from(tok, &vocab);
    tok->vocab_size = n_vocab + 2;
    tok->n_merges = ml.n;
    tok->bos_id = tok->sot_literal_id = strmap_get(&vocab, "<|startoftext|>", 15);
    tok->eos_id = tok->pad_id = tok->unk_id = tok->eot_literal_id = strmap_get(&vocab, "<|endoftext|>", 13);
    tok->max_length = VKP_CLIP_CONTEXT_LENGTH;
    tok->norm = VKP_CLIP_NORM_OPENAI;
    tok->default_pad = VKP_CLIP_PAD_OPENAI;
  }
  free(ml.v);
  free(joined.v);
  strmap_free(&vocab);
  return st;
}

// A merges file: gzip'd (bpe_simple_vocab_16e6.txt.gz) or its text.
static vkp_status load_openai_bytes(vkp_clip_tokenizer *tok, const unsigned char *data, size_t n, const char *what,
                                    vkp_error *err) {
  if (!is_gzip(data, n)) return build_openai(tok, (const char *)data, n, what, err);
  char *text;
  size_t len;
  VKP_TRY(gunzip(data, n, what, &text, &len, err));
  vkp_status st = build_openai(tok, text, len, what, err);
  free(text);
  return st;
}

// ---- HF folders ------------------------------------------------------------------------------------

// dir/name (or just dir when name is NULL) in buf; false when it does not fit.
static bool path_join(char *buf, size_t cap, const char *dir, const char *name) {
  int n = name ? snprintf(buf, cap, "%s/%s", dir, name) : snprintf(buf, cap, "%s", dir);
  return n >= 0 && (size_t)n < cap;
}

static bool file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static vkp_status read_json(const char *path, cJSON **out, vkp_error *err) {
  char *text;
  size_t len;
  *out = NULL;
  VKP_TRY(vkp_file_read_all(path, MAX_FILE_BYTES, &text, &len, err));
  *out = cJSON_ParseWithLength(text, len);
  free(text);
  return *out ? VKP_OK : vkp_error_set(err, VKP_ERR_FORMAT, "%s: not valid JSON", path);
}

static vkp_status read_vocab(const char *path, strmap *vocab, int32_t *vocab_size, vkp_error *err) {
  cJSON *root;
  VKP_TRY(read_json(path, &root, err));
  vkp_status st = VKP_OK;
  if (!cJSON_IsObject(root)) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a JSON object of token -> id", path);
  if (!st && strmap_init(vocab, (uint32_t)cJSON_GetArraySize(root))) st = VKP_ERR_OOM;
  int32_t max_id = -1;
  for (cJSON *e = st ? NULL : root->child; e && !st; e = e->next) {
    double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
    if (v < 0 || v >= MAX_ID || v != (double)(int32_t)v) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: token \"%.40s\" has no valid id (want an integer in [0, %d))", path,
                         e->string, MAX_ID);
      break;
    }
    st = strmap_put(vocab, e->string, strlen(e->string), (int32_t)v);
    if ((int32_t)v > max_id) max_id = (int32_t)v;
  }
  if (!st && max_id < 0) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: the vocabulary is empty", path);
  if (st == VKP_ERR_OOM && err && err->status != VKP_ERR_OOM) vkp_error_set(err, st, "%s: out of memory", path);
  *vocab_size = max_id + 1;
  cJSON_Delete(root);
  return st;
}

// A token entry of tokenizer_config.json / special_tokens_map.json: "text" or {"content": "text"}.
static vkp_status token_entry(const cJSON *root, const char *key, const char *path, const char **text,
                              vkp_error *err) {
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!e || cJSON_IsNull(e)) return VKP_OK;
  if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "content");
  if (!cJSON_IsString(e) || !e->valuestring[0])
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s must be a token string or {\"content\": string}", path, key);
  *text = e->valuestring;
  return VKP_OK;
}

// Special tokens and max length: defaults, then special_tokens_map.json, then tokenizer_config.json.
static vkp_status read_token_config(vkp_clip_tokenizer *tok, const char *dir, char *names[4], vkp_error *err) {
  static const char *const keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
  static const char *const files[2] = {"special_tokens_map.json", "tokenizer_config.json"};
  const char *text[4] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
  cJSON *docs[2] = {NULL, NULL};
  char path[4096];
  vkp_status st = VKP_OK;
  tok->max_length = VKP_CLIP_CONTEXT_LENGTH;
  for (int f = 0; f < 2 && !st; f++) {
    if (!path_join(path, sizeof path, dir, files[f]) || !file_exists(path)) continue;
    st = read_json(path, &docs[f], err);
    if (!st && !cJSON_IsObject(docs[f])) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a JSON object", path);
    for (int k = 0; k < 4 && !st; k++) st = token_entry(docs[f], keys[k], path, &text[k], err);
    const cJSON *len = st ? NULL : cJSON_GetObjectItemCaseSensitive(docs[f], "model_max_length");
    // transformers writes 1e30 for "no limit": keep CLIP's 77 then.
    if (cJSON_IsNumber(len) && len->valuedouble >= 2 && len->valuedouble <= (1 << 20))
      tok->max_length = (int)len->valuedouble;
  }
  for (int k = 0; k < 4 && !st; k++)
    if (!(names[k] = strdup(text[k]))) st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
  cJSON_Delete(docs[0]);
  cJSON_Delete(docs[1]);
  return st;
}

// vocab.json + merges.txt (+ token config) of the folder `dir`.
static vkp_status load_hf(vkp_clip_tokenizer *tok, const char *dir, vkp_error *err) {
  char vocab_path[4096], merges_path[4096];
  if (!path_join(vocab_path, sizeof vocab_path, dir, "vocab.json") ||
      !path_join(merges_path, sizeof merges_path, dir, "merges.txt"))
    return vkp_error_set(err, VKP_ERR_INVALID, "%.200s...: path too long", dir);
  strmap vocab = {0};
  merge_lines ml = {0};
  clip_bytes joined = {0};
  char *merges_text = NULL, *names[4] = {NULL, NULL, NULL, NULL};
  size_t merges_len = 0;
  vkp_status st = read_vocab(vocab_path, &vocab, &tok->vocab_size, err);
  if (!st) st = vkp_file_read_all(merges_path, MAX_FILE_BYTES, &merges_text, &merges_len, err);
  if (!st) st = parse_merges(merges_text, merges_len, merges_path, false, INT32_MAX, &ml, err);
  if (!st && clip_tok_merges_init(&tok->merges, (uint32_t)ml.n)) st = vkp_error_set(err, VKP_ERR_OOM, "out of memory");
  for (int32_t i = 0; i < ml.n && !st; i++) {
    const merge_line *m = &ml.v[i];
    int32_t a = strmap_get(&vocab, m->a, m->na), b = strmap_get(&vocab, m->b, m->nb);
    if (a < 0 || b < 0) {
      bool left = a < 0;
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: line %d: symbol \"%.*s\" is not in vocab.json", merges_path, m->line,
                         (int)(left ? m->na : m->nb), left ? m->a : m->b);
      break;
    }
    joined.n = 0;
    if (vkp_vec_reserve(&joined, (int64_t)(m->na + m->nb))) {
      st = vkp_error_set(err, VKP_ERR_OOM, "out of memory");
      break;
    }
    memcpy(joined.v, m->a, m->na);
    memcpy(joined.v + m->na, m->b, m->nb);
    int32_t ab = strmap_get(&vocab, joined.v, m->na + m->nb);
    if (ab < 0) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: line %d: the merge result \"%.*s\" is not in vocab.json", merges_path,
                         m->line, (int)(m->na + m->nb), joined.v);
      break;
    }
    if (clip_tok_merges_put(&tok->merges, a, b, i, ab)) st = vkp_error_set(err, VKP_ERR_OOM, "out of memory");
  }
  if (!st) st = read_token_config(tok, dir, names, err);
  int32_t ids[4] = {-1, -1, -1, -1};
  for (int k = 0; k < 4 && !st; k++) {
    ids[k] = strmap_get(&vocab, names[k], strlen(names[k]));
    if (ids[k] < 0) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: special token \"%.60s\" is not in it", vocab_path, names[k]);
  }
  if (!st) {
    byte_ids_from(tok, &vocab);
    tok->n_merges = ml.n;
    tok->bos_id = ids[0], tok->eos_id = ids[1], tok->pad_id = ids[2], tok->unk_id = ids[3];
    tok->sot_literal_id = strmap_get(&vocab, "<|startoftext|>", 15);
    tok->eot_literal_id = strmap_get(&vocab, "<|endoftext|>", 13);
    tok->norm = VKP_CLIP_NORM_HF;
    tok->default_pad = VKP_CLIP_PAD_HF;
    for (int k = 0; k < 4; k++) {   // distinct special strings, matched verbatim in raw text
      bool dup = false;
      for (int j = 0; j < tok->n_specials; j++) dup |= !strcmp(tok->specials[j].text, names[k]);
      if (dup) continue;
      tok->specials[tok->n_specials++] = (clip_tok_special){names[k], ids[k]};
      names[k] = NULL;
    }
  }
  for (int k = 0; k < 4; k++) free(names[k]);
  free(merges_text);
  free(ml.v);
  free(joined.v);
  strmap_free(&vocab);
  return st;
}

// ---- the entry point --------------------------------------------------------------------------

void vkp_clip_tokenizer_free(vkp_clip_tokenizer *tok) {
  if (!tok) return;
  clip_tok_merges_free(&tok->merges);
  for (int k = 0; k < tok->n_specials; k++) free(tok->specials[k].text);
  free(tok);
}

vkp_status vkp_clip_tokenizer_load(const char *path, vkp_clip_tokenizer **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "clip tokenizer: out is NULL");
  *out = NULL;
  vkp_clip_tokenizer *tok = calloc(1, sizeof *tok);
  if (!tok) return vkp_error_set(err, VKP_ERR_OOM, "clip tokenizer: out of memory");
  vkp_status st;
  struct stat sb;
  if (!path) {
    size_t n;
    const unsigned char *data = clip_tok_embedded_bpe(&n);
    strcpy(tok->source, "built-in bpe_simple_vocab_16e6.txt.gz");
    st = load_openai_bytes(tok, data, n, tok->source, err);
  } else if (stat(path, &sb) != 0) {
    st = vkp_error_set(err, errno == ENOENT ? VKP_ERR_NOT_FOUND : VKP_ERR_IO, "%s: %s", path, strerror(errno));
  } else if (S_ISDIR(sb.st_mode)) {
    char dir[4096], probe[4096];
    bool found = path_join(dir, sizeof dir, path, NULL) && path_join(probe, sizeof probe, dir, "vocab.json") &&
                 file_exists(probe);
    if (!found)   // diffusers pipelines keep it in tokenizer/
      found = path_join(dir, sizeof dir, path, "tokenizer") && path_join(probe, sizeof probe, dir, "vocab.json") &&
              file_exists(probe);
    if (!path_join(tok->source, sizeof tok->source, dir, NULL)) strcpy(tok->source + sizeof tok->source - 4, "...");
    st = found ? load_hf(tok, dir, err)
                            : vkp_error_set(err, VKP_ERR_NOT_FOUND,
                                            "%s: no CLIP tokenizer here (want vocab.json + merges.txt, in it or in "
                                            "its tokenizer/ folder)",
                                            path);
  } else {
    char *data;
    size_t n;
    if (!path_join(tok->source, sizeof tok->source, path, NULL)) strcpy(tok->source + sizeof tok->source - 4, "...");
    st = vkp_file_read_all(path, MAX_FILE_BYTES, &data, &n, err);
    if (!st) {
      st = load_openai_bytes(tok, (const unsigned char *)data, n, path, err);
      free(data);
    }
  }
  if (st) {
    vkp_clip_tokenizer_free(tok);
    return st;
  }
  *out = tok;
  return VKP_OK;
}
