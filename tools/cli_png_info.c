// cli_png_info.c — `vkpeft info IMAGE.png`: the size of a PNG and its text chunks, such as the
// `parameters` settings that `vkpeft generate` (and A1111) write.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli_png_info.h"
#include "vkp_png.h"
#include "vkpeft_cli.h"

bool vkp_cli_is_png(const char *path) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  FILE *f = fopen(path, "rb");
  if (!f) {
    size_t n = strlen(path);
    return n > 4 && !strcasecmp(path + n - 4, ".png");
  }
  unsigned char b[8];
  bool yes = fread(b, 1, 8, f) == 8 && !memcmp(b, sig, 8);
  fclose(f);
  return yes;
}

int vkp_cli_png_info(const char *path) {
  vkp_error err = {0};
  vkp_image *img = NULL;
  vkp_png_text *txt = NULL;
  int n = 0;
  if (vkp_png_read(path, &img, &txt, &n, &err)) return vkp_cli_fail("info", err.status, err.msg);
  static const char *const kinds[] = {"", "grey", "grey+alpha", "RGB", "RGBA"};
  printf("%s: PNG %dx%d %s, %d text chunk%s\n", path, img->width, img->height, kinds[img->channels], n, n == 1 ? "" : "s");
  for (int i = 0; i < n; i++) {   // text from a file: terminal control characters escaped
    char *k = vkp_cli_escape(txt[i].key, false), *v = vkp_cli_escape(txt[i].value, true);
    printf("%s:\n%s\n", k ? k : "?", v ? v : "?");
    free(k), free(v);
  }
  free(txt);
  vkp_image_free(img);
  return VKP_EXIT_OK;
}
