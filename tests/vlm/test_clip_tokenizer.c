// test_clip_tokenizer.c — CLIP's BPE tokenizer against OpenAI's clip.tokenize and HF's
// CLIPTokenizerFast: every case of ../shared/fixtures/clip/tokenizer_cases.json from the HF model
// folder, from the built-in merges file and from vlm/data's copy; texts where the two references
// differ (HTML entities, final sigma, special tokens, ligatures, fullwidth forms, curly quotes,
// terminal escapes); truncation and padding; bad files; and `vkpeft tokenize`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cjson/cJSON.h>

#include "vkp_clip_tokenizer.h"
#include "vkp_fileio.h"
#include "vkp_test.h"

#define CTX VKP_CLIP_CONTEXT_LENGTH
#define SOT 49406
#define EOT 49407
#define SHIPPED_GZ VKP_SOURCE_DIR "/vlm/data/bpe_simple_vocab_16e6.txt.gz"

static vkp_clip_tokenizer *load_ok(const char *path) {
  vkp_error err = {0};
  vkp_clip_tokenizer *tok = NULL;
  vkp_status st = vkp_clip_tokenizer_load(path, &tok, &err);
  if (st) fail_msg("load %s: %s: %s", path ? path : "(built-in)", vkp_status_name(st), err.msg);
  return tok;
}

// ---- the fixture cases ------------------------------------------------------------------------

static cJSON *load_cases(void) {
  const char *path = vkp_fixture_path("clip/tokenizer_cases.json");
  char *text;
  size_t len;
  vkp_error err = {0};
  if (vkp_file_read_all(path, 1 << 26, &text, &len, &err)) fail_msg("fixture missing: %s", err.msg);
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root) fail_msg("%s: not valid JSON", path);
  return root;
}

static const cJSON *case_field(const cJSON *root, const char *key, int i) {
  const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, key), i);
  if (!a) fail_msg("tokenizer_cases.json: %s[%d] missing", key, i);
  return a;
}

// Asserts got[0..n) equals the JSON integer array `want` (of length n).
static void expect_ids(const char *what, const char *text, const int32_t *got, int n, const cJSON *want) {
  if (cJSON_GetArraySize(want) != n) fail_msg("%s \"%s\": fixture has %d ids, want %d", what, text, cJSON_GetArraySize(want), n);
  for (int i = 0; i < n; i++) {
    int w = cJSON_GetArrayItem(want, i)->valueint;
    if (got[i] != w) fail_msg("%s \"%s\": id %d is %d, the reference has %d", what, text, i, got[i], w);
  }
}

static void check_fixture_cases(const char *path, vkp_clip_normalizer norm, vkp_clip_pad default_pad) {
  vkp_clip_tokenizer *tok = load_ok(path);
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  assert_int_equal(info.vocab_size, 49408);
  assert_int_equal(info.n_merges, 48894);
  assert_int_equal(info.bos_id, SOT);
  assert_int_equal(info.eos_id, EOT);
  assert_int_equal(info.pad_id, EOT);
  assert_int_equal(info.max_length, CTX);
  assert_int_equal(info.normalizer, norm);
  assert_int_equal(info.default_pad, default_pad);
  cJSON *root = load_cases();
  int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "texts"));
  if (n < 10) fail_msg("tokenizer_cases.json: %d texts", n);
  for (int i = 0; i < n; i++) {
    const char *text = case_field(root, "texts", i)->valuestring;
    int32_t ids[CTX], mask[CTX];
    int n_tokens = 0;
    assert_int_equal(vkp_clip_tokenize(tok, text, CTX, VKP_CLIP_PAD_OPENAI, ids, mask, &n_tokens), VKP_OK);
    expect_ids("openai", text, ids, CTX, case_field(root, "openai_input_ids", i));
    expect_ids("mask", text, mask, CTX, case_field(root, "hf_attention_mask", i));
    assert_int_equal(ids[0], SOT);
    assert_int_equal(ids[n_tokens - 1], EOT);   // the pooling position
    assert_int_equal(vkp_clip_tokenize(tok, text, 0, VKP_CLIP_PAD_HF, ids, mask, &n_tokens), VKP_OK);   // 0: 77
    expect_ids("hf", text, ids, CTX, case_field(root, "hf_input_ids", i));
    expect_ids("mask", text, mask, CTX, case_field(root, "hf_attention_mask", i));
  }
  cJSON_Delete(root);
  vkp_clip_tokenizer_free(tok);
}

