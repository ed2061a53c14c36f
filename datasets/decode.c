// decode.c — decodes a list of image files (PNG, JPEG, BMP, ... via stb_image) into a dataset,
// in parallel: a first pass reads every header (size, channels) so the pixel buffer is allocated
// once, a second decodes each image straight into its place.
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb/stb_image.h>

#include "data_internal.h"
#include "vkp_data.h"
#include "vkp_png.h"

// Per image, the size its header declares is checked before anything is decoded (decompression
// bombs: a small PNG may declare 16384 x 16384 and cost 1 GiB per decoding thread): the limit of
// vkp_image_check_size (vkp_png.h; VKPEFT_MAX_IMAGE_PIXELS raises it).

typedef struct file_state {
  int w, h, comp;       // from the header
  vkp_status st;        // VKP_OK, VKP_ERR_IO or VKP_ERR_FORMAT
  int err_no;           // errno of an open failure
  const char *reason;   // stb_image's reason (static string)
  int too_big;          // the header declares more than the limits
  int keep;             // still in the dataset
} file_state;

typedef struct decode_job {
  char **paths;
  file_state *fs;
  size_t *order;        // phase 2: kept file -> its position in paths
  vkp_dataset *ds;      // phase 2 target
  const vkp_data_load_opts *opts;
  int fixed_w, fixed_h; // load-time resize target (0: native)
  atomic_size_t next;
  size_t n;
  int phase;
} decode_job;

// RGBA -> `channels` (1, 3, 4) with the alpha mode (files without alpha come with alpha 255).
void vkp_data_convert_rgba(const uint8_t *rgba, size_t npix, int channels, vkp_alpha_mode mode,
                           uint8_t *out) {
  for (size_t p = 0; p < npix; p++) {
    const uint8_t *s = rgba + 4 * p;
    if (channels == 4) {
      memcpy(out + 4 * p, s, 4);
      continue;
    }
    unsigned a = s[3], v[3] = {s[0], s[1], s[2]};
    if (a != 255 && mode != VKP_ALPHA_DROP)
      for (int k = 0; k < 3; k++)
        v[k] = mode == VKP_ALPHA_WHITE ? (v[k] * a + 255u * (255u - a) + 127u) / 255u
                                       : (v[k] * a + 127u) / 255u;
    if (channels == 3) {
      out[3 * p] = (uint8_t)v[0];
      out[3 * p + 1] = (uint8_t)v[1];
      out[3 * p + 2] = (uint8_t)v[2];
    } else {
      out[p] = (uint8_t)((77u * v[0] + 150u * v[1] + 29u * v[2] + 128u) >> 8);
    }
  }
}

