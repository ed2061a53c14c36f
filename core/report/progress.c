// progress.c — terminal progress bar / plain progress lines (see vkp_progress.h).
#include "vkp_progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define RATE_SAMPLE_S 0.25  // rates are sampled over at least this long
#define RATE_TAU_S 8.0      // time constant of the rate's moving average

struct vkp_progress {
  vkp_progress_opts o;  // copy; label and unit point into the owned copies below
  char *label, *unit;   // owned
  FILE *out;
  bool tty, utf8, finished, drawn;
  int width;
  double t0, last_draw;
  // latest values
  int64_t step, items;
  double loss;
  char extra[128];
  // rate estimation
  double rs_t;           // time of the last rate sample
  int64_t rs_step, rs_items;
  double step_rate, item_rate;  // per second, moving averages (0 = no estimate yet)
};

static double mono_clock(void *user) {
  (void)user;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(const vkp_progress *p) { return p->o.clock(p->o.clock_user); }

static bool locale_is_utf8(void) {
  const char *vars[3] = {"LC_ALL", "LC_CTYPE", "LANG"};
  for (int i = 0; i < 3; i++) {
    const char *v = getenv(vars[i]);
    if (v && v[0]) return strcasestr(v, "utf-8") || strcasestr(v, "utf8");
  }
  return false;
}

vkp_progress *vkp_progress_new(const vkp_progress_opts *opts) {
  vkp_progress *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  if (opts) p->o = *opts;
  p->label = p->o.label ? strdup(p->o.label) : NULL;
  p->unit = strdup(p->o.unit ? p->o.unit : "img");
  if ((p->o.label && !p->label) || !p->unit) {
    free(p->label);
    free(p->unit);
    free(p);
    return NULL;
  }
  p->o.label = p->label;
  p->o.unit = p->unit;
  if (!p->o.clock) p->o.clock = mono_clock;
  if (p->o.redraw_interval <= 0) p->o.redraw_interval = 0.1;
  if (p->o.log_interval <= 0) p->o.log_interval = 10.0;
  p->out = p->o.out ? p->o.out : stderr;
  if (p->o.tty >= 0) {
    p->tty = p->o.tty > 0;
  } else {
    const char *term = getenv("TERM");
    p->tty = isatty(fileno(p->out)) && !(term && strcmp(term, "dumb") == 0);
  }
  p->utf8 = !p->o.ascii && locale_is_utf8();
  p->width = p->o.width;
  if (p->width <= 0 && p->tty) {
    struct winsize ws;
    if (ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) p->width = ws.ws_col;
  }
  if (p->width <= 0) {
    const char *cols = getenv("COLUMNS");
    p->width = cols ? atoi(cols) : 0;
  }
  if (p->width <= 0) p->width = 80;
  p->loss = NAN;
  p->t0 = now(p);
  p->rs_t = p->t0;
  p->last_draw = -INFINITY;
  return p;
}

void vkp_progress_format_duration(double s, char *buf, size_t size) {
  if (!buf || size == 0) return;
  if (!isfinite(s) || s < 0) {
    snprintf(buf, size, "--:--");
    return;
  }
  long long t = (long long)floor(s + 0.5);
  long long d = t / 86400, h = (t / 3600) % 24, m = (t / 60) % 60, sec = t % 60;
  if (d > 0)
    snprintf(buf, size, "%lldd %02lld:%02lld", d, h, m);
  else if (h > 0)
    snprintf(buf, size, "%lld:%02lld:%02lld", h, m, sec);
  else
    snprintf(buf, size, "%lld:%02lld", m, sec);
}

static void format_rate(double r, char *buf, size_t size) {
  if (r >= 100)
    snprintf(buf, size, "%.0f", r);
  else if (r >= 10)
    snprintf(buf, size, "%.1f", r);
  else
    snprintf(buf, size, "%.2f", r);
}

// "812 img/s", or steps: "6.51 it/s" / "2.40 s/it" (slow steps read better as seconds each).
static void rate_text(const vkp_progress *p, double step_rate, double item_rate, char *buf,
                      size_t size) {
  char num[32];
  if (p->items > 0 && item_rate > 0) {
    format_rate(item_rate, num, sizeof num);
    snprintf(buf, size, "%s %s/s", num, p->unit);
  } else if (step_rate >= 1) {
    format_rate(step_rate, num, sizeof num);
    snprintf(buf, size, "%s it/s", num);
  } else if (step_rate > 0) {
    format_rate(1 / step_rate, num, sizeof num);
    snprintf(buf, size, "%s s/it", num);
  } else {
    snprintf(buf, size, "? %s/s", p->items > 0 ? p->unit : "it");
  }
}

static double eta_of(const vkp_progress *p) {
  if (p->o.total <= 0 || p->step_rate <= 0) return NAN;
  return (double)(p->o.total - p->step) / p->step_rate;
}

// The bar, `cols` columns wide, for fraction f.
static void bar_text(const vkp_progress *p, double f, int cols, char *buf, size_t size) {
  static const char *eighths[8] = {"", "\u258F", "\u258E", "\u258D",
                                   "\u258C", "\u258B", "\u258A", "\u2589"};
  size_t n = 0;
  f = f < 0 ? 0 : f > 1 ? 1 : f;
  int units = (int)floor(f * cols * 8);
  int full = units / 8, part = units % 8;
  buf[n++] = '|';
  for (int i = 0; i < cols && n + 4 < size; i++) {
    const char *s;
    if (i < full)
      s = p->utf8 ? "\u2588" : "#";
    else if (i == full && part)
      s = p->utf8 ? eighths[part] : ".";
    else
      s = p->utf8 ? " " : ".";
    size_t l = strlen(s);
    memcpy(buf + n, s, l);
    n += l;
  }
  if (n + 2 < size) buf[n++] = '|';
  buf[n] = '\0';
}

// Display columns of UTF-8 text (every code point is one column here).
static int columns(const char *s) {
  int c = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) c++;
  return c;
}

