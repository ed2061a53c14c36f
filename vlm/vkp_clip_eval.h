// vkp_clip_eval.h — CLIP evaluation and embeddings: preprocessing, batched embeddings, retrieval
// metrics, zero-shot classification, linear probes, WiSE-FT weight interpolation and the
// retrieval gallery PNG. Used by `vkpeft eval` / `vkpeft embed` on CLIP folders and by the CLIP
// trainer's validation.
//
//   preprocess   CLIP's image processor as a vkp_data_transform: shorter side resized to
//                image_size, centre crop, RGB (alpha composited on white), CLIP mean/std
//   embed        L2-normalised image / text embeddings, batch by batch; a vkp_clip_embedder
//                keeps the compiled graphs (one per batch shape) for repeated calls
//   metrics      retrieval recall@1/5/10 and mean/median rank both ways (several captions per
//                image), zero-shot top-1/top-5 and per-class accuracy, linear-probe accuracy —
//                host-side, from embeddings (float in, double arithmetic)
//   wise-ft      θ = (1-α)·θ_a + α·θ_b between two checkpoints of one architecture
//   gallery      for a few captions, the top-k images in a row, the right one framed
//
// Errors: functions that can fail return vkp_status and write one line into `err` (may be NULL).
#ifndef VKP_CLIP_EVAL_H
#define VKP_CLIP_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkp_clip.h"
#include "vkp_clip_tokenizer.h"
#include "vkp_data.h"
#include "vkp_family.h"
#include "vkp_pairs.h"
#include "vkp_peft.h"
#include "vkp_png.h"

// ---- preprocessing ------------------------------------------------------------------------------

// OpenAI CLIP's normalisation (transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD).
extern const float vkp_clip_mean[3], vkp_clip_std[3];

// CLIPImageProcessor as a transform: resize so the shorter side is image_size (bilinear here,
// bicubic in transformers), centre crop image_size x image_size, 3 channels, (v/255 - mean) / std.
// No augmentation; trainers may change crop/hflip afterwards.
void vkp_clip_transform(int image_size, vkp_data_transform *t);

// The transform of a model folder: CLIP's (vkp_clip_transform) unless `aux_dir` (an adapter's
// folder, may be NULL) or else `model_dir` holds a preprocessor_config.json (CLIPImageProcessor,
// e.g. written by the CLIP trainer): then its do_center_crop, size.shortest_edge, crop_size (must
// be image_size), do_normalize, image_mean and image_std. Output is always image_size square.
// Errors: VKP_ERR_IO / VKP_ERR_FORMAT (the file; bad keys name the key), VKP_ERR_INVALID (crop_size).
vkp_status vkp_clip_transform_load(const char *model_dir, const char *aux_dir, int image_size, vkp_data_transform *t,
                                   vkp_error *err);

// Preprocesses images idx[0..n-1] of ds (idx NULL: 0..n-1) with t (3 output channels) into pixels
// (n, 3, t->out_h, t->out_w). RGBA images are composited on white first (vkp_data_rgba_to_rgb),
// grey is replicated. Errors: VKP_ERR_INVALID (index out of range, a transform without 3
// channels), VKP_ERR_OOM.
vkp_status vkp_clip_preprocess(const vkp_dataset *ds, const size_t *idx, size_t n, const vkp_data_transform *t,
                               float *pixels, vkp_error *err);

// The tokenizer for a model folder: the folder's own (vocab.json + merges.txt, or its tokenizer/
// subfolder) when it has one, else the copy of OpenAI's built into the program.
vkp_status vkp_clip_tokenizer_for_model(const char *model_dir, vkp_clip_tokenizer **out, vkp_error *err);

// ---- embeddings ---------------------------------------------------------------------------------

