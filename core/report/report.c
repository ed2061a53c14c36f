// report.c — the self-contained report.html of a run (see vkp_report.h).
//
// Items are rendered to HTML as they are added (images are base64-encoded once, when added);
// vkp_report_render wraps them in the page: head with inline CSS, title, table of contents,
// the items, footer.
#include "vkp_strbuf.h"
#include "vkp_report.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_fileio.h"
#include "vkp_vec.h"

#define REPORT_MAX_IMAGE ((size_t)256 << 20)  // 256 MiB per embedded PNG


struct vkp_report {
  char *title, *subtitle;  // owned
  vkp_strbuf body;               // HTML of the items so far
  VKP_VEC(char *) sections;   // headings, owned
  int in_gallery;          // the last item was an image: a <div class="gallery"> is open
  int oom;                 // an allocation failed; the report can no longer be written
};

// ---- string building ----------------------------------------------------------------------------




// Appends text with the five HTML special characters escaped; '\n' becomes <br> when br is set.
static void sb_html(vkp_strbuf *b, const char *s, int br) {
  if (!s) return;
  const char *run = s;
  for (; *s; s++) {
    const char *rep = NULL;
    switch (*s) {
      case '&': rep = "&amp;"; break;
      case '<': rep = "&lt;"; break;
      case '>': rep = "&gt;"; break;
      case '"': rep = "&quot;"; break;
      case '\'': rep = "&#39;"; break;
      case '\n': rep = br ? "<br>\n" : NULL; break;
      default: break;
    }
    if (!rep) continue;
    vkp_strbuf_put(b, run, (size_t)(s - run));
    vkp_strbuf_puts(b, rep);
    run = s + 1;
  }
  vkp_strbuf_put(b, run, (size_t)(s - run));
}

char *vkp_base64_encode(const void *data, size_t len) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (len > (SIZE_MAX - 1) / 4 * 3 - 3) return NULL;
  size_t n = (len + 2) / 3 * 4;
  char *out = malloc(n + 1);
  if (!out) return NULL;
  const unsigned char *p = data;
  size_t o = 0, i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    out[o++] = tab[v >> 18];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = tab[(v >> 6) & 63];
    out[o++] = tab[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
    out[o++] = tab[v >> 18];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = '\0';
  return out;
}

// ---- report items -------------------------------------------------------------------------------

vkp_report *vkp_report_new(const char *title, const char *subtitle) {
  vkp_report *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->title = strdup(title ? title : "vkpeft run");
  r->subtitle = subtitle ? strdup(subtitle) : NULL;
  if (!r->title || (subtitle && !r->subtitle)) {
    vkp_report_free(r);
    return NULL;
  }
  return r;
}

void vkp_report_free(vkp_report *r) {
  if (!r) return;
  for (int i = 0; i < r->sections.n; i++) free(r->sections.v[i]);
  free(r->sections.v);
  free(r->body.p);
  free(r->title);
  free(r->subtitle);
  free(r);
}

// Common start of every add: argument check, sticky OOM, closing an open image gallery.
static vkp_status begin_item(vkp_report *r, int image, const char *what, vkp_error *err) {
  if (!r) return vkp_error_set(err, VKP_ERR_INVALID, "report: %s: NULL report", what);
  if (r->oom || r->body.oom) return vkp_error_set(err, VKP_ERR_OOM, "report: out of memory");
  if (!image && r->in_gallery) {
    vkp_strbuf_puts(&r->body, "</div>\n");
    r->in_gallery = 0;
  }
  return VKP_OK;
}

static vkp_status end_item(vkp_report *r, vkp_error *err) {
  if (r->body.oom) {
    r->oom = 1;
    return vkp_error_set(err, VKP_ERR_OOM, "report: out of memory");
  }
  return VKP_OK;
}