static void test_fixture_cases_hf_folder(void **state) {
  (void)state;
  check_fixture_cases(vkp_fixture_path("clip/model"), VKP_CLIP_NORM_HF, VKP_CLIP_PAD_HF);
}

static void test_fixture_cases_builtin_merges(void **state) {
  (void)state;
  check_fixture_cases(NULL, VKP_CLIP_NORM_OPENAI, VKP_CLIP_PAD_OPENAI);
  check_fixture_cases(SHIPPED_GZ, VKP_CLIP_NORM_OPENAI, VKP_CLIP_PAD_OPENAI);
}

// ---- where the two references part ways ------------------------------------------------------

// BPE ids (no start/end tokens) from clip.simple_tokenizer.SimpleTokenizer (ftfy 6.3, regex) and
// from HF tokenizers with the fixture's tokenizer.json; -1 ends a list.
static const struct {
  const char *text;
  int32_t openai[32], hf[32];
} edge_cases[] = {
    {"Fish &amp; Chips &lt;3",   // html.unescape (OpenAI only)
     {2759, 261, 8855, 283, 274, -1},
     {2759, 261, 6259, 282, 8855, 261, 3333, 282, 274, -1}},
    {"&amp;amp;lt;b&amp;amp;gt; x",   // ftfy unescapes until nothing changes, then twice more
     {283, 321, 285, 343, -1},
     {261, 6259, 282, 6259, 282, 3333, 282, 321, 261, 6259, 282, 6259, 282, 4725, 282, 343, -1}},
    {"\316\237\316\224\316\237\316\243 \316\237\316\224\316\243.",   // ΟΔΟΣ ΟΔΣ.: Python's final sigma
     {138, 123, 138, 112, 138, 123, 139, 480, 138, 123, 138, 112, 139, 480, 269, -1},
     {138, 123, 138, 112, 138, 123, 139, 481, 138, 123, 138, 112, 139, 481, 269, -1}},
    {"<|endoftext|> x <|ENDOFTEXT|>'s",   // HF: special tokens only verbatim, before lowercasing
     {EOT, 343, EOT, 568, -1},
     {EOT, 343, 27, 347, 40786, 4160, 91, 285, 568, -1}},
    {"\357\254\201ne \357\254\202our",   // ligatures (ftfy)
     {3797, 18592, -1},
     {171, 105, 223, 1422, 171, 105, 224, 581, -1}},
    {"\357\274\254\357\274\257\357\274\265\357\274\244\343\200\200\357\274\256\357\274\257\357\274\251\357\274\263"
     "\357\274\245\357\274\263",   // fullwidth "LOUD NOISES" (ftfy)
     {7464, 31575, -1},
     {171, 121, 234, 171, 121, 237, 171, 121, 243, 171, 121, 482, 171, 121, 236, 171, 121, 237, 171, 121, 231,
      171, 121, 241, 171, 121, 227, 171, 121, 497, -1}},
    {"It\342\200\231s \342\200\234quoted\342\200\235",   // curly quotes (ftfy)
     {585, 568, 257, 27706, 257, -1},
     {585, 728, 503, 338, 728, 506, 27706, 728, 507, -1}},
    {"\033[31mred\033[0m text",   // terminal escapes (ftfy)
     {736, 4160, -1},
     {215, 314, 274, 272, 76, 736, 215, 314, 271, 332, 4160, -1}},
    {"cafe\314\201 \304\260stanbul",   // NFC composes e + U+0301; İ lowercases to i + U+0307
     {15304, 328, 16384, 11231, -1},
     {15304, 328, 16384, 11231, -1}},
    {"tab\tnew\nline\302\240nbsp\r\nend",   // whitespace, no-break space
     {14724, 686, 1148, 6459, 4393, 806, -1},
     {14724, 686, 1148, 6459, 4393, 806, -1}},
    {"\347\214\253 \355\225\234\352\265\255\354\226\264 \331\241\331\242\331\243 \302\275",   // 猫 한국어 ١٢٣ ½
     {163, 234, 360, 15197, 250, 31871, 255, 31625, 368, 149, 350, 149, 351, 149, 352, 33613, -1},
     {163, 234, 360, 15197, 250, 31871, 255, 31625, 368, 149, 350, 149, 351, 149, 352, 33613, -1}},
    {"emoji \360\237\230\200\360\237\207\272\360\237\207\270",
     {16327, 12832, 5688, -1},
     {16327, 12832, 5688, -1}},
};

