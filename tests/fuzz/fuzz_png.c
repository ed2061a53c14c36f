// fuzz_png.c — libFuzzer target: vkp_png_decode with text chunks (tEXt, zTXt, iTXt) on arbitrary
// bytes; a decoded image is re-encoded with its text and decoded again (the round trip must hold).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_png.h"

// Images up to 65536 pixels are decoded (the limit keeps each input fast; larger ones test the
// limit's refusal path).
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  setenv("VKPEFT_MAX_IMAGE_PIXELS", "65536", 1);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vkp_image *img = NULL;
  vkp_png_text *text = NULL;
  int n_text = 0;
  vkp_error err;
  if (vkp_png_decode(data, size, "fuzz.png", &img, &text, &n_text, &err) != VKP_OK) return 0;
  for (int i = 0; i < n_text; i++)
    if (!text[i].key || !text[i].value || vkp_png_text_find(text, n_text, text[i].key) == NULL) abort();
  uint8_t *png = NULL;
  size_t len = 0;
  // Keys the writer accepts are re-encoded; others are dropped (the writer checks keys strictly).
  if (vkp_png_encode(img, NULL, 0, &png, &len, &err) == VKP_OK) {
    vkp_image *back = NULL;
    if (vkp_png_decode(png, len, "again.png", &back, NULL, NULL, &err) != VKP_OK) abort();
    if (back->width != img->width || back->height != img->height || back->channels != img->channels) abort();
    for (int y = 0; y < img->height; y++)
      if (memcmp(back->data + (size_t)y * vkp_image_stride(back), img->data + (size_t)y * vkp_image_stride(img),
                 (size_t)img->width * (size_t)img->channels))
        abort();
    vkp_image_free(back);
    free(png);
  }
  vkp_image_free(img);
  free(text);
  return 0;
}
