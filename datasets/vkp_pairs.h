// vkp_pairs.h — image–text pair data for vkpeft (CLIP contrastive training, diffusion LoRA
// training): readers, pairing across sets, splits, and a loader of (pixels, caption) batches.
// Built on vkp_data.h: the images are a vkp_dataset, decoded, resized, augmented and batched by the
// same code as the classification data. docs/DATA.md describes the formats and the named sets.
//
//   readers   an image folder with a caption file beside each image (kohya's layout, with its
//             `N_name` repeat folders), CSV / JSONL lists of `path,caption`, and named real sets
//             installed from Debian: emoji-noto, emoji-emojione, icons-paper, icons-oxygen,
//             icons-tango (vkp_pairs_load_named)
//   pairs     every image has one or more captions, a key (its content's identity: images with
//             equal keys show the same thing, across sets too), an optional name (a class for
//             zero-shot classification) and a repeat count (sampling weight)
//   match     the images two sets share by key (Noto vs EmojiOne: the same emoji in two styles)
//   split     deterministic, by key: a key is held out or not whatever the set, so the same emoji
//             is held out of both styles, and no key is on both sides
//   loader    vkp_loader batches with a caption index per sample, repeats honoured
//
// Errors: every function that can fail returns vkp_status and writes one line naming the file
// (and line) into `err` (NULL = no message wanted). `_free(NULL)` is a no-op.
#ifndef VKP_PAIRS_H
#define VKP_PAIRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkp_data.h"
#include "vkp_status.h"

// An image–text pair set. All pointers are owned (vkp_pairs_free). Image i is images->...[i]:
// uint8 HWC pixels, all images with the same channel count, 4 (RGBA: alpha kept, e.g. as a
// diffusion loss mask; 255 where the file has none) unless loaded with channels 3.
typedef struct vkp_pairs {
  vkp_dataset *images;   // pixels, sizes and source paths. labels[i] = name id of image i, or -1
                         // when it has no name; class_names = the distinct names (n_classes of
                         // them, ids in strcmp order; 0 when no image has a name)
  char **keys;           // (count) content identity, never NULL: emoji code points ("1f600",
                         // "1f468-1f469-1f466": lower-case hex, U+FE0F and U+200D left out), an
                         // icon's name, a list's name column, else the image's path
  size_t *caption_start; // (count + 1) image i's captions are captions[caption_start[i] ..
                         // caption_start[i + 1] - 1], at least one each
  char **captions;       // (caption_start[count]) UTF-8, trimmed, never empty
  int32_t *repeats;      // (count) times image i is drawn per epoch (kohya's N_name), >= 1
} vkp_pairs;

static inline size_t vkp_pairs_count(const vkp_pairs *p) { return p->images->count; }
static inline size_t vkp_pairs_n_captions(const vkp_pairs *p, size_t i) {
  return p->caption_start[i + 1] - p->caption_start[i];
}
// Caption k (< vkp_pairs_n_captions) of image i.
static inline const char *vkp_pairs_caption(const vkp_pairs *p, size_t i, size_t k) {
  return p->captions[p->caption_start[i] + k];
}
// The name of image i, or NULL.
static inline const char *vkp_pairs_name(const vkp_pairs *p, size_t i) {
  int32_t c = p->images->labels[i];
  return c >= 0 ? p->images->class_names[c] : NULL;
}

void vkp_pairs_free(vkp_pairs *p);

// Options of the readers. Zero-initialised = defaults.
typedef struct vkp_pairs_opts {
  int channels;          // 4 (RGBA) or 3 (RGB); 0 = 4
  vkp_alpha_mode alpha;  // channels 3: how alpha is flattened (default: onto white)
  int width, height;     // both > 0: every image resized (antialiased bilinear) at load; 0 = native
                         // sizes, except the named sets, which load at their own size (below)
  bool skip_bad;         // an unreadable or corrupt image, or an image without a caption: warn
                         // and leave it out instead of failing
  int n_threads;         // decoding threads; 0 = one per CPU (at most 8)
  void (*warn)(void *user, const char *msg);  // warnings; NULL = one line on stderr each
  void *warn_user;
} vkp_pairs_opts;

// ---- readers -------------------------------------------------------------------------------------

