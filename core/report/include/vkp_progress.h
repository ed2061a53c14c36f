// vkp_progress.h — progress display for long work (training steps, evaluation, generation).
//
// On a terminal: one line redrawn in place (\r, clear to end of line) at most every
// `redraw_interval` seconds:
//   train  [██████████▍             ]  1200/5000  24%  loss 0.4132  812 img/s  00:41<02:10
// Otherwise (a log file, a pipe, CI): a plain line every `log_interval` seconds and at the end:
//   train: step 1200/5000 (24.0%)  loss 0.4132  812 img/s  elapsed 0:41  eta 2:10
// Rates and the ETA come from an exponential moving average of recent progress, so they settle
// quickly after warm-up steps and follow real changes in speed.
#ifndef VKP_PROGRESS_H
#define VKP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct vkp_progress vkp_progress;

typedef struct vkp_progress_opts {
  const char *label;        // e.g. "train", "eval"; NULL = none
  int64_t total;            // steps expected; <= 0 = unknown (no bar, percentage or ETA)
  const char *unit;         // what `items` counts, for the rate: "img" (default), "tok", ...
  FILE *out;                // NULL = stderr
  int tty;                  // -1 = decide with isatty(out) (and $TERM != "dumb"), 0 = plain lines,
                            // 1 = redraw in place
  int width;                // terminal columns; 0 = ask the terminal, then $COLUMNS, then 80
  double redraw_interval;   // seconds between redraws on a terminal; 0 = 0.1
  double log_interval;      // seconds between plain lines; 0 = 10
  bool ascii;               // bar drawn with '#' and '.' (default: Unicode blocks when the locale
                            // is UTF-8)
  // Clock in seconds (monotonic); NULL = CLOCK_MONOTONIC. Tests pass a fake one.
  double (*clock)(void *user);
  void *clock_user;
} vkp_progress_opts;

// Starts a progress display (the clock starts now). Returns NULL only when out of memory; every
// function below accepts NULL and then does nothing, so callers need no checks.
vkp_progress *vkp_progress_new(const vkp_progress_opts *opts);

// A trainer's bar on stdout ("train", images per second), already showing `step` of `total` steps
// (a resumed run starts where it left off). NULL only when out of memory.
vkp_progress *vkp_progress_new_train(int64_t total, int64_t step);

// Reports progress: `step` steps done of total, `items` processed so far in total (images,
// tokens; 0 when not counted), the latest loss (NaN = none) and optional extra text shown after
// it (e.g. "acc 91.2%"; copied). Draws when the redraw/log interval has passed.
void vkp_progress_update(vkp_progress *p, int64_t step, int64_t items, double loss,
                         const char *extra);

// Prints a line of text (e.g. a validation result) without garbling the bar: on a terminal the
// bar is cleared, the text printed, and the bar redrawn below it. A trailing newline is added when
// missing.
void vkp_progress_print(vkp_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Draws the final state (a terminal line ends with a newline; plain output gets a last line with
// the totals and average rate). Later updates are ignored.
void vkp_progress_finish(vkp_progress *p);

// Finishes (if not finished) and frees; NULL is a no-op.
void vkp_progress_free(vkp_progress *p);

// Formats a duration as "M:SS", "H:MM:SS" or "Dd HH:MM" ("--:--" when negative or not finite).
void vkp_progress_format_duration(double seconds, char *buf, size_t size);

#endif