vkp_status vkp_report_add_section(vkp_report *r, const char *heading, vkp_error *err) {
  VKP_TRY(begin_item(r, 0, "section", err));
  char *h = strdup(heading ? heading : "");
  if (!h || vkp_vec_push(&r->sections, h)) {
    free(h);
    return vkp_error_set(err, VKP_ERR_OOM, "report: out of memory");
  }
  vkp_strbuf_printf(&r->body, "<h2 id=\"s%d\">", r->sections.n);
  sb_html(&r->body, h, 0);
  vkp_strbuf_puts(&r->body, "</h2>\n");
  return end_item(r, err);
}

vkp_status vkp_report_add_text(vkp_report *r, const char *text, vkp_error *err) {
  VKP_TRY(begin_item(r, 0, "text", err));
  vkp_strbuf_puts(&r->body, "<p>");
  sb_html(&r->body, text ? text : "", 1);
  vkp_strbuf_puts(&r->body, "</p>\n");
  return end_item(r, err);
}

// A cell that reads as a number, possibly with a unit: "0.9121", "-3", "91.2%", "1.2 M",
// "812 img/s", "2.5e-4".
static int numeric(const char *s) {
  if (!s) return 0;
  while (*s == ' ') s++;
  if (*s == '+' || *s == '-') s++;
  if (*s == '.') s++;
  return *s >= '0' && *s <= '9';
}

vkp_status vkp_report_add_kv(vkp_report *r, const char *const *keys, const char *const *values,
                             int n, vkp_error *err) {
  VKP_TRY(begin_item(r, 0, "key/value table", err));
  if (n < 0 || (n > 0 && (!keys || !values)))
    return vkp_error_set(err, VKP_ERR_INVALID, "report: key/value table: bad arguments");
  vkp_strbuf *b = &r->body;
  vkp_strbuf_puts(b, "<table class=\"kv\">\n");
  for (int i = 0; i < n; i++) {
    vkp_strbuf_puts(b, "<tr><th>");
    sb_html(b, keys[i], 0);
    vkp_strbuf_puts(b, "</th><td>");
    sb_html(b, values[i], 1);
    vkp_strbuf_puts(b, "</td></tr>\n");
  }
  vkp_strbuf_puts(b, "</table>\n");
  return end_item(r, err);
}

vkp_status vkp_report_add_table(vkp_report *r, const char *caption, const char *const *header,
                                int n_cols, const char *const *cells, int n_rows,
                                vkp_error *err) {
  VKP_TRY(begin_item(r, 0, "table", err));
  if (n_cols < 1 || n_rows < 0 || (n_rows > 0 && !cells))
    return vkp_error_set(err, VKP_ERR_INVALID, "report: table: bad arguments (%d columns, %d rows)",
                         n_cols, n_rows);
  // A column is numeric when every non-empty cell in it is.
  unsigned char *num = calloc((size_t)n_cols, 1);
  if (!num) return vkp_error_set(err, VKP_ERR_OOM, "report: out of memory");
  for (int c = 0; c < n_cols; c++) {
    int any = 0, all = 1;
    for (int i = 0; i < n_rows; i++) {
      const char *s = cells[(size_t)i * n_cols + c];
      if (!s || !s[0]) continue;
      any = 1;
      if (!numeric(s)) all = 0;
    }
    num[c] = (unsigned char)(any && all);
  }
  vkp_strbuf *b = &r->body;
  vkp_strbuf_puts(b, "<div class=\"scroll\"><table class=\"data\">\n");
  if (caption) {
    vkp_strbuf_puts(b, "<caption>");
    sb_html(b, caption, 0);
    vkp_strbuf_puts(b, "</caption>\n");
  }
  if (header) {
    vkp_strbuf_puts(b, "<thead><tr>");
    for (int c = 0; c < n_cols; c++) {
      vkp_strbuf_puts(b, num[c] ? "<th class=\"num\">" : "<th>");
      sb_html(b, header[c], 0);
      vkp_strbuf_puts(b, "</th>");
    }
    vkp_strbuf_puts(b, "</tr></thead>\n");
  }
  vkp_strbuf_puts(b, "<tbody>\n");
  for (int i = 0; i < n_rows; i++) {
    vkp_strbuf_puts(b, "<tr>");
    for (int c = 0; c < n_cols; c++) {
      vkp_strbuf_puts(b, num[c] ? "<td class=\"num\">" : "<td>");
      sb_html(b, cells[(size_t)i * n_cols + c], 1);
      vkp_strbuf_puts(b, "</td>");
    }
    vkp_strbuf_puts(b, "</tr>\n");
  }
  vkp_strbuf_puts(b, "</tbody></table></div>\n");
  free(num);
  return end_item(r, err);
}

