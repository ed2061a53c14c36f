// bench_sd.h — `vkpeft bench unet` and `vkpeft bench vae`: Stable Diffusion-sized models with
// random weights (tools/cmd_bench_sd.c; bench/README.md describes the fields).
#ifndef VKP_BENCH_SD_H
#define VKP_BENCH_SD_H

// argv[0] is the benchmark's name ("unet" / "vae"), options follow (`--help` lists them).
// Returns the process exit status (0 ok, 1 a run failed, 2 bad options).
int vkp_bench_unet(int argc, char **argv);
int vkp_bench_vae(int argc, char **argv);

#endif