static void expect_encoding(vkp_clip_tokenizer *tok, const char *text, const int32_t *want, const char *what) {
  int32_t got[64];
  int n = 0, n_want = 0;
  while (want[n_want] >= 0) n_want++;
  assert_int_equal(vkp_clip_encode(tok, text, got, 64, &n), VKP_OK);
  if (n != n_want) fail_msg("%s \"%s\": %d ids, the reference has %d", what, text, n, n_want);
  for (int i = 0; i < n; i++)
    if (got[i] != want[i]) fail_msg("%s \"%s\": id %d is %d, the reference has %d", what, text, i, got[i], want[i]);
}

static void test_reference_differences(void **state) {
  (void)state;
  vkp_clip_tokenizer *openai = load_ok(NULL), *hf = load_ok(vkp_fixture_path("clip/model"));
  for (size_t i = 0; i < sizeof edge_cases / sizeof *edge_cases; i++) {
    expect_encoding(openai, edge_cases[i].text, edge_cases[i].openai, "openai");
    expect_encoding(hf, edge_cases[i].text, edge_cases[i].hf, "hf");
  }
  vkp_clip_tokenizer_free(openai);
  vkp_clip_tokenizer_free(hf);
}

// ---- truncation, padding, arguments -------------------------------------------------------------

static void test_truncation_and_padding(void **state) {
  (void)state;
  vkp_clip_tokenizer *tok = load_ok(NULL);
  const char *text = "a photo of a cat on a mat";   // 8 BPE ids
  int32_t ids[16], mask[16], all[8];
  int n = 0, total = 0;
  assert_int_equal(vkp_clip_encode(tok, text, all, 8, &total), VKP_OK);
  assert_int_equal(total, 8);
  assert_int_equal(vkp_clip_encode(tok, text, all, 3, &total), VKP_OK);   // counts past cap
  assert_int_equal(total, 8);
  assert_int_equal(vkp_clip_encode(tok, text, NULL, 0, &total), VKP_OK);
  assert_int_equal(total, 8);

  assert_int_equal(vkp_clip_tokenize(tok, text, 6, VKP_CLIP_PAD_HF, ids, mask, &n), VKP_OK);
  assert_int_equal(n, 6);
  int32_t want6[6] = {SOT, all[0], all[1], all[2], all[3], EOT};
  assert_memory_equal(ids, want6, sizeof want6);
  for (int i = 0; i < 6; i++) assert_int_equal(mask[i], 1);

  assert_int_equal(vkp_clip_tokenize(tok, text, 16, VKP_CLIP_PAD_OPENAI, ids, NULL, &n), VKP_OK);
  assert_int_equal(n, 10);
  assert_int_equal(ids[9], EOT);
  for (int i = 10; i < 16; i++) assert_int_equal(ids[i], 0);
  assert_int_equal(vkp_clip_tokenize(tok, text, 16, VKP_CLIP_PAD_HF, ids, mask, NULL), VKP_OK);
  for (int i = 10; i < 16; i++) assert_int_equal(ids[i], EOT), assert_int_equal(mask[i], 0);

  assert_int_equal(vkp_clip_tokenize(tok, text, 2, VKP_CLIP_PAD_HF, ids, mask, &n), VKP_OK);
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], SOT);
  assert_int_equal(ids[1], EOT);
  assert_int_equal(vkp_clip_tokenize(tok, text, 1, VKP_CLIP_PAD_HF, ids, mask, &n), VKP_ERR_INVALID);
  assert_int_equal(vkp_clip_tokenize(tok, text, 8, (vkp_clip_pad)7, ids, mask, &n), VKP_ERR_INVALID);
  assert_int_equal(vkp_clip_tokenize(tok, NULL, 8, VKP_CLIP_PAD_HF, ids, mask, &n), VKP_ERR_INVALID);
  assert_int_equal(vkp_clip_tokenize(NULL, text, 8, VKP_CLIP_PAD_HF, ids, mask, &n), VKP_ERR_INVALID);
  assert_int_equal(vkp_clip_encode(tok, text, NULL, 4, &total), VKP_ERR_INVALID);

  // Invalid UTF-8 reads as U+FFFD (as bytes.decode(errors="replace")): no failure.
  assert_int_equal(vkp_clip_encode(tok, "caf\xC3 \xFF\xE2\x82", all, 8, &total), VKP_OK);
  int32_t fffd[8];
  int n_fffd = 0;
  assert_int_equal(vkp_clip_encode(tok, "caf\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD", fffd, 8, &n_fffd), VKP_OK);
  assert_int_equal(total, n_fffd);
  assert_memory_equal(all, fffd, (size_t)n_fffd * sizeof *all);
  vkp_clip_tokenizer_free(tok);
  vkp_clip_tokenizer_free(NULL);
}