static void draw_tty(vkp_progress *p, double t, bool final) {
  char pre[96] = "", counts[64], pct[16] = "", loss[48] = "", rate[48], times[48];
  char el[24], eta[24];
  if (p->label) snprintf(pre, sizeof pre, "%s ", p->label);
  if (p->o.total > 0) {
    snprintf(counts, sizeof counts, "%lld/%lld", (long long)p->step, (long long)p->o.total);
    snprintf(pct, sizeof pct, "%3.0f%%", 100.0 * (double)p->step / (double)p->o.total);
  } else {
    snprintf(counts, sizeof counts, "step %lld", (long long)p->step);
  }
  if (isfinite(p->loss)) snprintf(loss, sizeof loss, "loss %.4g", p->loss);
  double elapsed = t - p->t0;
  if (final && elapsed > 0)
    rate_text(p, p->step / elapsed, p->items / elapsed, rate, sizeof rate);
  else
    rate_text(p, p->step_rate, p->item_rate, rate, sizeof rate);
  vkp_progress_format_duration(elapsed, el, sizeof el);
  if (p->o.total > 0 && !final) {
    vkp_progress_format_duration(eta_of(p), eta, sizeof eta);
    snprintf(times, sizeof times, "%s<%s", el, eta);
  } else {
    snprintf(times, sizeof times, "%s", el);
  }
  // Assemble the parts after the bar, then give the bar what is left of the width.
  char tail[512];
  snprintf(tail, sizeof tail, " %s%s%s%s%s  %s  %s%s%s", counts, pct[0] ? "  " : "", pct,
           loss[0] ? "  " : "", loss, rate, times, p->extra[0] ? "  " : "", p->extra);
  int room = p->width - 1 - columns(pre) - columns(tail) - 2;
  char bar[8 * 64 + 8] = "";
  if (p->o.total > 0 && room >= 10)
    bar_text(p, (double)p->step / (double)p->o.total, room > 40 ? 40 : room, bar, sizeof bar);
  char line[1024];
  snprintf(line, sizeof line, "%s%s%s", pre, bar, tail);
  // Never wrap: cut to the terminal width (a wrapped line cannot be redrawn with \r).
  int cols = 0;
  size_t i = 0;
  for (; line[i]; i++) {
    if (((unsigned char)line[i] & 0xC0) != 0x80 && ++cols > p->width - 1) break;
  }
  line[i] = '\0';
  fprintf(p->out, "\r%s\x1b[K%s", line, final ? "\n" : "");
  fflush(p->out);
  p->drawn = !final;
}