// Appends a relative path as a URL: bytes outside [A-Za-z0-9-._~/] percent-encoded ("#", "?",
// spaces and UTF-8 in a file name stay part of the path).
static void sb_url_path(vkp_strbuf *b, const char *s) {
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-._~/", c)) vkp_strbuf_put(b, s, 1);
    else vkp_strbuf_printf(b, "%%%02X", c);
  }
}

vkp_status vkp_report_add_links(vkp_report *r, const char *const *hrefs, const char *const *labels,
                               const char *const *notes, int n, vkp_error *err) {
  VKP_TRY(begin_item(r, 0, "links", err));
  if (n < 0 || (n > 0 && !hrefs)) return vkp_error_set(err, VKP_ERR_INVALID, "report: links: bad arguments");
  vkp_strbuf *b = &r->body;
  vkp_strbuf_puts(b, "<ul class=\"links\">\n");
  for (int i = 0; i < n; i++) {
    vkp_strbuf_puts(b, "<li><a href=\"");
    sb_url_path(b, hrefs[i]);
    vkp_strbuf_puts(b, "\">");
    sb_html(b, labels && labels[i] ? labels[i] : hrefs[i], 0);
    vkp_strbuf_puts(b, "</a>");
    if (notes && notes[i]) {
      vkp_strbuf_puts(b, " <span class=\"note\">");
      sb_html(b, notes[i], 0);
      vkp_strbuf_puts(b, "</span>");
    }
    vkp_strbuf_puts(b, "</li>\n");
  }
  vkp_strbuf_puts(b, "</ul>\n");
  return end_item(r, err);
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static vkp_status add_png(vkp_report *r, const void *png, size_t len, const char *caption,
                          const char *name, vkp_error *err) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  const unsigned char *p = png;
  // Signature, then the IHDR chunk: length 13, "IHDR", width, height.
  if (!png || len < 24 || memcmp(p, sig, 8) != 0 || memcmp(p + 12, "IHDR", 4) != 0)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a PNG file", name);
  uint32_t w = be32(p + 16), h = be32(p + 20);
  char *b64 = vkp_base64_encode(png, len);
  if (!b64) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory embedding image", name);
  vkp_strbuf *b = &r->body;
  if (!r->in_gallery) {
    vkp_strbuf_puts(b, "<div class=\"gallery\">\n");
    r->in_gallery = 1;
  }
  vkp_strbuf_printf(b, "<figure><img width=\"%u\" height=\"%u\" alt=\"", (unsigned)w, (unsigned)h);
  sb_html(b, caption ? caption : "", 0);
  vkp_strbuf_puts(b, "\" src=\"data:image/png;base64,");
  vkp_strbuf_puts(b, b64);
  vkp_strbuf_puts(b, "\">");
  if (caption) {
    vkp_strbuf_puts(b, "<figcaption>");
    sb_html(b, caption, 0);
    vkp_strbuf_puts(b, "</figcaption>");
  }
  vkp_strbuf_puts(b, "</figure>\n");
  free(b64);
  return end_item(r, err);
}

vkp_status vkp_report_add_png(vkp_report *r, const void *png, size_t len, const char *caption,
                              vkp_error *err) {
  VKP_TRY(begin_item(r, 1, "image", err));
  return add_png(r, png, len, caption, "report image", err);
}