// ---- folders and bad files ----------------------------------------------------------------------

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f)) fail_msg("cannot write %s", path);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static void write_gz(const char *path, const char *text) {
  gzFile f = gzopen(path, "wb");
  if (!f || gzwrite(f, text, (unsigned)strlen(text)) != (int)strlen(text) || gzclose(f) != Z_OK)
    fail_msg("cannot write %s", path);
}

static void mkdir_ok(const char *path) {
  if (mkdir(path, 0755)) fail_msg("mkdir %s failed", path);
}

// Loading must fail with `status` and a message holding `needle` (and the file's name).
static void expect_load_error(const char *path, vkp_status status, const char *needle) {
  vkp_error err = {0};
  vkp_clip_tokenizer *tok = (vkp_clip_tokenizer *)1;
  vkp_status st = vkp_clip_tokenizer_load(path, &tok, &err);
  if (st != status || tok || !strstr(err.msg, needle))
    fail_msg("load %s: %s \"%s\" (want %s with \"%s\")", path, vkp_status_name(st), err.msg, vkp_status_name(status),
             needle);
}

static void test_diffusers_layout(void **state) {
  char dir[300], sub[320], path[400];
  vkp_test_dir_path(state, "pipeline", dir, sizeof dir);
  mkdir_ok(dir);
  snprintf(sub, sizeof sub, "%s/tokenizer", dir);
  mkdir_ok(sub);
  snprintf(path, sizeof path, "%s/vocab.json", sub);
  vkp_test_copy_file(vkp_fixture_path("clip/model/vocab.json"), path);
  snprintf(path, sizeof path, "%s/merges.txt", sub);
  vkp_test_copy_file(vkp_fixture_path("clip/model/merges.txt"), path);
  vkp_clip_tokenizer *tok = load_ok(dir);
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  assert_string_equal(info.source, sub);
  assert_int_equal(info.normalizer, VKP_CLIP_NORM_HF);
  assert_int_equal(info.eos_id, EOT);   // defaults without tokenizer_config.json
  int32_t ids[CTX];
  int n;
  assert_int_equal(vkp_clip_tokenize(tok, "A Photo of a DOG!", CTX, VKP_CLIP_PAD_HF, ids, NULL, &n), VKP_OK);
  int32_t want[] = {SOT, 320, 1125, 539, 320, 1929, 256, EOT, EOT};
  assert_memory_equal(ids, want, sizeof want);
  vkp_clip_tokenizer_free(tok);
}