// stb_image 2.27 (Debian's libstb) trusts a JPEG's tables (stb_image 2.28 checks them): a Huffman
// table of more than 256 symbols is written past its end, and a scan that uses a Huffman or
// quantization table the file never defined, or an image component that no scan codes, decodes from
// uninitialised memory (fuzz_image found both; the second gave different pixels on every decode of
// one file). A baseline scan decodes all 64 coefficients with its AC table even when its spectral
// selection says 0..0 (fuzz_image: a 16x9 file whose chroma AC table was never defined). So JPEG
// files are checked for these before stb_image reads them. Markers are followed by their lengths up
// to the first scan, then found by scanning (0xFF, then a byte other than 0x00, 0xFF or a restart
// marker), as a decoder finds them between scans. Returns what is wrong, or NULL; the file is
// rewound either way.
static const char *jpeg_check(FILE *fp) {
  const char *bad = NULL;
  unsigned huff = 0, quant = 0, scanned = 0;   // Huffman tables (bit class * 4 + id), quantization tables
  int ncomp = 0, comp_id[4] = {0}, comp_tq[4] = {0};   // the frame's components; `scanned`: initialised ones
  int progressive = 0;                                  // SOF2; baseline scans use the AC table whatever Ss/Se say
  static _Thread_local unsigned char seg[65536];
  int c = getc(fp);
  if (c != 0xFF) goto done;
  while (c == 0xFF) c = getc(fp);   // fill bytes before the start marker, as stb_image allows
  if (c != 0xD8) goto done;         // not a JPEG
  while (!bad && (c = getc(fp)) != EOF) {
    if (c != 0xFF) continue;   // entropy-coded data (or garbage a decoder refuses)
    do c = getc(fp);
    while (c == 0xFF);
    if (c == EOF || c == 0xD9) break;                                   // end of image
    if (c == 0x00 || c == 0x01 || (c >= 0xD0 && c <= 0xD7)) continue;   // stuffed byte, TEM, RSTn
    int hi = getc(fp), lo = getc(fp);
    if (lo == EOF) break;
    size_t n = (size_t)(hi << 8 | lo), got;
    n = n < 2 ? 0 : n - 2;   // the segment after its length field
    if (c != 0xC4 && c != 0xDB && c != 0xC0 && c != 0xC1 && c != 0xC2 && c != 0xDA) {
      if (n && fseek(fp, (long)n, SEEK_CUR) != 0) break;
      continue;
    }
    if ((got = fread(seg, 1, n, fp)) < n) memset(seg + got, 0, n - got);
    if (c == 0xC4) {   // DHT: tables of (class << 4 | id, 16 code counts, the symbols)
      for (size_t p = 0; !bad && p < n;) {
        size_t k = 0;
        for (int i = 1; i <= 16 && p + i < n; i++) k += seg[p + i];
        if (k > 256) bad = "a JPEG Huffman table of more than 256 symbols";
        else if (p + 17 + k > n) bad = "a JPEG Huffman table cut short";
        else if (seg[p] >> 4 < 2 && (seg[p] & 15) < 4) huff |= 1u << ((seg[p] >> 4) * 4 + (seg[p] & 15));
        p += 17 + k;
      }
    } else if (c == 0xDB) {   // DQT: tables of (precision << 4 | id, 64 values of 8 or 16 bits)
      for (size_t p = 0; p < n; p += 1 + (seg[p] >> 4 ? 128 : 64))
        if ((seg[p] & 15) < 4) quant |= 1u << (seg[p] & 15);
    } else if (c == 0xDA) {   // SOS: components (id, DC table << 4 | AC table), spectral start and end
      int ns = n ? seg[0] : 0;
      int ss = 1 + 2 * ns < (int)n ? seg[1 + 2 * ns] : 0, se = 2 + 2 * ns < (int)n ? seg[2 + 2 * ns] : 0,
          ah = 3 + 2 * ns < (int)n ? seg[3 + 2 * ns] >> 4 : 0;
      for (int i = 0; i < ns && 2 + 2 * i < (int)n && !bad; i++) {
        int k = 0;
        while (k < ncomp && comp_id[k] != seg[1 + 2 * i]) k++;
        if (k == ncomp) continue;   // not a component of the frame: stb_image refuses the scan
        if (ss == 0 && ah == 0) scanned |= 1u << k;   // a scan that sets every coefficient (baseline, DC first)
        int td = seg[2 + 2 * i] >> 4, ta = seg[2 + 2 * i] & 15;
        if (!(quant >> (comp_tq[k] & 15) & 1) || (ss == 0 && (td > 3 || !(huff >> td & 1))) ||
            ((!progressive || ss || se) && (ta > 3 || !(huff >> (4 + ta) & 1))))
          bad = "a JPEG scan that uses a table the file does not define";
      }
    } else {   // SOF0/1/2: precision, height, width, components (id, sampling, quantization table)
      ncomp = n > 5 && seg[5] <= 4 ? seg[5] : 0;
      scanned = 0, progressive = c == 0xC2;
      for (int k = 0; k < ncomp; k++) comp_id[k] = 6 + 3 * k < (int)n ? seg[6 + 3 * k] : -1, comp_tq[k] = 8 + 3 * k < (int)n ? seg[8 + 3 * k] : 0;
    }
  }
  if (!bad && ncomp && scanned != (1u << ncomp) - 1) bad = "a JPEG image component that no scan codes";
done:
  rewind(fp);
  return bad;
}

