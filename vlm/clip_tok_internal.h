// clip_tok_internal.h — the parts of the CLIP tokenizer (vlm/clip_tok*.c): Unicode tables and
// text passes over code-point arrays, HTML unescaping, ftfy's fixes, the pre-tokenizer split,
// byte-level BPE and file loading. Not a public header.
#ifndef CLIP_TOK_INTERNAL_H
#define CLIP_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkp_clip_tokenizer.h"
#include "vkp_status.h"
#include "vkp_vec.h"

// ---- generated tables (clip_tok_unicode_data.c, clip_tok_html_data.c) ------------------------
enum {
  CLIP_TOK_L = 1,           // regex [\p{L}]
  CLIP_TOK_N = 2,           // regex [\p{N}]
  CLIP_TOK_WS = 4,          // regex \s = Unicode White_Space (Oniguruma's \s too)
  CLIP_TOK_ND = 8,          // decimal digit (Python re's \d)
  CLIP_TOK_CASED = 16,      // Cased, as Python's final-sigma rule sees it
  CLIP_TOK_CASE_IGN = 32,   // Case_Ignorable
};
#define CLIP_TOK_WIDTH_FIRST 0xFF01u
#define CLIP_TOK_WIDTH_LAST 0xFFEFu

typedef struct clip_tok_class_range { uint32_t start; uint8_t flags; } clip_tok_class_range;
typedef struct clip_tok_pair { uint32_t from, to; } clip_tok_pair;
typedef struct clip_tok_ccc_range { uint32_t lo, hi; uint8_t ccc; } clip_tok_ccc_range;
typedef struct clip_tok_decomp { uint32_t cp; uint16_t off; uint8_t len; } clip_tok_decomp;
typedef struct clip_tok_compose_entry { uint32_t a, b, c; } clip_tok_compose_entry;
typedef struct clip_tok_entity { const char *name, *value; } clip_tok_entity;

extern const clip_tok_class_range clip_tok_class_ranges[];
extern const int clip_tok_class_count;
extern const clip_tok_pair clip_tok_lower_map[];
extern const int clip_tok_lower_count;
extern const clip_tok_ccc_range clip_tok_ccc_ranges[];
extern const int clip_tok_ccc_count;
extern const clip_tok_decomp clip_tok_decomps[];
extern const int clip_tok_decomp_count;
extern const uint32_t clip_tok_decomp_pool[];
extern const clip_tok_compose_entry clip_tok_composes[];
extern const int clip_tok_compose_count;
extern const char *const clip_tok_width_map[];
extern const clip_tok_entity clip_tok_html5[];
extern const int clip_tok_html5_count;
extern const clip_tok_entity clip_tok_html_upper[];
extern const int clip_tok_html_upper_count;

// ---- code-point arrays and Unicode passes (clip_tok_unicode.c) ------------------------------
// Every pass reads `in` and writes a new array into `out` (emptied first; in != out).
// They return VKP_OK or VKP_ERR_OOM.
typedef VKP_VEC(uint32_t) clip_cps;

// Decodes UTF-8; each byte of an invalid sequence becomes U+FFFD (never fails but for memory).
vkp_status clip_tok_utf8_decode(const char *s, size_t n, clip_cps *out);
// Appends the UTF-8 form of cps[0..n) to *bytes.
typedef VKP_VEC(char) clip_bytes;
vkp_status clip_tok_utf8_encode(const uint32_t *cps, int32_t n, clip_bytes *bytes);
vkp_status clip_tok_push(clip_cps *v, uint32_t cp);
vkp_status clip_tok_push_utf8(clip_cps *v, const char *s);   // appends the code points of s

unsigned clip_tok_class(uint32_t cp);          // CLIP_TOK_* flags
bool clip_tok_is_pyspace(uint32_t cp);         // Python str.isspace() (White_Space + U+1C..U+1F)
// str.lower(): full mapping (U+0130 -> i + U+0307); `final_sigma` applies Python's Final_Sigma
// rule to U+03A3 (Rust's char::to_lowercase, used by HF tokenizers, does not).
vkp_status clip_tok_lower(const clip_cps *in, bool final_sigma, clip_cps *out);
vkp_status clip_tok_nfc(const clip_cps *in, clip_cps *out);
bool clip_tok_cps_equal(const clip_cps *a, const clip_cps *b);

// ---- HTML character references (clip_tok_html.c) -------------------------------------------
// Windows-1252 for U+0080..U+009F (its five undefined bytes map to themselves); else c.
uint32_t clip_tok_cp1252(uint32_t c);
// Python's html.unescape (HTML5 rules: numeric references, named ones with and without ';').
vkp_status clip_tok_html_unescape(const clip_cps *in, clip_cps *out);
// ftfy's unescape_html: only `&name;` / `&#...;` forms, plus capitalised names (&EACUTE;).
vkp_status clip_tok_ftfy_unescape(const clip_cps *in, clip_cps *out);