vkp_status vkp_report_add_image(vkp_report *r, const char *png_path, const char *caption,
                                vkp_error *err) {
  VKP_TRY(begin_item(r, 1, "image", err));
  if (!png_path) return vkp_error_set(err, VKP_ERR_INVALID, "report: image: NULL path");
  char *data = NULL;
  size_t len = 0;
  VKP_TRY(vkp_file_read_all(png_path, REPORT_MAX_IMAGE, &data, &len, err));
  vkp_status st = add_png(r, data, len, caption, png_path, err);
  free(data);
  return st;
}

// Appends pretty-printed JSON with light syntax colouring: keys, strings, numbers, literals.
static void sb_json_colored(vkp_strbuf *b, const char *s) {
  const char *start = s;
  while (*s) {
    if (*s == '\t') {  // cJSON indents with tabs and puts one after ':'
      vkp_strbuf_puts(b, s > start && s[-1] == ':' ? " " : "  ");
      s++;
    } else if (*s == '"') {
      const char *e = s + 1;
      while (*e && *e != '"') e += (*e == '\\' && e[1]) ? 2 : 1;
      if (*e) e++;
      const char *after = e;
      while (*after == ' ' || *after == '\t') after++;
      vkp_strbuf_puts(b, *after == ':' ? "<span class=\"k\">" : "<span class=\"s\">");
      char *tok = strndup(s, (size_t)(e - s));
      if (!tok) {
        b->oom = 1;
        return;
      }
      sb_html(b, tok, 0);
      free(tok);
      vkp_strbuf_puts(b, "</span>");
      s = e;
    } else if ((*s >= '0' && *s <= '9') || *s == '-') {
      const char *e = s + 1;
      while ((*e >= '0' && *e <= '9') || *e == '.' || *e == 'e' || *e == 'E' || *e == '+' ||
             *e == '-')
        e++;
      vkp_strbuf_puts(b, "<span class=\"n\">");
      vkp_strbuf_put(b, s, (size_t)(e - s));
      vkp_strbuf_puts(b, "</span>");
      s = e;
    } else if (!strncmp(s, "true", 4) || !strncmp(s, "null", 4) || !strncmp(s, "false", 5)) {
      size_t n = s[0] == 'f' ? 5 : 4;
      vkp_strbuf_puts(b, "<span class=\"b\">");
      vkp_strbuf_put(b, s, n);
      vkp_strbuf_puts(b, "</span>");
      s += n;
    } else {
      const char *e = s + 1;
      while (*e && *e != '"' && *e != '\t' && !(*e >= '0' && *e <= '9') && *e != '-' &&
             *e != 't' && *e != 'f' && *e != 'n')
        e++;
      char *tok = strndup(s, (size_t)(e - s));
      if (!tok) {
        b->oom = 1;
        return;
      }
      sb_html(b, tok, 0);
      free(tok);
      s = e;
    }
  }
}

vkp_status vkp_report_add_json(vkp_report *r, const char *heading, const char *json,
                               vkp_error *err) {
  VKP_TRY(begin_item(r, 0, "JSON", err));
  vkp_strbuf *b = &r->body;
  vkp_strbuf_puts(b, "<details class=\"json\" open><summary>");
  sb_html(b, heading ? heading : "Configuration", 0);
  vkp_strbuf_puts(b, "</summary><pre>");
  cJSON *doc = json ? cJSON_Parse(json) : NULL;
  char *pretty = doc ? cJSON_Print(doc) : NULL;
  if (pretty)
    sb_json_colored(b, pretty);
  else
    sb_html(b, json ? json : "", 0);
  if (pretty) cJSON_free(pretty);
  cJSON_Delete(doc);
  vkp_strbuf_puts(b, "</pre></details>\n");
  return end_item(r, err);
}