// PNM (P5/P6): width, height and maxval (white space and # comments between; a number may be
// empty, read as 0, as stb_image reads it), then the samples (two bytes each past maxval 255),
// which begin right after the character that ends maxval.
static const char *pnm_check(FILE *fp, long long size) {
  long long v[3] = {0, 0, 0};
  int ch = getc(fp) == 'P' && getc(fp) == '6' ? 3 : 1, c = getc(fp);
  const char *bad = NULL;
  for (int k = 0; k < 3 && !bad; k++) {
    for (;;) {
      while (c == ' ' || (c >= '\t' && c <= '\r')) c = getc(fp);
      if (c != '#') break;
      while (c != EOF && c != '\n' && c != '\r') c = getc(fp);
    }
    for (; c >= '0' && c <= '9' && !bad; c = getc(fp))   // (stb_image's own reading overflows an int)
      if ((v[k] = v[k] * 10 + (c - '0')) > (1 << 24)) bad = "a PNM header number out of range";
  }
  long long need = ftell(fp) + v[0] * v[1] * ch * (v[2] > 255 ? 2 : 1);
  rewind(fp);
  // 16-bit samples: stb_image 2.27 converts their channels with its 8-bit routine into a buffer it
  // then reads as 16-bit (a heap overflow whenever the channels asked for differ from the file's;
  // fuzz_image found it). Refused, as stb_image 2.28 would have to be for them to be read safely.
  if (!bad && v[2] > 255) bad = "a 16-bit PNM file (maxval above 255; save it with 8-bit samples)";
  return bad ? bad : size < need ? "a truncated PNM file" : NULL;
}

// PNG: every chunk must fit in the file (stb_image allocates an IDAT chunk's declared length before
// reading it: fuzz_image's 78-byte file declared a 973 MB chunk).
static const char *png_check(FILE *fp, long long size) {
  const char *bad = NULL;
  unsigned char c[8];
  for (long long pos = 8; fseek(fp, (long)pos, SEEK_SET) == 0 && fread(c, 1, 8, fp) == 8;) {
    long long len = (long long)c[0] << 24 | c[1] << 16 | c[2] << 8 | c[3];
    if (pos + 12 + len > size) {
      bad = "a PNG chunk longer than the file";
      break;
    }
    if (!memcmp(c + 4, "IEND", 4)) break;
    pos += 12 + len;
  }
  rewind(fp);
  return bad;
}

