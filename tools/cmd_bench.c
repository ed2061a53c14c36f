// cmd_bench.c — `vkpeft bench`: placeholder until the benchmarks land.
#include <stdio.h>

#include "vkpeft_cli.h"

int cmd_bench(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "vkpeft bench: no benchmarks in this build yet\n");
  return VKP_EXIT_FAIL;
}
