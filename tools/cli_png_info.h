// cli_png_info.h — `vkpeft info IMAGE.png` (tools/cli_png_info.c).
#ifndef VKP_CLI_PNG_INFO_H
#define VKP_CLI_PNG_INFO_H

#include <stdbool.h>

// True for a path that names a PNG file (by its signature; a missing file: by its .png suffix).
bool vkp_cli_is_png(const char *path);
// Prints the image's size and every text chunk (A1111's `parameters`: the generation settings);
// returns the exit status (2 for a missing or corrupt file).
int vkp_cli_png_info(const char *path);

#endif