// What stb_image 2.27 would decode from uninitialised memory or out of bounds, and formats vkpeft
// does not read, refused before stb_image sees the file (NULL: go ahead; the file is rewound). Its
// JPEG tables (jpeg_check); truncated PNM and uncompressed TGA files, whose missing rows it leaves
// unwritten (stbi__getn's result unchecked; fuzz_image found both); PNG chunks longer than the file
// (png_check); PSD, PIC and HDR, which stb_image would decode but the data sets do not list.
static const char *stb_guard(FILE *fp) {
  unsigned char h[18] = {0};
  size_t n = fread(h, 1, sizeof h, fp);
  struct stat sb;
  long long size = fstat(fileno(fp), &sb) == 0 ? (long long)sb.st_size : 0;
  rewind(fp);
  const char *bad = h[0] == 0xFF ? jpeg_check(fp) : NULL;
  if (bad) return bad;
  if (!memcmp(h, "8BPS", 4) || !memcmp(h, "\x53\x80\xF6\x34", 4) || !memcmp(h, "#?RA", 4) || !memcmp(h, "#?RG", 4))
    return "a PSD, PIC or HDR file (images are PNG, JPEG, BMP, GIF, TGA or PNM)";
  if (h[0] == 'P' && (h[1] == '5' || h[1] == '6')) return pnm_check(fp, size);
  if (!memcmp(h, "\x89PNG\r\n\x1a\n", 8)) return png_check(fp, size);
  if (!memcmp(h, "BM", 2) && n == sizeof h) {   // a palette BMP: stb_image reads as many colours as
    // fit between the headers and the pixels and leaves the rest of its palette unset, though the
    // pixels may index it (fuzz_image: uninitialised stack memory as pixels)
    unsigned char b[16] = {0};
    long long offset = h[10] | h[11] << 8 | h[12] << 16 | (long long)h[13] << 24;
    long long hsz = h[14] | h[15] << 8 | h[16] << 16 | (long long)h[17] << 24;
    if (fseek(fp, 14 + 4, SEEK_SET) == 0 && fread(b, 1, sizeof b, fp) == sizeof b) {
      int bpp = hsz == 12 ? (b[6] | b[7] << 8) : (b[10] | b[11] << 8);
      long long colours = hsz == 12 ? (offset - 14 - 24) / 3 : (offset - 14 - hsz) / 4;
      if (bpp >= 1 && bpp < (hsz == 12 ? 24 : 16) && colours < (1 << (bpp < 8 ? bpp : 8))) bad = "a palette BMP whose palette has fewer colours than its pixels can index";
    }
    rewind(fp);
    return bad;
  }
  bool other = !memcmp(h, "\x89PNG", 4) || !memcmp(h, "GIF8", 4);
  if (!other && n >= 3 && h[2] >= 1 && h[2] <= 3) {   // TGA without RLE: header (what is missing reads as 0), id, palette, pixels
    long long palette = h[1] ? (long long)(h[5] | h[6] << 8) * ((h[7] + 7) / 8) : 0;
    long long pixels = (long long)(h[12] | h[13] << 8) * (h[14] | h[15] << 8) * ((h[16] + 7) / 8);
    if (size < 18 + h[0] + palette + pixels) return "a truncated TGA file";
  }
  return NULL;
}

vkp_status vkp_data_check_image_file(const char *path, vkp_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  const char *bad = stb_guard(fp);
  fclose(fp);
  return bad ? vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s: not decoded", path, bad) : VKP_OK;
}

static void decode_one(decode_job *j, size_t k) {
  if (j->phase == 1) {
    file_state *f = &j->fs[k];
    FILE *fp = fopen(j->paths[k], "rb");
    if (!fp) {
      f->st = VKP_ERR_IO;
      f->err_no = errno;
      return;
    }
    if ((f->reason = stb_guard(fp))) {
      f->st = VKP_ERR_FORMAT;
    } else if (!stbi_info_from_file(fp, &f->w, &f->h, &f->comp) || f->w <= 0 || f->h <= 0) {
      f->st = VKP_ERR_FORMAT;
      f->reason = stbi_failure_reason();
    } else if (vkp_image_check_size(j->paths[k], f->w, f->h, NULL) != VKP_OK) {
      f->st = VKP_ERR_FORMAT;
      f->too_big = 1;
    }
    fclose(fp);
    return;
  }
  size_t i = j->order[k];
  file_state *f = &j->fs[i];
  vkp_dataset *ds = j->ds;
  FILE *fp = fopen(j->paths[i], "rb");
  if (!fp) {
    f->st = VKP_ERR_IO;
    f->err_no = errno;
    return;
  }
  int w = 0, h = 0, comp = 0;
  uint8_t *rgba = NULL;
  if (!(f->reason = stb_guard(fp))) rgba = stbi_load_from_file(fp, &w, &h, &comp, 4);   // checked again: the file may have changed
  fclose(fp);
  if (!rgba) {
    f->st = VKP_ERR_FORMAT;
    if (!f->reason) f->reason = stbi_failure_reason();
    return;
  }
  if (w != f->w || h != f->h) {
    f->st = VKP_ERR_FORMAT;
    f->reason = "size differs from the header";
    stbi_image_free(rgba);
    return;
  }
  int C = ds->channels;
  uint8_t *dst = ds->pixels + ds->offsets[k];
  size_t npix = (size_t)w * (size_t)h;
  if (!j->fixed_w || (w == j->fixed_w && h == j->fixed_h)) {
    vkp_data_convert_rgba(rgba, npix, C, j->opts->alpha, dst);
  } else {
    uint8_t *conv = malloc(npix * (size_t)C);
    float *tmp = malloc((size_t)j->fixed_w * (size_t)h * (size_t)C * sizeof *tmp);
    if (!conv || !tmp) {
      f->st = VKP_ERR_OOM;
      f->reason = "out of memory";
    } else {
      vkp_data_convert_rgba(rgba, npix, C, j->opts->alpha, conv);
      vkp_data_resize_u8(conv, w, h, C, dst, j->fixed_w, j->fixed_h, tmp);
    }
    free(conv);
    free(tmp);
  }
  stbi_image_free(rgba);
}

