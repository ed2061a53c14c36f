// vkp_cli_run.c — running the built vkpeft program from tests (see vkp_cli_run.h).
#include "vkp_cli_run.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

int vkp_cli_spawn(const char *args) {
  size_t n = strlen(args) + strlen(VKP_SOURCE_DIR) + strlen(VKP_BINARY_DIR) + 64;
  char *cmd = malloc(n);
  if (!cmd) fail_msg("out of memory");
  snprintf(cmd, n, "cd '%s' && exec '%s/vkpeft' %s", VKP_SOURCE_DIR, VKP_BINARY_DIR, args);
  pid_t pid = fork();
  if (pid < 0) fail_msg("cannot start vkpeft %s", args);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  free(cmd);
  return (int)pid;
}

void vkp_cli_expect(const char *args, int status, const char *needle) {
  int rc = vkp_cli_run(args);
  if (strstr(output, "vkpeft: validation")) fail_msg("vkpeft %s: Vulkan validation messages:\n%s", args, output);
  if (rc != status || (needle && !strstr(output, needle)))
    fail_msg("vkpeft %s\n  exit %d (want %d), output:\n%s\n  (want it to contain '%s')", args, rc, status, output,
             needle ? needle : "");
}

void vkp_cli_expect_bad(const char *args, const char *n1, const char *n2) {
  vkp_cli_expect(args, 2, n1);
  const char *nl = strchr(output, '\n');
  if ((n2 && !strstr(output, n2)) || !nl || nl[1])
    fail_msg("vkpeft %s: want one line naming '%s'%s%s, got:\n%s", args, n1, n2 ? " and " : "", n2 ? n2 : "", output);
}
