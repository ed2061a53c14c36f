// vkp_rng.h — the one host random number generator: PyTorch's CPU generator, bit for bit.
//
// A vkp_rng is torch's CPUGeneratorImpl: an mt19937 engine seeded as torch.manual_seed(seed)
// (or torch.Generator().manual_seed(seed)), plus the cached second sample of the scalar
// Box–Muller path. The generators below consume the engine exactly as torch's CPU kernels do, so
// the same seed gives the same numbers as PyTorch on a CPU (and diffusers' CPU noise):
//
//   vkp_rng_rand      torch.rand(n)                 float32, 24 random bits each
//   vkp_rng_randn     torch.randn(n)                float32; n >= 16 takes torch's vectorised
//                                                   path (uniforms first, then Box–Muller in
//                                                   blocks of 16 with avx_mathfun's float log and
//                                                   sincos, last 16 redrawn when n % 16 != 0);
//                                                   n < 16 the scalar double path with its cache
//   vkp_rng_normal_fill  tensor.normal_(mean, std)  (torch.nn.init.normal_) on float32
//   vkp_rng_uniform_fill tensor.uniform_(lo, hi)    (torch.nn.init.uniform_) on float32
//   vkp_rng_randint   torch.randint(lo, hi, (n,))   int64
//   vkp_rng_randperm  torch.randperm(n)             int64
//   vkp_rng_uniform   torch.rand((), dtype=torch.float64)
//   vkp_rng_normal    torch.randn((), dtype=torch.float64)
//
// Only torch's x86-64 build with AVX2 (the default on any x86-64 CPU of the last decade; AVX-512
// machines use the same kernel) is reproduced for randn with n >= 16; an ARM build of torch uses
// libm's float log/sin/cos there and differs in the last bits. The scalar path follows torch >=
// 2.0 (sqrt(-2 log1p(-u))); torch 1.x took log(1 - u), which differs in the last bit of a double
// now and then. Everything else is exact on all platforms. Derived streams (one per epoch, per sample, per parameter) are seeded with
// vkp_rng_key, a hash, never by drawing seeds from another generator.
//
// The state is plain data (2.5 KB): copy it to fork a stream, save it with a checkpoint
// (vkp_rng_state_words / vkp_rng_set_state) to resume exactly.
#ifndef VKP_RNG_H
#define VKP_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "vkp_status.h"

#define VKP_RNG_MT_N 624

typedef struct vkp_rng {
  uint32_t mt[VKP_RNG_MT_N];  // mt19937 state
  int32_t next;               // index of the next state word; VKP_RNG_MT_N: twist first
  int32_t has_normal;         // 1: `normal` holds the cached second scalar Box–Muller sample
  double normal;
} vkp_rng;

// torch.manual_seed(seed): the engine is seeded with the low 32 bits (as torch's mt19937 is),
// the normal cache is cleared.
void vkp_rng_seed(vkp_rng *r, uint64_t seed);
// A generator seeded with vkp_rng_seed (by value, for `vkp_rng r = vkp_rng_new(7);`).
vkp_rng vkp_rng_new(uint64_t seed);

// A seed for a derived stream: a 64-bit mix of (seed, a, b) (splitmix64's finaliser), e.g.
// vkp_rng_key(seed, epoch, STREAM_ORDER). Distinct inputs give unrelated seeds.
uint64_t vkp_rng_key(uint64_t seed, uint64_t a, uint64_t b);
// Folds a string (a parameter name) into a key: vkp_rng_key_str(seed, "vit.layers.0.q.weight").
uint64_t vkp_rng_key_str(uint64_t seed, const char *s);

// Raw engine output: generator->random() and random64() ((first << 32) | second).
uint32_t vkp_rng_u32(vkp_rng *r);
uint64_t vkp_rng_u64(vkp_rng *r);

// One value of torch.rand((), dtype=torch.float64): [0, 1) with 53 random bits (two words).
double vkp_rng_uniform(vkp_rng *r);
// One value of torch.randn((), dtype=torch.float64): scalar Box–Muller in double; every other
// call returns the cached second sample (torch's next_double_normal_sample).
double vkp_rng_normal(vkp_rng *r);
// One value of torch.randint(lo, hi, ()): lo + (word % (hi - lo)), one word when hi - lo < 2^32,
// else random64. Requires lo < hi.
int64_t vkp_rng_int(vkp_rng *r, int64_t lo, int64_t hi);

// torch.rand(n) (float32, [0, 1)).
void vkp_rng_rand(vkp_rng *r, float *out, size_t n);
// torch.randn(n) (float32), see the top of this file.
void vkp_rng_randn(vkp_rng *r, float *out, size_t n);
// torch.empty(n).normal_(mean, std): randn's algorithm with mean and std applied inside it
// (as doubles on the scalar path, rounded to float on the vectorised one, as torch does).
void vkp_rng_normal_fill(vkp_rng *r, float *out, size_t n, double mean, double std);
// torch.empty(n).uniform_(lo, hi) (float32): u * (hi - lo) + lo per element (one fma).
void vkp_rng_uniform_fill(vkp_rng *r, float *out, size_t n, float lo, float hi);
// torch.randint(lo, hi, (n,)) (int64). Requires lo < hi.
void vkp_rng_randint(vkp_rng *r, int64_t lo, int64_t hi, int64_t *out, size_t n);
// torch.randperm(n) (int64): out gets a permutation of 0..n-1.
void vkp_rng_randperm(vkp_rng *r, int64_t *out, int64_t n);
// Shuffles the array `base` (n elements of `size` bytes) into base[torch.randperm(n)], or only its
// first k elements into base[torch.randperm(n)[:k]] (k < n: a random k-subset in random order, in
// k draws). Below 2^32 / 20 elements this is torch's randperm exactly; above, 64-bit draws.
void vkp_rng_shuffle(vkp_rng *r, void *base, size_t n, size_t size, size_t k);

// Saved state, for checkpoints: VKP_RNG_STATE_WORDS uint32 words (engine state, position, normal
// cache). vkp_rng_set_state checks what it is given (VKP_ERR_FORMAT on a bad position).
#define VKP_RNG_STATE_WORDS (VKP_RNG_MT_N + 4)
void vkp_rng_get_state(const vkp_rng *r, uint32_t *words);
vkp_status vkp_rng_set_state(vkp_rng *r, const uint32_t *words, vkp_error *err);

#endif
