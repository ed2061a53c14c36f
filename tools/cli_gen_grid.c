// cli_gen_grid.c — `vkpeft generate --grid`: the images side by side in one PNG, each value
// written under its image with the embedded font (core/report's captioned image grid).
#include "cli_generate.h"
#include "vkp_plot.h"

vkp_status vkp_gen_grid(const vkp_image *images, const char *const *labels, int n, int cols, const char *title,
                        vkp_image **out, vkp_error *err) {
  vkp_image_grid g = {.title = title, .images = images, .captions = labels, .n = n, .cols = cols};
  return vkp_plot_image_grid(&g, out, err);
}
