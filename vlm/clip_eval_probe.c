// clip_eval_probe.c — linear-probe evaluation: multinomial logistic regression on frozen
// features, fitted by L-BFGS (two-loop recursion, 10 pairs, backtracking Armijo line search) in
// double on the host. Deterministic: zero start, fixed iteration order.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_clip_eval.h"

#define LBFGS_M 10

typedef struct probe {
  const float *x;
  const int32_t *y;
  const int64_t *rows;   // labelled rows
  int64_t n, d;
  int k;
  double l2;
  double *logits;        // (k) scratch
} probe;

// Objective and gradient at w (k, d + 1): mean cross-entropy + l2/2 |W|² (bias not penalised).
static double objective(const probe *p, const double *w, double *g) {
  int64_t D = p->d + 1, nw = (int64_t)p->k * D;
  memset(g, 0, (size_t)nw * sizeof *g);
  double f = 0;
  for (int64_t r = 0; r < p->n; r++) {
    const float *x = p->x + p->rows[r] * p->d;
    double mx = -INFINITY;
    for (int c = 0; c < p->k; c++) {
      const double *wc = w + c * D;
      double s = wc[p->d];
      for (int64_t j = 0; j < p->d; j++) s += wc[j] * x[j];
      p->logits[c] = s;
      if (s > mx) mx = s;
    }
    double z = 0;
    for (int c = 0; c < p->k; c++) z += exp(p->logits[c] - mx);
    double lse = mx + log(z);
    int y = p->y[p->rows[r]];
    f += lse - p->logits[y];
    for (int c = 0; c < p->k; c++) {
      double pc = exp(p->logits[c] - lse) - (c == y);
      double *gc = g + c * D;
      for (int64_t j = 0; j < p->d; j++) gc[j] += pc * x[j];
      gc[p->d] += pc;
    }
  }
  double inv = 1.0 / (double)p->n, reg = 0;
  for (int c = 0; c < p->k; c++)
    for (int64_t j = 0; j < D; j++) {
      double *gj = g + c * D + j;
      *gj *= inv;
      if (j < p->d) *gj += p->l2 * w[c * D + j], reg += w[c * D + j] * w[c * D + j];
    }
  return f * inv + 0.5 * p->l2 * reg;
}