// A caption folder, kohya's layout (sd-scripts' DreamBooth-style datasets):
//   root/10_sks dog/a.png + root/10_sks dog/a.txt   image a, captions from a.txt, 10 repeats
//   root/b.jpg + root/b.txt                          image b, 1 repeat (a flat folder works too)
// Sub-folders named `N_name` (N a positive integer) hold images repeated N times per epoch, named
// `name` (kohya's class tokens; the name is the image's name, not its caption); their own
// sub-folders are not searched (as kohya). Other sub-folders are ignored with a warning, as kohya
// does; hidden entries (starting with '.') are ignored. Images: .png .jpg .jpeg .bmp .gif .tga
// .ppm .pgm .pnm (any case), sorted by path. Each image needs a caption file `<stem>.txt` beside
// it (`caption_ext` replaces ".txt", e.g. ".caption", kohya's default). A caption file holds one
// caption per non-empty line (trimmed; a UTF-8 byte-order mark is skipped): kohya uses only the
// first line unless --enable_wildcard, when it draws one line per step; the loader does either
// (vkp_loader_opts.first_caption). Key: the image's path under root without its extension.
// Errors: VKP_ERR_IO (root unreadable, an image or caption file unreadable), VKP_ERR_FORMAT (a
// caption file missing or empty, a corrupt image, no images: the message names the file),
// VKP_ERR_OOM.
vkp_status vkp_pairs_load_folder(const char *root, const char *caption_ext,
                                 const vkp_pairs_opts *opts, vkp_pairs **out, vkp_error *err);

// A list of (image path, caption) pairs, paths relative to the list's folder unless absolute.
// CSV: RFC 4180 quoting (a caption may hold commas, quotes "" and line breaks), blank lines
// skipped; a header row naming the columns is optional: path `path`/`file`/`file_name`/
// `filename`/`image`, caption `caption`/`text`, name `name`/`label`/`class` (case-insensitive);
// without one the columns are path, caption[, name]. JSONL (a .jsonl/.ndjson/.json extension or a
// first character '{'; one object per line, as Hugging Face imagefolder's metadata.jsonl):
// path from "file_name", "path", "image" or "file"; caption from "text" or "caption", a string or
// an array of strings (several captions); name from "name", "label" or "class" (optional).
// Rows naming the same image path are one image with the captions of every row, in list order.
// Key: the name when there is one, else the path as written in the list.
// Errors: VKP_ERR_IO, VKP_ERR_FORMAT (file:line: a missing or empty field, a line that is not a
// JSON object, unterminated quotes; bad images; an empty list), VKP_ERR_OOM.
vkp_status vkp_pairs_load_list(const char *list_path, const vkp_pairs_opts *opts,
                               vkp_pairs **out, vkp_error *err);

// ---- installed real sets -------------------------------------------------------------------------
//
//   name            package             images                        names / captions
//   emoji-noto      ruby-tanuki-emoji   Noto emoji, 72x72 RGBA PNG    emoji-test.txt (Unicode 13.1)
//                                       (flags 128x128, resized)
//   emoji-emojione  ruby-gemojione      EmojiOne emoji, 64x64 PNG     config/index.json "name"
//   icons-paper     paper-icon-theme    Paper/48x48, 48x48 PNG        file name
//   icons-oxygen    oxygen-icon-theme   oxygen/base/48x48, 48x48 PNG  file name
//   icons-tango     tango-icon-theme    Tango/32x32, 32x32 PNG        file name
//
// Captions are the names lower-cased ("grinning face with big eyes", "folder music": an icon's
// file stem with '-' and '_' as spaces). Emoji keys are code points (the two emoji sets share
// them); an icon's key is its name (icon themes share freedesktop names). Icons: symbolic links
// are aliases of one image (their names become extra captions after the first), PNGs whose size
// is not the folder's (animation strips, mislinked sizes) and SVG-only icons are left out.
// The images load at the size in the table unless opts asks for another. docs/DATA.md has the
// counts and rules. $VKPEFT_DATA_DIR/<name>/ is searched first (emoji: the PNGs and emoji-test.txt
// or index.json in that folder; icons: the PNGs below it).

typedef struct vkp_pairs_files {
  char images[VKP_DATA_PATH_MAX];  // the folder of PNGs
  char names[VKP_DATA_PATH_MAX];   // emoji-test.txt or index.json; "" for icons (file names)
} vkp_pairs_files;

// Errors: VKP_ERR_NOT_FOUND (unknown name; not installed: the message says what to install).
vkp_status vkp_pairs_locate(const char *name, vkp_pairs_files *out, vkp_error *err);
vkp_status vkp_pairs_load_named(const char *name, const vkp_pairs_opts *opts, vkp_pairs **out,
                                vkp_error *err);
// The i-th known named set, NULL past the end.
const char *vkp_pairs_known_name(int i);

// The emoji readers, on files given directly (vkp_pairs_load_named calls them).
// Noto: `dir` holds emoji_u<code points>.png (U+FE0F left out, '_' between code points) and flags
// as <two letters>.png; each image named by the first line of emoji-test.txt whose code points
// give its file name. Images without a line (newer skin-tone variants) are left out.
vkp_status vkp_pairs_load_noto(const char *dir, const char *emoji_test_txt,
                               const vkp_pairs_opts *opts, vkp_pairs **out, vkp_error *err);