// Keeps compiled embedding graphs of one model: one image graph (batch x 3 x S x S) and a few text
// graphs (batch x T, T = the longest text of a call rounded up to 16, at most the model's
// positions), built on first use and reused; the last, partial batch is padded (zero images, empty
// texts) and its padding rows dropped. Weights are read from the model's buffers at every run, so
// training steps are seen; attaching, merging, unmerging adapters or changing their scale changes
// the graph structure: call vkp_clip_embedder_reset (or make a new embedder) after that.
typedef struct vkp_clip_embedder vkp_clip_embedder;

// batch <= 0: 64. The embedder borrows c (it must outlive it).
vkp_status vkp_clip_embedder_new(vkp_clip *c, int batch, vkp_clip_embedder **out, vkp_error *err);
void vkp_clip_embedder_free(vkp_clip_embedder *e);   // NULL: no-op
void vkp_clip_embedder_reset(vkp_clip_embedder *e);  // drops the compiled graphs
int vkp_clip_embed_dim(const vkp_clip *c);
vkp_clip *vkp_clip_embedder_model(const vkp_clip_embedder *e);
// The preprocessing of vkp_clip_embedder_dataset (default: vkp_clip_transform(image_size));
// its output size must be the model's image_size.
void vkp_clip_embedder_set_transform(vkp_clip_embedder *e, const vkp_data_transform *t);            // P: projection_dim, or hidden size without projection

// pixels (n, C, S, S) preprocessed -> out (n, P) image_embeds (L2-normalised).
// Errors: VKP_ERR_INVALID (no vision tower, n < 0), graph/device errors.
vkp_status vkp_clip_embedder_images(vkp_clip_embedder *e, const float *pixels, int64_t n, float *out, vkp_error *err);
// texts (n UTF-8 strings) -> out (n, P) text_embeds, tokenized with tok (the model's padding
// flavour: tok's default), truncated to the model's positions (end token kept).
vkp_status vkp_clip_embedder_texts(vkp_clip_embedder *e, const vkp_clip_tokenizer *tok, const char *const *texts,
                                   int64_t n, float *out, vkp_error *err);

// Images idx[0..n-1] of ds (idx NULL: 0..n-1) -> out (n, P): vkp_clip_preprocess'd a few batches at
// a time, then embedded. Errors: those of both.
vkp_status vkp_clip_embedder_dataset(vkp_clip_embedder *e, const vkp_dataset *ds, const size_t *idx, size_t n, float *out,
                                     vkp_error *err);

// One-shot forms (a temporary embedder: graphs compiled once per call).
vkp_status vkp_clip_embed_images(vkp_clip *c, const float *pixels, int64_t n, int batch, float *out, vkp_error *err);
vkp_status vkp_clip_embed_texts(vkp_clip *c, const vkp_clip_tokenizer *tok, const char *const *texts, int64_t n,
                                int batch, float *out, vkp_error *err);

// ---- retrieval ----------------------------------------------------------------------------------

typedef struct vkp_clip_retrieval_result {
  int64_t n_images, n_texts;
  // image -> text: an image's rank is that of its best-scoring caption: 1 + the number of other
  // images' captions scoring at least as high (a tie is not a win). recall@k = share of images
  // with rank <= k.
  double i2t_r1, i2t_r5, i2t_r10, i2t_mean_rank, i2t_median_rank;
  // text -> image: 1 + the number of other images scoring at least as high as the text's image.
  double t2i_r1, t2i_r5, t2i_r10, t2i_mean_rank, t2i_median_rank;
} vkp_clip_retrieval_result;

// Scores are dot products (embeddings L2-normalised: cosine). image_embeds (n_images, dim),
// text_embeds (n_texts, dim), text_image (n_texts): the image of each text; an image without a
// text is left out of image -> text (n_images counts only images with texts). Ranks are 1-based;
// medians of an even count average the middle two. Optional: i2t_rank (n_images; 0 for images
// without texts) and t2i_rank (n_texts) receive the ranks.
// Errors: VKP_ERR_INVALID (sizes, a text_image out of range, no texts), VKP_ERR_OOM.
vkp_status vkp_clip_retrieval(const float *image_embeds, int64_t n_images, const float *text_embeds, int64_t n_texts,
                              const int64_t *text_image, int64_t dim, vkp_clip_retrieval_result *out,
                              int64_t *i2t_rank, int64_t *t2i_rank, vkp_error *err);

