// vkp_cli_run.h — running the built vkpeft program from tests, as a user would.
#ifndef VKP_CLI_RUN_H
#define VKP_CLI_RUN_H

#include <stddef.h>

// Runs `cd VKP_SOURCE_DIR && VKP_BINARY_DIR/vkpeft <args>` through the shell with stdout and
// stderr captured together; returns the exit status (128 + the signal when one killed it).
int vkp_cli_run(const char *args);
// The captured output of the last run (at most 64 KiB; static storage).
const char *vkp_cli_output(void);
// Starts `cd VKP_SOURCE_DIR && exec VKP_BINARY_DIR/vkpeft <args>` in the background (its output
// to /dev/null) and returns its process id, for tests that kill it (SIGKILL) at some moment; the
// caller waits for it (waitpid).
int vkp_cli_spawn(const char *args);
// Runs and fails the test unless the exit status is `status`, the output contains `needle`
// (NULL: anything) and the Vulkan validation layer said nothing.
void vkp_cli_expect(const char *args, int status, const char *needle);
// Bad input: runs and fails the test unless the exit status is 2 and the output is exactly one line
// containing n1 and n2 (NULL: only n1).
void vkp_cli_expect_bad(const char *args, const char *n1, const char *n2);

#endif