// A made-up HF tokenizer: any vocabulary and merges work, unknown symbols become unk_token.
static void test_small_hf_folder(void **state) {
  char dir[300], path[400];
  vkp_test_dir_path(state, "tiny", dir, sizeof dir);
  mkdir_ok(dir);
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  write_text(path, "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"b</w>\": 3, \"ab</w>\": 4, \"[S]\": 5, \"[E]\": 6, \"[U]\": 7}");
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  write_text(path, "#version: 0.2\r\na b</w>\r\n");
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  write_text(path, "{\"bos_token\": \"[S]\", \"eos_token\": {\"content\": \"[E]\"}, \"pad_token\": \"[E]\", "
                   "\"unk_token\": \"[U]\", \"model_max_length\": 8}");
  vkp_clip_tokenizer *tok = load_ok(dir);
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  assert_int_equal(info.max_length, 8);
  assert_int_equal(info.vocab_size, 8);
  assert_int_equal(info.n_merges, 1);
  int32_t ids[8], mask[8];
  int n;
  assert_int_equal(vkp_clip_tokenize(tok, "AB b c[E]", 0, VKP_CLIP_PAD_HF, ids, mask, &n), VKP_OK);
  int32_t want[8] = {5, 4, 3, 7, 6, 6, 6, 6};   // [S] ab</w> b</w> c</w>=unk [E](verbatim) [E] pad pad
  assert_memory_equal(ids, want, sizeof want);
  assert_int_equal(n, 6);
  vkp_clip_tokenizer_free(tok);

  // The same folder, broken one file at a time (content NULL: the file removed; OK: loads again).
  static const struct {
    const char *file, *content;
    vkp_status status;
    const char *needle;
  } steps[] = {
      {"tokenizer_config.json", "{\"bos_token\": 5}", VKP_ERR_FORMAT, "tokenizer_config.json: bos_token"},
      {"tokenizer_config.json", "{\"bos_token\": \"[nope]\"}", VKP_ERR_FORMAT, "\"[nope]\" is not in it"},
      {"tokenizer_config.json", NULL, VKP_ERR_FORMAT, "\"<|startoftext|>\" is not in it"},   // CLIP's defaults
      {"tokenizer_config.json", "{\"bos_token\": \"[S]\", \"eos_token\": \"[E]\", \"unk_token\": \"[U]\", "
                                "\"pad_token\": \"[E]\"}", VKP_OK, NULL},
      {"merges.txt", "#version: 0.2\na b</w> c\n", VKP_ERR_FORMAT, "merges.txt: line 2: a merge needs two symbols, found 3"},
      {"merges.txt", "#version: 0.2\na\n", VKP_ERR_FORMAT, "line 2: a merge needs two symbols, found 1"},
      {"merges.txt", "#version: 0.2\na b\n", VKP_ERR_FORMAT, "merges.txt: line 2: the merge result \"ab\" is not in vocab.json"},
      {"merges.txt", "#version: 0.2\na z\n", VKP_ERR_FORMAT, "symbol \"z\" is not in vocab.json"},
      {"merges.txt", "#version: 0.2\n\na b</w>\n", VKP_ERR_FORMAT, "line 2 is blank"},
      {"merges.txt", NULL, VKP_ERR_IO, "merges.txt"},
      {"merges.txt", "#version: 0.2\na b</w>\n\n\n", VKP_OK, NULL},   // blank lines may end the file
      {"vocab.json", "{\"a\": 0, \"b\": 1,", VKP_ERR_FORMAT, "vocab.json: not valid JSON"},
      {"vocab.json", "[\"a\", \"b\"]", VKP_ERR_FORMAT, "vocab.json: not a JSON object"},
      {"vocab.json", "{\"a\": 0.5}", VKP_ERR_FORMAT, "token \"a\" has no valid id"},
  };
  for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, steps[i].file);
    if (steps[i].content) write_text(path, steps[i].content);
    else remove(path);
    if (steps[i].status == VKP_OK) vkp_clip_tokenizer_free(load_ok(dir));
    else expect_load_error(dir, steps[i].status, steps[i].needle);
  }
}