// ---- the page -----------------------------------------------------------------------------------

static const char page_css[] =
    ":root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#f6f8fa;--accent:#1f77b4}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;background:#fff;color:var(--fg);"
    "font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}\n"
    "header{background:linear-gradient(90deg,#0b3d66,#1f77b4);color:#fff;padding:28px 0 22px}\n"
    ".wrap{max-width:1720px;margin:0 auto;padding:0 28px}\n"
    "header h1{margin:0;font-size:26px;font-weight:600;letter-spacing:.2px}\n"
    "header .sub{margin-top:6px;opacity:.85;font-family:ui-monospace,SFMono-Regular,Menlo,"
    "Consolas,monospace;font-size:13px}\n"
    "nav{border-bottom:1px solid var(--line);background:var(--bg);font-size:14px}\n"
    "nav .wrap{padding-top:9px;padding-bottom:9px}\n"
    "nav a{color:var(--accent);text-decoration:none;margin-right:18px;white-space:nowrap}\n"
    "nav a:hover{text-decoration:underline}\n"
    "main{padding-bottom:40px}\n"
    "h2{font-size:19px;font-weight:600;margin:34px 0 14px;padding-bottom:6px;"
    "border-bottom:1px solid var(--line)}\n"
    "p{margin:10px 0;max-width:80ch}\n"
    "table{border-collapse:collapse;font-size:14px;margin:8px 0 18px}\n"
    "th,td{padding:6px 14px;border-bottom:1px solid var(--line);text-align:left;"
    "vertical-align:top}\n"
    "td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\n"
    "table.kv th{font-weight:500;color:var(--muted);padding-left:0;min-width:200px}\n"
    "table.kv td{font-weight:600}\n"
    "table.data thead th{background:var(--bg);font-weight:600;border-bottom:2px solid var(--line)}\n"
    "table.data tbody tr:nth-child(even){background:#fbfcfd}\n"
    "table.data tbody tr:hover{background:#eef5fb}\n"
    "caption{caption-side:top;text-align:left;color:var(--muted);padding:0 0 6px}\n"
    "ul.links{margin:8px 0 18px;padding-left:20px;font-size:14px}\n"
    "ul.links a{color:var(--accent);font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\n"
    "ul.links .note{color:var(--muted)}\n"
    ".scroll{overflow-x:auto}\n"
    // Plots are shown at their own size (a pixel font does not scale down well) and wrap.
    ".gallery{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start;margin:8px 0 18px}\n"
    "figure{margin:0;max-width:100%;border:1px solid var(--line);border-radius:8px;padding:10px;"
    "background:#fff;box-shadow:0 1px 2px rgba(31,35,40,.06)}\n"
    "figure img{display:block;max-width:100%;height:auto;margin:0 auto}\n"
    "figcaption{color:var(--muted);font-size:13px;text-align:center;margin-top:6px}\n"
    "details.json{border:1px solid var(--line);border-radius:8px;background:var(--bg);"
    "margin:8px 0 18px}\n"
    "details.json summary{cursor:pointer;padding:8px 14px;font-weight:600}\n"
    "pre{margin:0;padding:4px 16px 14px;overflow-x:auto;font:13px/1.45 ui-monospace,"
    "SFMono-Regular,Menlo,Consolas,monospace}\n"
    ".k{color:#0550ae}.s{color:#0a3069}.n{color:#953800}.b{color:#8250df}\n"
    "footer{border-top:1px solid var(--line);color:var(--muted);font-size:12px;padding:14px 0}\n"
    "@media print{header{background:none;color:var(--fg)}nav{display:none}"
    "figure{break-inside:avoid}}\n";