// ---- zero-shot classification -------------------------------------------------------------------

// Default prompt templates ("{}" is replaced by the class name), NULL-terminated:
// "{}", "a photo of a {}.", "an emoji of {}.", "an icon of {}.", "a picture of {}.".
extern const char *const vkp_clip_default_templates[];
int vkp_clip_default_template_count(void);

// The templates the zero-shot classifier uses when none are given: "{}." when a CoOp adapter is
// attached (its learned contexts stand in front of the name), else vkp_clip_default_templates.
const char *const *vkp_clip_zero_shot_templates(const vkp_clip *c, int *n);
// Context tokens CoOp adapters insert into the text tower (sum of their n_ctx; 0 without CoOp):
// texts are tokenized to at most max_position_embeddings minus this many tokens.
int vkp_clip_coop_tokens(const vkp_clip *c);
// CoOp's `ctx_init` phrase -> cfg->ctx_init_ids (its BPE ids, no start/end token) and n_ctx (their
// count), before vkp_peft_attach. No-op for other methods, without ctx_init, or with ids given.
// Errors name `where` and the key.
vkp_status vkp_clip_coop_resolve(const vkp_clip_tokenizer *tok, vkp_peft_config *cfg, const char *where, vkp_error *err);

// Reads templates from a file: one per non-empty line (trimmed, '#' lines skipped); each must
// hold "{}" at least once. *out: one allocation holding the array and strings (free(*out)).
// Errors: VKP_ERR_IO, VKP_ERR_FORMAT (file:line: no "{}"; no templates), VKP_ERR_OOM.
vkp_status vkp_clip_templates_load(const char *path, char ***out, int *n, vkp_error *err);

// The zero-shot classifier: for each class, the text embeddings of every template filled with
// its name, averaged and L2-normalised -> class_embeds (n_classes, P). templates NULL: defaults.
// e may be NULL (a temporary embedder with batch 64).
vkp_status vkp_clip_zero_shot_classifier(vkp_clip *c, vkp_clip_embedder *e, const vkp_clip_tokenizer *tok,
                                         const char *const *class_names, int n_classes, const char *const *templates,
                                         int n_templates, float *class_embeds, vkp_error *err);

typedef struct vkp_clip_zero_shot_result {
  int64_t n;          // images scored (labels >= 0)
  int n_classes;
  double top1, top5;  // accuracy; top5 with fewer than 5 classes is 1
  double mean_per_class;   // mean of per-class accuracy over classes with images
} vkp_clip_zero_shot_result;

// Classifies image_embeds (n, dim) by the highest dot product with class_embeds (n_classes, dim);
// labels (n): the true class, < 0 = not scored. Ties go against the true class. per_class
// (n_classes, may be NULL) receives each class's top-1 accuracy (NaN when it has no image),
// pred (n, may be NULL) the predicted class.
// Errors: VKP_ERR_INVALID (sizes, a label >= n_classes, nothing scored).
vkp_status vkp_clip_zero_shot(const float *image_embeds, int64_t n, const int32_t *labels, const float *class_embeds,
                              int n_classes, int64_t dim, vkp_clip_zero_shot_result *out, double *per_class,
                              int32_t *pred, vkp_error *err);

// ---- linear probe -------------------------------------------------------------------------------

typedef struct vkp_clip_probe_opts {
  double l2;       // L2 penalty on the weights (not the biases), per sample: loss = mean CE + l2/2·|W|²;
                   // 0 = 1e-3 (negative: none)
  int max_iter;    // L-BFGS iterations; 0 = 500
} vkp_clip_probe_opts;

typedef struct vkp_clip_probe_result {
  double train_acc, test_acc, test_top5;
  double train_loss;   // final objective
  int iterations;
} vkp_clip_probe_result;