static void draw_plain(vkp_progress *p, double t, bool final) {
  char counts[64], loss[48] = "", rate[48], el[24], eta[40] = "";
  double elapsed = t - p->t0;
  if (p->o.total > 0)
    snprintf(counts, sizeof counts, "step %lld/%lld (%.1f%%)", (long long)p->step,
             (long long)p->o.total, 100.0 * (double)p->step / (double)p->o.total);
  else
    snprintf(counts, sizeof counts, "step %lld", (long long)p->step);
  if (isfinite(p->loss)) snprintf(loss, sizeof loss, "  loss %.4g", p->loss);
  vkp_progress_format_duration(elapsed, el, sizeof el);
  if (final) {
    rate_text(p, elapsed > 0 ? p->step / elapsed : 0, elapsed > 0 ? p->items / elapsed : 0, rate,
              sizeof rate);
    fprintf(p->out, "%s%sdone: %s in %s (%s)%s%s%s\n", p->label ? p->label : "",
            p->label ? ": " : "", counts, el, rate, loss, p->extra[0] ? "  " : "", p->extra);
  } else {
    rate_text(p, p->step_rate, p->item_rate, rate, sizeof rate);
    if (p->o.total > 0) {
      char e[24];
      vkp_progress_format_duration(eta_of(p), e, sizeof e);
      snprintf(eta, sizeof eta, "  eta %s", e);
    }
    fprintf(p->out, "%s%s%s%s  %s  elapsed %s%s%s%s\n", p->label ? p->label : "",
            p->label ? ": " : "", counts, loss, rate, el, eta, p->extra[0] ? "  " : "", p->extra);
  }
  fflush(p->out);
}

vkp_progress *vkp_progress_new_train(int64_t total, int64_t step) {
  vkp_progress_opts po = {.label = "train", .total = total, .unit = "img", .out = stdout, .tty = -1};
  vkp_progress *p = vkp_progress_new(&po);
  vkp_progress_update(p, step, 0, NAN, NULL);
  return p;
}

void vkp_progress_update(vkp_progress *p, int64_t step, int64_t items, double loss,
                         const char *extra) {
  if (!p || p->finished) return;
  double t = now(p);
  p->step = step;
  p->items = items;
  if (isfinite(loss)) p->loss = loss;
  snprintf(p->extra, sizeof p->extra, "%s", extra ? extra : "");
  // Rate: moving average of per-interval rates, weighted by the interval's length.
  double dt = t - p->rs_t;
  if (dt >= RATE_SAMPLE_S && step >= p->rs_step) {
    double sr = (double)(step - p->rs_step) / dt, ir = (double)(items - p->rs_items) / dt;
    if (p->step_rate <= 0) {
      p->step_rate = sr;
      p->item_rate = ir;
    } else {
      double a = 1 - exp(-dt / RATE_TAU_S);
      p->step_rate += a * (sr - p->step_rate);
      p->item_rate += a * (ir - p->item_rate);
    }
    p->rs_t = t;
    p->rs_step = step;
    p->rs_items = items;
  }
  double interval = p->tty ? p->o.redraw_interval : p->o.log_interval;
  bool first = p->last_draw == -INFINITY;
  if (!first && t - p->last_draw < interval) return;
  p->last_draw = t;
  if (p->tty)
    draw_tty(p, t, false);
  else
    draw_plain(p, t, false);
}

void vkp_progress_print(vkp_progress *p, const char *fmt, ...) {
  if (!p || !fmt) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t n = strlen(msg);
  bool nl = n > 0 && msg[n - 1] == '\n';
  if (p->tty && p->drawn) fputs("\r\x1b[K", p->out);
  fprintf(p->out, "%s%s", msg, nl ? "" : "\n");
  if (p->tty && p->drawn && !p->finished) draw_tty(p, now(p), false);
  fflush(p->out);
}

void vkp_progress_finish(vkp_progress *p) {
  if (!p || p->finished) return;
  double t = now(p);
  if (p->tty)
    draw_tty(p, t, true);
  else
    draw_plain(p, t, true);
  p->finished = true;
}

void vkp_progress_free(vkp_progress *p) {
  if (!p) return;
  vkp_progress_finish(p);
  free(p->label);
  free(p->unit);
  free(p);
}