static void *decode_worker(void *arg) {
  decode_job *j = arg;
  stbi_set_flip_vertically_on_load_thread(0);  // whatever another part of the program chose
  for (;;) {
    size_t k = atomic_fetch_add(&j->next, 1);
    if (k >= j->n) break;
    decode_one(j, k);
  }
  return NULL;
}

static void run_parallel(decode_job *j, size_t n, int phase) {
  j->n = n;
  j->phase = phase;
  atomic_store(&j->next, 0);
  int nt = vkp_data_thread_count(j->opts->n_threads, n);
  pthread_t th[64];
  if (nt > 64) nt = 64;
  int started = 0;
  for (int t = 1; t < nt; t++) {
    if (pthread_create(&th[started], NULL, decode_worker, j) != 0) break;
    started++;
  }
  decode_worker(j);  // the calling thread works too (and alone if no thread could start)
  for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

static vkp_status file_error(const char *path, const file_state *f, vkp_error *err) {
  if (f->st == VKP_ERR_IO)
    return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(f->err_no));
  if (f->st == VKP_ERR_OOM) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
  if (f->too_big) return vkp_image_check_size(path, f->w, f->h, err);
  return vkp_error_set(err, VKP_ERR_FORMAT, "%s: corrupt or unsupported image (stb_image: %s)",
                       path, f->reason ? f->reason : "unknown error");
}

// Handles failed files after a phase: fail on the first (in list order) unless skip_bad.
static vkp_status check_failures(decode_job *j, size_t n_paths, vkp_error *err) {
  for (size_t i = 0; i < n_paths; i++) {
    file_state *f = &j->fs[i];
    if (!f->keep || f->st == VKP_OK) continue;
    if (!j->opts->skip_bad || f->st == VKP_ERR_OOM) return file_error(j->paths[i], f, err);
    vkp_error e;
    file_error(j->paths[i], f, &e);
    vkp_data_warn(j->opts, "skipping %s", e.msg);
    f->keep = 0;
  }
  return VKP_OK;
}