// Multinomial logistic regression on frozen features: fitted on (train_x (n_train, dim),
// train_y) by L-BFGS in double from zero weights (deterministic), scored on (test_x, test_y).
// Labels < 0 are left out. weights (n_classes, dim + 1: bias last; may be NULL) receives the fit.
// Errors: VKP_ERR_INVALID (sizes, labels out of range, no training samples), VKP_ERR_OOM.
vkp_status vkp_clip_linear_probe(const float *train_x, const int32_t *train_y, int64_t n_train, const float *test_x,
                                 const int32_t *test_y, int64_t n_test, int64_t dim, int n_classes,
                                 const vkp_clip_probe_opts *opts, vkp_clip_probe_result *out, double *weights,
                                 vkp_error *err);

// ---- WiSE-FT ------------------------------------------------------------------------------------
//
// Weight-space ensembling (Wortsman et al. 2022): θ = (1-α)·θ_zero-shot + α·θ_tuned.
// - Adapters: θ_tuned is the model with its adapters merged (weight-level deltas folded in;
//   BitFit / LN tuning / full / modules_to_save values loaded over the base), θ_zero-shot a fresh
//   load of the same folder: vkp_clip_interpolate_dir(tuned, model_dir, 1-α). For a weight-level
//   method this equals the adapter merged at scale α (vkp_adapter_set_scale + vkp_adapter_merge:
//   θ + α·ΔW); unlike scaling it also mixes selective methods and modules_to_save correctly.
//   Methods without a weight-space form (prompts, prefixes, bottleneck adapters) cannot merge and
//   are refused. `vkpeft eval --model DIR --adapter A --interpolate α`.
// - Two full checkpoints (full fine-tuning): `vkpeft eval --model ZERO_SHOT_DIR --tuned TUNED_DIR
//   --interpolate α` = vkp_clip_interpolate_dir(zero_shot, tuned_dir, α).

// Mixes tuned's base parameters into c's in place: c = (1-α)·c + α·tuned, for every base parameter
// of c (adapter parameters are left alone), matched by name (same shape). Parameters missing in
// tuned are an error. Computed in f32 on the host, stored in each parameter's dtype.
// Errors: VKP_ERR_NOT_FOUND (a parameter missing in tuned), VKP_ERR_SHAPE, VKP_ERR_OOM, device errors.
vkp_status vkp_clip_interpolate(vkp_clip *c, vkp_clip *tuned, float alpha, vkp_error *err);
// Loads the CLIP folder `tuned_dir` and mixes it into c (same towers and sizes).
vkp_status vkp_clip_interpolate_dir(vkp_clip *c, const char *tuned_dir, float alpha, vkp_error *err);

// ---- retrieval gallery --------------------------------------------------------------------------

typedef struct vkp_clip_gallery {
  const vkp_dataset *images;     // image i of the embeddings is images' image image_index[i]
  const size_t *image_index;     // (n_images) or NULL: identity
  const float *image_embeds;     // (n_images, dim)
  int64_t n_images;
  const float *text_embeds;      // (n_texts, dim)
  const char *const *texts;      // (n_texts)
  const int64_t *text_image;     // (n_texts) the right image of each text
  int64_t n_texts, dim;
  const int64_t *queries;        // (n_queries) text indices, or NULL: n_queries texts evenly spaced
  int n_queries;                 // 0 = 6
  int top_k;                     // images per row; 0 = 5
  int cell;                      // pixels per image; 0 = 64
  const char *title;             // NULL = "Text -> image retrieval (top-5, right image framed green)"
} vkp_clip_gallery;

// One row per query: the caption (with the right image's rank) above its top-k images, best first;
// the right image framed green when it is among them, the others grey. New RGB image.
// Errors: VKP_ERR_INVALID, VKP_ERR_OOM.
vkp_status vkp_clip_gallery_render(const vkp_clip_gallery *g, vkp_image **out, vkp_error *err);
// The same written to a PNG file (atomically).
vkp_status vkp_clip_gallery_png(const vkp_clip_gallery *g, const char *path, vkp_error *err);

