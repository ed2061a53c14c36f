// vkp_report.h — report.html: one self-contained page that shows a run.
//
// The page has no external resources: CSS is inline and images are embedded as base64 "data:"
// URIs, so the file can be mailed, archived or opened from any folder. Trainers (vision, vlm,
// diffusion) build it from pieces, in the order they should appear:
//
//   vkp_report *r = vkp_report_new("ViT-S/16 + LoRA r=8 on Fashion-MNIST", "runs/lora8");
//   vkp_report_add_section(r, "Summary", err);
//   vkp_report_add_kv(r, keys, values, n, err);            // final/best metrics, params, memory
//   vkp_report_add_section(r, "Training curves", err);
//   vkp_report_add_image(r, "runs/lora8/plots/loss.png", "Training loss", err);
//   vkp_report_add_image(r, "runs/lora8/plots/accuracy.png", "Accuracy", err);
//   vkp_report_add_section(r, "Per-class results", err);
//   vkp_report_add_table(r, NULL, header, 4, cells, n_classes, err);
//   vkp_report_add_json(r, "Configuration", config_json_text, err);
//   vkp_report_write(r, "runs/lora8/report.html", err);    // atomic
//   vkp_report_free(r);
//
// Every string given is HTML-escaped; nothing passed in is interpreted as markup. Consecutive
// images form a responsive grid (two per row on a wide screen).
#ifndef VKP_REPORT_H
#define VKP_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "vkp_status.h"

typedef struct vkp_report vkp_report;

// A new empty report with a page title and an optional subtitle line (run directory, date, ...;
// NULL = none). Returns NULL only when out of memory; the add functions then report VKP_ERR_INVALID.
vkp_report *vkp_report_new(const char *title, const char *subtitle);
void vkp_report_free(vkp_report *r);  // NULL is a no-op

// A section heading; the following items belong to it.
vkp_status vkp_report_add_section(vkp_report *r, const char *heading, vkp_error *err);

// A paragraph of plain text ('\n' starts a new line).
vkp_status vkp_report_add_text(vkp_report *r, const char *text, vkp_error *err);

// A two-column key/value table (summary: final and best metrics, trainable parameters, peak
// memory, throughput, ...).
vkp_status vkp_report_add_kv(vkp_report *r, const char *const *keys, const char *const *values,
                             int n, vkp_error *err);

// The run rows every trainer's summary shows, appended to a key/value table: trainable
// parameters (with their share of `total`), total parameters, training steps, training time,
// throughput (`rate_unit`: "images/s", "pairs/s"), peak device memory, training graph arena.
// Writes keys[0..VKP_REPORT_RUN_ROWS) and vals[0..VKP_REPORT_RUN_ROWS) (64 bytes each).
#define VKP_REPORT_RUN_ROWS 7
typedef struct vkp_report_run {
  int64_t trainable_params, total_params, steps;
  double seconds, rate;
  const char *rate_unit;
  uint64_t peak_device_bytes, arena_bytes;
} vkp_report_run;
void vkp_report_run_rows(const vkp_report_run *run, const char **keys, char (*vals)[64]);

// A table: `header` has n_cols strings (NULL = no header row); `cells` holds n_rows * n_cols
// strings, row-major (a NULL cell is empty). Numeric columns are right-aligned. caption may be NULL.
vkp_status vkp_report_add_table(vkp_report *r, const char *caption, const char *const *header,
                                int n_cols, const char *const *cells, int n_rows, vkp_error *err);

// A list of links, one per line: hrefs[i] a path relative to the page (files of the run
// directory; bytes outside [A-Za-z0-9-._~/] are percent-encoded), shown as labels[i] (NULL or a
// NULL entry: the path), then notes[i] (may be NULL).
// The page stays self-contained: nothing linked is loaded with it.
vkp_status vkp_report_add_links(vkp_report *r, const char *const *hrefs, const char *const *labels,
                               const char *const *notes, int n, vkp_error *err);

// Embeds the PNG file at png_path (read now) with an optional caption. A missing or non-PNG file
// is an error (VKP_ERR_IO / VKP_ERR_FORMAT naming the file) and leaves the report unchanged.
vkp_status vkp_report_add_image(vkp_report *r, const char *png_path, const char *caption,
                                vkp_error *err);

// Embeds PNG bytes held in memory (e.g. from vkp_png_encode).
vkp_status vkp_report_add_png(vkp_report *r, const void *png, size_t len, const char *caption,
                              vkp_error *err);

// A JSON document (the resolved config.json), pretty-printed with 2-space indents in a
// collapsible block. Text that does not parse is shown as given.
vkp_status vkp_report_add_json(vkp_report *r, const char *heading, const char *json,
                               vkp_error *err);

// Writes the page to `path` atomically (temp file, fsync, rename). Errors: VKP_ERR_IO, VKP_ERR_OOM.
vkp_status vkp_report_write(const vkp_report *r, const char *path, vkp_error *err);

// The page as a new NUL-terminated string (caller frees with free()); *len (may be NULL) its
// length. Errors: VKP_ERR_OOM.
vkp_status vkp_report_render(const vkp_report *r, char **html, size_t *len, vkp_error *err);

// Base64 (RFC 4648, with padding) of data into a new NUL-terminated string (free()); NULL when
// out of memory.
char *vkp_base64_encode(const void *data, size_t len);

#endif