vkp_status vkp_data_decode_files(const char *what, char **paths, const int32_t *labels, size_t n,
                                  char **names, int n_classes, const vkp_data_load_opts *opts,
                                  vkp_dataset **out, vkp_error *err) {
  static const vkp_data_load_opts defaults = {0};
  if (!opts) opts = &defaults;
  vkp_status st = VKP_OK;
  vkp_dataset *ds = NULL;
  file_state *fs = calloc(n ? n : 1, sizeof *fs);
  size_t *order = calloc(n ? n : 1, sizeof *order);
  decode_job j = {.paths = paths, .fs = fs, .order = order, .opts = opts};
  if (!fs || !order) {
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
    goto done;
  }
  if (opts->channels != 0 && opts->channels != 1 && opts->channels != 3 && opts->channels != 4) {
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: channels %d (want 0, 1, 3 or 4)", what,
                       opts->channels);
    goto done;
  }
  if ((opts->width > 0) != (opts->height > 0) || opts->width < 0 || opts->height < 0) {
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: load size %dx%d (set both or neither)", what,
                       opts->width, opts->height);
    goto done;
  }
  if (n == 0) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no images", what);
    goto done;
  }
  for (size_t i = 0; i < n; i++) fs[i].keep = 1;

  // Phase 1: headers.
  run_parallel(&j, n, 1);
  if ((st = check_failures(&j, n, err)) != VKP_OK) goto done;
  int any_colour = 0;
  size_t kept = 0;
  for (size_t i = 0; i < n; i++)
    if (fs[i].keep) {
      any_colour |= fs[i].comp >= 3;
      order[kept++] = i;
    }
  if (kept == 0) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no readable images", what);
    goto done;
  }
  int C = opts->channels ? opts->channels : any_colour ? 3 : 1;
  j.fixed_w = opts->width;
  j.fixed_h = opts->height;
  size_t total = 0;
  for (size_t k = 0; k < kept; k++) {
    file_state *f = &fs[order[k]];
    size_t w = (size_t)(j.fixed_w ? j.fixed_w : f->w), h = (size_t)(j.fixed_h ? j.fixed_h : f->h);
    size_t b = w * h * (size_t)C;
    if (b / (size_t)C / w != h || total + b < total) {
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: images too large", what);
      goto done;
    }
    total += b;
  }
  if (!(ds = vkp_data_alloc(what, kept, total, 0, 1))) {
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for %zu bytes of pixels", what, total);
    goto done;
  }
  ds->channels = C;
  size_t off = 0;
  for (size_t k = 0; k < kept; k++) {
    file_state *f = &fs[order[k]];
    ds->widths[k] = j.fixed_w ? j.fixed_w : f->w;
    ds->heights[k] = j.fixed_h ? j.fixed_h : f->h;
    ds->offsets[k] = off;
    ds->labels[k] = labels[order[k]];
    off += (size_t)ds->widths[k] * (size_t)ds->heights[k] * (size_t)C;
  }

  // Phase 2: pixels.
  j.ds = ds;
  run_parallel(&j, kept, 2);
  if ((st = check_failures(&j, n, err)) != VKP_OK) goto done;
  // Compact out images that failed in phase 2 (skip_bad only).
  size_t m = 0, dst_off = 0;
  for (size_t k = 0; k < kept; k++) {
    size_t i = order[k];
    if (!fs[i].keep) continue;
    size_t b = (size_t)ds->widths[k] * (size_t)ds->heights[k] * (size_t)C;
    memmove(ds->pixels + dst_off, ds->pixels + ds->offsets[k], b);
    ds->widths[m] = ds->widths[k];
    ds->heights[m] = ds->heights[k];
    ds->labels[m] = ds->labels[k];
    ds->offsets[m] = dst_off;
    ds->paths[m] = paths[i];
    paths[i] = NULL;  // now owned by ds
    dst_off += b;
    m++;
  }
  ds->count = m;
  if (m == 0) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no readable images", what);
    goto done;
  }
  ds->width = ds->widths[0];
  ds->height = ds->heights[0];
  for (size_t k = 1; k < m; k++)
    if (ds->widths[k] != ds->width || ds->heights[k] != ds->height) {
      ds->width = ds->height = 0;
      break;
    }
  ds->n_classes = n_classes;
  ds->class_names = names;
  names = NULL;
  *out = ds;
  ds = NULL;
done:
  vkp_dataset_free(ds);
  vkp_data_free_strings(names, (size_t)(n_classes > 0 ? n_classes : 0));
  vkp_data_free_strings(paths, n);
  free(fs);
  free(order);
  return st;
}