static double vdot(const double *a, const double *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

// Top-1 / top-5 accuracy of w on the labelled rows of (x, y).
static void score(const double *w, int k, int64_t d, const float *x, const int32_t *y, int64_t n, double *top1,
                  double *top5) {
  int64_t h1 = 0, h5 = 0, m = 0;
  for (int64_t i = 0; i < n; i++) {
    if (y[i] < 0) continue;
    const float *xi = x + i * d;
    double sy = 0;
    int above = 0;
    // the true class's score, then the classes scoring at least as high (ties go against it)
    for (int pass = 0; pass < 2; pass++)
      for (int c = 0; c < k; c++) {
        const double *wc = w + c * (d + 1);
        double s = wc[d];
        for (int64_t j = 0; j < d; j++) s += wc[j] * xi[j];
        if (pass == 0 && c == y[i]) sy = s;
        if (pass == 1 && c != y[i] && s >= sy) above++;
      }
    m++, h1 += above == 0, h5 += above < 5;
  }
  *top1 = m ? (double)h1 / m : NAN, *top5 = m ? (double)h5 / m : NAN;
}

vkp_status vkp_clip_linear_probe(const float *train_x, const int32_t *train_y, int64_t n_train, const float *test_x,
                                 const int32_t *test_y, int64_t n_test, int64_t dim, int n_classes,
                                 const vkp_clip_probe_opts *opts, vkp_clip_probe_result *out, double *weights,
                                 vkp_error *err) {
  memset(out, 0, sizeof *out);
  if (n_train < 1 || n_test < 0 || dim < 1 || n_classes < 2 || !train_x || !train_y || (n_test && (!test_x || !test_y)))
    return vkp_error_set(err, VKP_ERR_INVALID, "linear probe: bad arguments");
  for (int64_t i = 0; i < n_train + n_test; i++) {
    int32_t y = i < n_train ? train_y[i] : test_y[i - n_train];
    if (y >= n_classes)
      return vkp_error_set(err, VKP_ERR_INVALID, "linear probe: label %d is not below %d classes", y, n_classes);
  }
  double l2 = opts && opts->l2 ? (opts->l2 < 0 ? 0 : opts->l2) : 1e-3;
  int max_iter = opts && opts->max_iter > 0 ? opts->max_iter : 500;
  int64_t nw = (int64_t)n_classes * (dim + 1);
  int64_t *rows = malloc((size_t)n_train * sizeof *rows);
  double *mem = calloc((size_t)(nw * (5 + 2 * LBFGS_M)) + (size_t)n_classes, sizeof *mem);
  if (!rows || !mem) {
    free(rows), free(mem);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  int64_t n = 0;
  for (int64_t i = 0; i < n_train; i++)
    if (train_y[i] >= 0) rows[n++] = i;
  if (!n) {
    free(rows), free(mem);
    return vkp_error_set(err, VKP_ERR_INVALID, "linear probe: no labelled training sample");
  }
  double *w = mem, *g = w + nw, *wn = g + nw, *gn = wn + nw, *dir = gn + nw, *S = dir + nw, *Y = S + nw * LBFGS_M;
  double rho[LBFGS_M], alpha[LBFGS_M];
  probe p = {train_x, train_y, rows, n, dim, n_classes, l2, Y + nw * LBFGS_M};
  double f = objective(&p, w, g);
  int hist = 0, head = 0, it = 0;
  for (; it < max_iter; it++) {
    double gmax = 0;
    for (int64_t i = 0; i < nw; i++) gmax = fmax(gmax, fabs(g[i]));
    if (gmax < 1e-7) break;
    // two-loop recursion: dir = -H g
    for (int64_t i = 0; i < nw; i++) dir[i] = -g[i];
    for (int h = 0; h < hist; h++) {
      int j = (head - 1 - h + LBFGS_M) % LBFGS_M;
      alpha[j] = rho[j] * vdot(S + j * nw, dir, nw);
      for (int64_t i = 0; i < nw; i++) dir[i] -= alpha[j] * Y[j * nw + i];
    }
    double gamma = 1;
    if (hist) {
      int j = (head - 1 + LBFGS_M) % LBFGS_M;
      gamma = vdot(S + j * nw, Y + j * nw, nw) / vdot(Y + j * nw, Y + j * nw, nw);
    } else {
      double gn2 = sqrt(vdot(g, g, nw));
      gamma = gn2 > 0 ? 1.0 / gn2 : 1;
    }
    for (int64_t i = 0; i < nw; i++) dir[i] *= gamma;
    for (int h = hist - 1; h >= 0; h--) {
      int j = (head - 1 - h + LBFGS_M) % LBFGS_M;
      double b = rho[j] * vdot(Y + j * nw, dir, nw);
      for (int64_t i = 0; i < nw; i++) dir[i] += S[j * nw + i] * (alpha[j] - b);
    }
    double slope = vdot(g, dir, nw);
    if (slope >= 0) {   // not a descent direction: restart from steepest descent
      hist = 0;
      double gn2 = sqrt(vdot(g, g, nw));
      for (int64_t i = 0; i < nw; i++) dir[i] = -g[i] / gn2;
      slope = vdot(g, dir, nw);
    }
    double step = 1, fn = f;
    int ls = 0;
    for (; ls < 40; ls++, step *= 0.5) {
      for (int64_t i = 0; i < nw; i++) wn[i] = w[i] + step * dir[i];
      fn = objective(&p, wn, gn);
      if (fn <= f + 1e-4 * step * slope) break;
    }
    if (ls == 40) break;   // no decrease possible: converged to precision
    double *sj = S + head * nw, *yj = Y + head * nw;
    for (int64_t i = 0; i < nw; i++) sj[i] = wn[i] - w[i], yj[i] = gn[i] - g[i];
    double sy = vdot(sj, yj, nw);
    if (sy > 1e-12) {
      rho[head] = 1.0 / sy;
      head = (head + 1) % LBFGS_M;
      if (hist < LBFGS_M) hist++;
    }
    memcpy(w, wn, (size_t)nw * sizeof *w);
    memcpy(g, gn, (size_t)nw * sizeof *g);
    double df = f - fn;
    f = fn;
    if (df <= 1e-12 * fmax(1.0, fabs(f))) {
      it++;
      break;
    }
  }
  out->train_loss = f;
  out->iterations = it;
  double t5;
  score(w, n_classes, dim, train_x, train_y, n_train, &out->train_acc, &t5);
  if (n_test) score(w, n_classes, dim, test_x, test_y, n_test, &out->test_acc, &out->test_top5);
  else out->test_acc = out->test_top5 = NAN;
  if (weights) memcpy(weights, w, (size_t)nw * sizeof *w);
  free(rows), free(mem);
  return VKP_OK;
}
