// vkp_cli_run.c — running the built vkpeft program from tests (see vkp_cli_run.h).
#include "vkp_cli_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "vkp_test.h"

static char output[1 << 16];

int vkp_cli_run(const char *args) {
  size_t n = strlen(args) + strlen(VKP_SOURCE_DIR) + strlen(VKP_BINARY_DIR) + 64;
  char *cmd = malloc(n);
  if (!cmd) fail_msg("out of memory");
  snprintf(cmd, n, "cd '%s' && '%s/vkpeft' %s 2>&1", VKP_SOURCE_DIR, VKP_BINARY_DIR, args);
  FILE *p = popen(cmd, "r");
  free(cmd);
  if (!p) fail_msg("cannot run vkpeft %s", args);
  size_t len = 0, got;
  char sink[4096];
  while ((got = fread(len < sizeof output - 1 ? output + len : sink, 1,
                      len < sizeof output - 1 ? sizeof output - 1 - len : sizeof sink, p)) > 0)
    if (len < sizeof output - 1) len += got;
  output[len] = '\0';
  int rc = pclose(p);
  if (WIFSIGNALED(rc)) return 128 + WTERMSIG(rc);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

const char *vkp_cli_output(void) { return output; }

void vkp_cli_expect(const char *args, int status, const char *needle) {
  int rc = vkp_cli_run(args);
  if (strstr(output, "vkpeft: validation")) fail_msg("vkpeft %s: Vulkan validation messages:\n%s", args, output);
  if (rc != status || (needle && !strstr(output, needle)))
    fail_msg("vkpeft %s\n  exit %d (want %d), output:\n%s\n  (want it to contain '%s')", args, rc, status, output,
             needle ? needle : "");
}