// ---- normalisation (clip_tok_normalize.c) --------------------------------------------------
// OpenAI's simple_tokenizer: ftfy.fix_text (see clip_tok_ftfy), html.unescape twice, strip,
// whitespace runs -> ' ', strip, str.lower().
vkp_status clip_tok_normalize_openai(clip_cps *text);
// HF CLIPTokenizerFast's normalizer: NFC, \s+ -> ' ', per-character lowercase.
vkp_status clip_tok_normalize_hf(clip_cps *text);
// The deterministic part of ftfy.fix_text (everything but the mojibake heuristics).
vkp_status clip_tok_ftfy(clip_cps *text);

// ---- pre-tokenizer split (clip_tok_split.c) -------------------------------------------------
typedef enum clip_piece_kind { CLIP_PIECE_WORD, CLIP_PIECE_SOT, CLIP_PIECE_EOT } clip_piece_kind;
typedef struct clip_piece { int32_t start, len; clip_piece_kind kind; } clip_piece;
typedef VKP_VEC(clip_piece) clip_pieces;
// The split regex `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
// [^\s\p{L}\p{N}]+` over normalised text. OpenAI flavour: case-insensitive as regex.IGNORECASE
// is (s also matches U+017F; U+0345 matches no branch). HF flavour: case-sensitive, and the
// special-token matches are re-split as the ByteLevel pre-tokenizer's GPT-2 regex does
// ("<|", "endoftext", "|>"). Appends to *out.
vkp_status clip_tok_split(const clip_cps *text, vkp_clip_normalizer norm, clip_pieces *out);

// ---- byte-level BPE (clip_tok_bpe.c) ---------------------------------------------------------
// Maps (left id, right id) -> (rank, merged id); open addressing, capacity a power of two.
typedef struct clip_tok_merge { uint32_t left, right; int32_t rank, merged; } clip_tok_merge;
typedef struct clip_tok_merges {
  clip_tok_merge *slots;   // owned; left == UINT32_MAX marks an empty slot
  uint32_t cap, count;
} clip_tok_merges;
vkp_status clip_tok_merges_init(clip_tok_merges *m, uint32_t expected);
// Inserts or overwrites (a later merge of the same pair wins, as in both references).
vkp_status clip_tok_merges_put(clip_tok_merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
const clip_tok_merge *clip_tok_merges_get(const clip_tok_merges *m, int32_t left, int32_t right);
void clip_tok_merges_free(clip_tok_merges *m);

// Scratch buffers of one encode call, grown on demand; freed with clip_tok_scratch_free.
typedef struct clip_tok_scratch {
  VKP_VEC(int32_t) sym, prev, next;
  VKP_VEC(uint64_t) heap, pending;
} clip_tok_scratch;
void clip_tok_scratch_free(clip_tok_scratch *s);

// Collects ids: stores the first `cap`, counts all.
typedef struct clip_tok_sink { int32_t *ids; int cap; int64_t n; } clip_tok_sink;
void clip_tok_sink_put(clip_tok_sink *s, int32_t id);

// BPE of one pre-token (its UTF-8 bytes; the last symbol carries "</w>"): symbols start as
// byte_id[b] (byte_end_id[b] for the last byte) and the lowest-ranked adjacent pair is merged
// until none is in `merges` (ties: leftmost first). `batch`: OpenAI's order (all merges of one
// rank before the pairs they create), else HF's (one merge at a time). Symbols missing from the
// vocabulary are `unk`. Appends the ids to *sink.
vkp_status clip_tok_bpe_word(const clip_tok_merges *merges, const int32_t byte_id[256],
                             const int32_t byte_end_id[256], int32_t unk, const uint8_t *bytes,
                             size_t n, bool batch, clip_tok_scratch *scratch, clip_tok_sink *sink);

// ---- the tokenizer object and loading (clip_tokenizer.c, clip_tok_load.c) ------------------
#define CLIP_TOK_MAX_SPECIALS 4
typedef struct clip_tok_special { char *text; int32_t id; } clip_tok_special;

struct vkp_clip_tokenizer {
  vkp_clip_normalizer norm;
  vkp_clip_pad default_pad;
  int max_length;
  int32_t vocab_size, n_merges;
  int32_t bos_id, eos_id, pad_id, unk_id;
  int32_t sot_literal_id, eot_literal_id;   // ids of "<|startoftext|>" / "<|endoftext|>" in text
  int32_t byte_id[256], byte_end_id[256];   // -1: not in the vocabulary
  clip_tok_merges merges;
  clip_tok_special specials[CLIP_TOK_MAX_SPECIALS];   // HF: matched verbatim in the raw text
  int n_specials;
  char source[256];
};

// The gzip'd OpenAI merges file linked into the program (clip_tok_embed.c).
const unsigned char *clip_tok_embedded_bpe(size_t *size);

#endif
