// bench_peft.h — `vkpeft bench peft`: parameters, planned device memory, dispatches and step time
// of one ViT training step for every PEFT method (tools/cmd_bench_peft.c).
#ifndef VKP_BENCH_PEFT_H
#define VKP_BENCH_PEFT_H

// argv[0] is the benchmark's name ("peft"), options follow:
//   --config vit-s|demo  --batch N  --steps S  --methods a,b,...  --json
// Returns the process exit status (0 ok, 1 a method failed, 2 bad options).
int vkp_bench_peft(int argc, char **argv);

#endif