static void test_bad_files(void **state) {
  char path[400], dir[300];
  expect_load_error("/nonexistent/bpe_simple_vocab_16e6.txt.gz", VKP_ERR_NOT_FOUND,
                    "/nonexistent/bpe_simple_vocab_16e6.txt.gz");
  vkp_test_dir_path(state, "empty", dir, sizeof dir);
  mkdir_ok(dir);
  expect_load_error(dir, VKP_ERR_NOT_FOUND, "no CLIP tokenizer here");

  vkp_test_dir_path(state, "notes.txt", path, sizeof path);
  write_text(path, "hello world\nthis is not BPE\n");
  expect_load_error(path, VKP_ERR_FORMAT, "notes.txt: not a CLIP BPE merges file");
  vkp_test_dir_path(state, "image.png", path, sizeof path);
  write_file(path, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
  expect_load_error(path, VKP_ERR_FORMAT, "image.png: not a CLIP BPE merges file");
  vkp_test_dir_path(state, "notes.txt.gz", path, sizeof path);
  write_gz(path, "just some text\nin a gzip file\n");
  expect_load_error(path, VKP_ERR_FORMAT, "notes.txt.gz: not a CLIP BPE merges file");
  write_gz(path, "#version: 0.2\ni n\nt h e\n");
  expect_load_error(path, VKP_ERR_FORMAT, "notes.txt.gz: line 3: a merge needs two symbols, found 3");
  write_gz(path, "#version: 0.2\n");
  expect_load_error(path, VKP_ERR_FORMAT, "holds no merges");

  // The real file cut short, and with a corrupted byte.
  char *gz;
  size_t n;
  vkp_error err = {0};
  if (vkp_file_read_all(SHIPPED_GZ, 1 << 26, &gz, &n, &err)) fail_msg("%s", err.msg);
  vkp_test_dir_path(state, "cut.txt.gz", path, sizeof path);
  write_file(path, gz, n / 2);
  expect_load_error(path, VKP_ERR_FORMAT, "cut.txt.gz: gzip data is truncated");
  write_file(path, gz, 12);
  expect_load_error(path, VKP_ERR_FORMAT, "cut.txt.gz: gzip data is truncated");
  vkp_test_dir_path(state, "bad.txt.gz", path, sizeof path);
  for (size_t i = n / 3; i < n / 3 + 64; i++) gz[i] ^= 0x5A;
  write_file(path, gz, n);
  expect_load_error(path, VKP_ERR_FORMAT, "bad.txt.gz: gzip data is corrupt");
  free(gz);
}

// ---- vkpeft tokenize ---------------------------------------------------------------------------

static char out_text[1 << 16], err_text[4096];

static void read_into(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
  buf[n] = '\0';
  if (f) fclose(f);
}

// Runs `vkpeft tokenize <args>`; stdout in out_text, stderr in err_text; returns the exit status.
static int run_tokenize(void **state, const char *args) {
  char out[400], errp[400], cmd[8192];
  vkp_test_dir_path(state, "stdout.txt", out, sizeof out);
  vkp_test_dir_path(state, "stderr.txt", errp, sizeof errp);
  snprintf(cmd, sizeof cmd, "%s/vkpeft tokenize %s > %s 2> %s", VKP_BINARY_DIR, args, out, errp);
  int rc = system(cmd);
  read_into(out, out_text, sizeof out_text);
  read_into(errp, err_text, sizeof err_text);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// 'text' for the shell.
static void shell_quote(char *buf, size_t cap, const char *text) {
  size_t o = 0;
  buf[o++] = '\'';
  for (const char *p = text; *p && o + 6 < cap; p++) {
    if (*p == '\'') memcpy(buf + o, "'\\''", 4), o += 4;
    else buf[o++] = *p;
  }
  buf[o++] = '\'';
  buf[o] = '\0';
}

static void test_cli(void **state) {
  struct stat sb;
  if (stat(VKP_BINARY_DIR "/vkpeft", &sb)) fail_msg("%s/vkpeft not built", VKP_BINARY_DIR);
  cJSON *root = load_cases();
  int n_cases = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "texts"));
  // Every fixture text in one call, with the built-in (OpenAI) and the folder's (HF) tokenizer.
  static char args[1 << 14];
  for (int pass = 0; pass < 3; pass++) {
    size_t o = (size_t)snprintf(args, sizeof args, "%s",
                                pass == 0 ? "" : pass == 1 ? "--model " VKP_FIXTURES_DIR "/clip/model"
                                                           : "--pad hf --max-length 77 --");
    for (int i = 0; i < n_cases; i++) {
      char q[2048];
      shell_quote(q, sizeof q, case_field(root, "texts", i)->valuestring);
      o += (size_t)snprintf(args + o, sizeof args - o, " %s", q);
    }
    int rc = run_tokenize(state, args);
    if (rc) fail_msg("vkpeft tokenize %s: exit %d\n%s", args, rc, err_text);
    const char *key = pass == 0 ? "openai_input_ids" : "hf_input_ids";
    char *line = out_text;
    for (int i = 0; i < n_cases; i++) {
      char *eol = strchr(line, '\n');
      if (!eol) fail_msg("vkpeft tokenize: %d lines for %d texts:\n%s", i, n_cases, out_text);
      *eol = '\0';
      cJSON *j = cJSON_Parse(line);
      if (!j) fail_msg("vkpeft tokenize: line %d is not JSON: %s", i + 1, line);
      const char *text = case_field(root, "texts", i)->valuestring;
      assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "text")->valuestring, text);
      const cJSON *got = cJSON_GetObjectItemCaseSensitive(j, "input_ids");
      const cJSON *mask = cJSON_GetObjectItemCaseSensitive(j, "attention_mask");
      int32_t ids[CTX], m[CTX];
      if (cJSON_GetArraySize(got) != CTX || cJSON_GetArraySize(mask) != CTX) fail_msg("line %d: not 77 ids", i + 1);
      for (int k = 0; k < CTX; k++) ids[k] = cJSON_GetArrayItem(got, k)->valueint, m[k] = cJSON_GetArrayItem(mask, k)->valueint;
      expect_ids(key, text, ids, CTX, case_field(root, key, i));
      expect_ids("attention_mask", text, m, CTX, case_field(root, "hf_attention_mask", i));
      cJSON_Delete(j);
      line = eol + 1;
    }
    // The long fixture text is cut to 77 tokens: said on stderr.
    assert_non_null(strstr(err_text, "truncated to 77"));
  }
  cJSON_Delete(root);

  assert_int_equal(run_tokenize(state, "--max-length 4 --pad openai 'a photo of a cat'"), 0);
  assert_string_equal(out_text, "{\"text\": \"a photo of a cat\", \"input_ids\": [49406, 320, 1125, 49407], "
                                "\"attention_mask\": [1, 1, 1, 1]}\n");
  assert_int_equal(run_tokenize(state, "--help"), 0);
  assert_non_null(strstr(out_text, "openai for OpenAI's file"));

  // Bad input: one line naming the problem, exit status 2, nothing on stdout.
  static const struct { const char *args, *needle; } bad[] = {
      {"", "no TEXT given"},
      {"--pad zeros x", "--pad must be 'openai' or 'hf'"},
      {"--max-length 1 x", "--max-length must be an integer"},
      {"--max-length 7x x", "--max-length must be an integer"},
      {"--model", "missing value for '--model'"},
      {"--frobnicate x", "unknown option '--frobnicate'"},
      {"--model /nonexistent/tok x", "vkpeft tokenize: /nonexistent/tok: No such file or directory"},
      {"--model " VKP_SOURCE_DIR "/README.md x", "README.md: not a CLIP BPE merges file"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = run_tokenize(state, bad[i].args);
    if (rc != 2 || !strstr(err_text, bad[i].needle) || out_text[0])
      fail_msg("vkpeft tokenize %s: exit %d (want 2), stderr:\n%s\nstdout:\n%s\n(want stderr to contain '%s')",
               bad[i].args, rc, err_text, out_text, bad[i].needle);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixture_cases_hf_folder),
      cmocka_unit_test(test_fixture_cases_builtin_merges),
      cmocka_unit_test(test_reference_differences),
      cmocka_unit_test(test_truncation_and_padding),
      cmocka_unit_test_setup_teardown(test_diffusers_layout, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_small_hf_folder, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_bad_files, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_cli, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