vkp_status vkp_report_render(const vkp_report *r, char **html, size_t *len, vkp_error *err) {
  if (html) *html = NULL;
  if (len) *len = 0;
  if (!r || !html) return vkp_error_set(err, VKP_ERR_INVALID, "report: render: NULL argument");
  if (r->oom || r->body.oom) return vkp_error_set(err, VKP_ERR_OOM, "report: out of memory");
  vkp_strbuf b = {0};
  vkp_strbuf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
              "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
              "<meta name=\"generator\" content=\"vkpeft\">\n<title>");
  sb_html(&b, r->title, 0);
  vkp_strbuf_puts(&b, "</title>\n<style>\n");
  vkp_strbuf_puts(&b, page_css);
  vkp_strbuf_puts(&b, "</style>\n</head>\n<body>\n<header><div class=\"wrap\"><h1>");
  sb_html(&b, r->title, 0);
  vkp_strbuf_puts(&b, "</h1>");
  if (r->subtitle) {
    vkp_strbuf_puts(&b, "<div class=\"sub\">");
    sb_html(&b, r->subtitle, 1);
    vkp_strbuf_puts(&b, "</div>");
  }
  vkp_strbuf_puts(&b, "</div></header>\n");
  if (r->sections.n > 1) {
    vkp_strbuf_puts(&b, "<nav><div class=\"wrap\">");
    for (int i = 0; i < r->sections.n; i++) {
      vkp_strbuf_printf(&b, "<a href=\"#s%d\">", i + 1);
      sb_html(&b, r->sections.v[i], 0);
      vkp_strbuf_puts(&b, "</a>");
    }
    vkp_strbuf_puts(&b, "</div></nav>\n");
  }
  vkp_strbuf_puts(&b, "<main><div class=\"wrap\">\n");
  if (r->body.p) vkp_strbuf_put(&b, r->body.p, r->body.len);
  if (r->in_gallery) vkp_strbuf_puts(&b, "</div>\n");
  vkp_strbuf_puts(&b, "</div></main>\n<footer><div class=\"wrap\">Generated by vkpeft. This page is "
              "self-contained: plots are embedded, nothing is loaded from elsewhere.</div>"
              "</footer>\n</body>\n</html>\n");
  if (b.oom) {
    free(b.p);
    return vkp_error_set(err, VKP_ERR_OOM, "report: out of memory rendering the page");
  }
  *html = b.p;
  if (len) *len = b.len;
  return VKP_OK;
}

vkp_status vkp_report_write(const vkp_report *r, const char *path, vkp_error *err) {
  if (!path || !path[0]) return vkp_error_set(err, VKP_ERR_INVALID, "report: empty path");
  char *html = NULL;
  size_t len = 0;
  vkp_status st = vkp_report_render(r, &html, &len, err);
  if (st != VKP_OK) return st;
  const void *chunks[1] = {html};
  size_t sizes[1] = {len};
  st = vkp_file_write_atomic(path, chunks, sizes, 1, err);
  free(html);
  return st;
}

void vkp_report_run_rows(const vkp_report_run *run, const char **keys, char (*vals)[64]) {
  static const char *const names[VKP_REPORT_RUN_ROWS] = {"trainable parameters", "total parameters", "training steps",
                                                         "training time", "throughput", "peak device memory",
                                                         "training graph arena"};
  for (int i = 0; i < VKP_REPORT_RUN_ROWS; i++) keys[i] = names[i];
  double total = (double)(run->total_params ? run->total_params : 1);
  snprintf(vals[0], 64, "%lld (%.3f%%)", (long long)run->trainable_params, 100.0 * (double)run->trainable_params / total);
  snprintf(vals[1], 64, "%lld", (long long)run->total_params);
  snprintf(vals[2], 64, "%lld", (long long)run->steps);
  snprintf(vals[3], 64, "%.1f s", run->seconds);
  snprintf(vals[4], 64, "%.1f %s", run->rate, run->rate_unit);
  snprintf(vals[5], 64, "%.1f MiB", (double)run->peak_device_bytes / 1048576.0);
  snprintf(vals[6], 64, "%.1f MiB", (double)run->arena_bytes / 1048576.0);
}