// EmojiOne: index.json maps short names to {"unicode": "1f600", "name": ...}; the image is
// dir/<unicode as in the index>.png.
vkp_status vkp_pairs_load_emojione(const char *dir, const char *index_json,
                                   const vkp_pairs_opts *opts, vkp_pairs **out, vkp_error *err);
// An icon theme's size folder (searched recursively): PNGs of exactly size x size.
vkp_status vkp_pairs_load_icons(const char *dir, int size, const vkp_pairs_opts *opts,
                                vkp_pairs **out, vkp_error *err);

// ---- pairing, subsets, names ---------------------------------------------------------------------

// The images of a and b with equal keys: ia[k] (ascending) and ib[k] for k < *n. Where b has a
// key more than once, its first image is taken. *ia and *ib are new arrays (free()), NULL when
// *n is 0. Errors: VKP_ERR_INVALID, VKP_ERR_OOM.
vkp_status vkp_pairs_match(const vkp_pairs *a, const vkp_pairs *b, size_t **ia, size_t **ib,
                           size_t *n, vkp_error *err);

// Gives the images of dst that share a key with src the name and captions of src's image (copies;
// name ids are recomputed); the others keep theirs. The two emoji sets name many emoji
// differently (EmojiOne's names are older Unicode names, some cut at 50 characters, and the same
// words can mean another emoji), so training on both styles with one vocabulary calls
// vkp_pairs_adopt_names(emojione, noto). Errors: VKP_ERR_INVALID, VKP_ERR_OOM (dst unchanged).
vkp_status vkp_pairs_adopt_names(vkp_pairs *dst, const vkp_pairs *src, vkp_error *err);

// A new set of images idx[0..n-1] of p (copies, in that order), with their captions, keys,
// repeats and the same name list. Errors: VKP_ERR_INVALID (an index out of range), VKP_ERR_OOM.
vkp_status vkp_pairs_subset(const vkp_pairs *p, const size_t *idx, size_t n, vkp_pairs **out,
                            vkp_error *err);

// Composites RGBA pixels onto a background (RGB consumers of RGBA data, e.g. CLIP's image tower):
// VKP_ALPHA_WHITE (the default), rgb = (v * a + 255 * (255 - a)) / 255 rounded, as an emoji or
// icon looks on a page; VKP_ALPHA_BLACK premultiplies; VKP_ALPHA_DROP keeps the colour.
// rgba holds 4 * npix bytes, rgb gets 3 * npix.
void vkp_data_rgba_to_rgb(const uint8_t *rgba, size_t npix, vkp_alpha_mode mode, uint8_t *rgb);
// The same for grey+alpha (channels 2, grey spread to R, G, B) or RGBA (channels 4) pixels.
void vkp_data_alpha_to_rgb(const uint8_t *px, size_t npix, int channels, vkp_alpha_mode mode, uint8_t *rgb);
// A copy of p with 3-channel images: RGBA composited with `mode` (vkp_data_rgba_to_rgb), RGB
// copied. Errors: VKP_ERR_INVALID, VKP_ERR_OOM.
vkp_status vkp_pairs_flatten(const vkp_pairs *p, vkp_alpha_mode mode, vkp_pairs **out,
                             vkp_error *err);

// ---- split ---------------------------------------------------------------------------------------

// Splits the images into train and held-out lists by key: a key is held out when
// u(seed, key) < val_fraction, u a uniform number in [0, 1) hashed from the seed and the key's
// bytes. All images of a key go to the same side, and a key's side depends on nothing but the
// seed and the key, so sets that share keys (the two emoji styles) hold out the same keys. The
// held-out share is val_fraction of the keys on average (not exactly); when 0 < val_fraction < 1
// and there are two keys or more, neither side is left empty (the key with the smallest u is held
// out, or the one with the largest trained). Both lists ascend; either may be empty (NULL, 0).
// Errors: VKP_ERR_INVALID (val_fraction outside [0, 1]), VKP_ERR_OOM.
vkp_status vkp_pairs_split(const vkp_pairs *p, double val_fraction, uint64_t seed, size_t **train,
                           size_t *n_train, size_t **val, size_t *n_val, vkp_error *err);

// ---- loader --------------------------------------------------------------------------------------

// vkp_loader_new over p->images with p's repeats and captions (opts->repeats / caption_start are
// set from p): each batch's `captions` gives the caption index (into p->captions) of every sample.
// opts->indices (e.g. the train side of vkp_pairs_split) selects the images; each is drawn
// repeats[i] times an epoch. Errors: those of vkp_loader_new.
vkp_status vkp_pairs_loader_new(const vkp_pairs *p, const vkp_data_transform *t,
                                const vkp_loader_opts *opts, vkp_loader **out, vkp_error *err);

#endif
