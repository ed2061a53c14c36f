// fuzz_png_info.c — libFuzzer target: `vkpeft info IMAGE.png` (tools/cli_png_info.c) on arbitrary
// bytes: the PNG reader with its text chunks (tEXt, zTXt, iTXt: keys, compression, language tags,
// UTF-8 values) and the printing of what it found. What it prints must be plain text whatever the
// file holds: no terminal control characters (C0 other than newline and tab, DEL, C1), so a file's
// text can never drive the terminal. The exit status is 0 for an image, 2 for anything else.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_png_info.h"
#include "fuzz_util.h"
#include "vkpeft_cli.h"

// The program's own entry points, vkp_cli_escape and vkp_cli_fail among them (its main renamed).
#define main vkpeft_main
#include "vkpeft.c"
#undef main

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  setenv("VKPEFT_MAX_IMAGE_PIXELS", "65536", 1);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // stdout goes to a memory file, read back after each call (set here: libFuzzer's -close_fd_mask
  // closes the real one after LLVMFuzzerInitialize).
  static FILE *out;
  static int fd = -1;
  if (!out) {
    fd = memfd_create("stdout", MFD_CLOEXEC);
    if (fd < 0 || !(out = fdopen(fd, "w+"))) abort();
  }
  stdout = out;
  rewind(out);
  if (ftruncate(fd, 0) != 0) abort();
  const char *path = fuzz_memfile(0, data, size);
  if (!path) return 0;
  int rc = vkp_cli_png_info(path);
  fflush(out);
  if (rc != VKP_EXIT_OK && rc != VKP_EXIT_BAD_INPUT) abort();
  long n = ftell(out);
  if (n <= 0) return 0;
  unsigned char *text = malloc((size_t)n);
  if (!text || pread(fd, text, (size_t)n, 0) != n) abort();
  for (long i = 0; i < n; i++) {
    unsigned char c = text[i];
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f || (c == 0xc2 && i + 1 < n && text[i + 1] >= 0x80 && text[i + 1] <= 0x9f))
      abort();
  }
  free(text);
  return 0;
}