// ---- evaluation of an image–text set (the trainer's validation, `vkpeft eval`) --------------------

typedef struct vkp_clip_eval_opts {
  vkp_clip_embedder *embedder;   // reused when given (the trainer keeps one); NULL: temporary
  int batch;                     // temporary embedder's batch; 0 = 64
  const vkp_data_transform *transform;   // temporary embedder's preprocessing; NULL = CLIP's
  bool zero_shot;                // also zero-shot over the names of the evaluated images
  const char *const *templates;  // NULL = vkp_clip_default_templates
  int n_templates;
  const char *gallery_path;      // write the retrieval gallery PNG here; NULL = none
  int gallery_queries;           // 0 = 6
} vkp_clip_eval_opts;

typedef struct vkp_clip_eval_result {
  vkp_clip_retrieval_result retrieval;   // every caption of every image is a text
  bool has_zero_shot;                    // zero_shot asked and the images have >= 2 names
  vkp_clip_zero_shot_result zero_shot;   // classes: the distinct names among the evaluated images
} vkp_clip_eval_result;

// Evaluates images idx[0..n-1] of p (idx NULL: all) with their captions.
vkp_status vkp_clip_eval_pairs(vkp_clip *c, const vkp_clip_tokenizer *tok, const vkp_pairs *p, const size_t *idx,
                               size_t n, const vkp_clip_eval_opts *opts, vkp_clip_eval_result *out, vkp_error *err);

// ---- command-line support (`vkpeft eval`, `vkpeft embed`) -----------------------------------------

// A data spec: SOURCE[:SPLIT].
//   SOURCE  a named pair set (emoji-noto, emoji-emojione, icons-paper, icons-oxygen, icons-tango), a
//           caption folder (images with .txt captions, or kohya `N_name` sub-folders), a CSV/JSONL
//           pair list (a header / keys naming a `caption` or `text` column), or a labelled image set:
//           a named one (digits, fashion-mnist, mnist; its split is train/test, default test, or train
//           where there is no test), a class-per-folder image folder, a path,label list
//   SPLIT   all (default) | val | train, optionally :FRACTION[:SEED] (default 0.1, seed 0):
//           pairs split by key (vkp_pairs_split), labelled images stratified (vkp_dataset_split)
typedef struct vkp_clip_eval_data {
  char spec[4096];
  vkp_pairs *pairs;          // image–text pairs (names: zero-shot classes), or NULL
  vkp_dataset *labelled;     // a labelled image set, or NULL
  bool split;                // idx / other_idx are the two sides of a split
  size_t *idx, n;            // the selected images (idx NULL: all)
  size_t *other_idx, n_other;// the other side (a linear probe's training images)
  char other_named[4200];    // named labelled sets: the probe's training set spec ("fashion-mnist:train")
} vkp_clip_eval_data;

vkp_status vkp_clip_eval_data_load(const char *spec, vkp_clip_eval_data *out, vkp_error *err);
void vkp_clip_eval_data_free(vkp_clip_eval_data *d);
static inline const vkp_dataset *vkp_clip_eval_data_images(const vkp_clip_eval_data *d) {
  return d->pairs ? d->pairs->images : d->labelled;
}
static inline size_t vkp_clip_eval_data_count(const vkp_clip_eval_data *d) {
  return d->idx ? d->n : vkp_clip_eval_data_images(d)->count;
}

// `vkpeft eval` on a CLIP model (vkp_family_clip's eval hook): loads req->data, applies WiSE-FT
// with req->tuned, prints retrieval (pairs), zero-shot (names / classes), the linear probe
// (req->probe) and writes the gallery (req->gallery), as a table or JSON (req->json).
vkp_status vkp_clip_eval_command(vkp_clip *c, const vkp_eval_request *req, vkp_error *err);

#endif
