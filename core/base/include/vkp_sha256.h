// vkp_sha256.h — SHA-256 (FIPS 180-4), streaming, for file fingerprints: the short hashes other
// Stable Diffusion tools write into PNG `parameters` (A1111's "Model hash" and "Lora hashes").
//
//   vkp_sha256 h;  vkp_sha256_init(&h);
//   vkp_sha256_update(&h, data, n);  ...
//   uint8_t digest[32];  vkp_sha256_final(&h, digest);
#ifndef VKP_SHA256_H
#define VKP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "vkp_status.h"

typedef struct vkp_sha256 {
  uint32_t h[8];
  uint64_t bytes;       // message length so far
  uint8_t block[64];    // the pending partial block
  size_t fill;          // bytes in block
} vkp_sha256;

void vkp_sha256_init(vkp_sha256 *s);
void vkp_sha256_update(vkp_sha256 *s, const void *data, size_t n);
// Finishes the message (padding and length) and writes the 32-byte digest; s must be
// re-initialised before another use.
void vkp_sha256_final(vkp_sha256 *s, uint8_t digest[32]);
// The digest as 64 lower-case hex digits and a NUL.
void vkp_sha256_hex(const uint8_t digest[32], char hex[65]);
// SHA-256 of the bytes of file `path` from byte `offset` to its end, as hex.
// Errors: VKP_ERR_IO naming the file (cannot open or read, offset past the end).
vkp_status vkp_sha256_file(const char *path, uint64_t offset, char hex[65], vkp_error *err);

#endif
