// stb_image_impl.c — stb_image compiled into the fuzz targets that decode images (fuzz_image,
// fuzz_list), so the decoder the data sets use (Debian's libstb, the same header) is instrumented:
// coverage for the fuzzer, ASan and UBSan for its reads and writes. These definitions take the place
// of libstb.so's in those programs.
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
