// vkpeft_cli.h — subcommands of the vkpeft program. Each lives in tools/cmd_<name>.c and returns
// the process exit status, the same for every subcommand (README "Exit codes and limits"):
//   0 ok; 2 bad input (usage, a missing/corrupt/oversized file, a bad config key, a shape or model
//   the program does not support, an output path it will not replace, a diverged training run);
//   3 a device or internal failure (Vulkan error, out of memory, shader or pipeline creation).
#ifndef VKPEFT_CLI_H
#define VKPEFT_CLI_H

#include <stdbool.h>

#define VKP_EXIT_OK 0
#define VKP_EXIT_BAD_INPUT 2
#define VKP_EXIT_FAIL 3   // device or internal error

int cmd_devices(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);

// Prints "vkpeft <cmd>: <message>" to stderr and returns the exit status for `status`
// (2 for input errors: invalid, io, format, shape, not found, unsupported; 3 otherwise: out of
// memory, device, shader).
int vkp_cli_fail(const char *cmd, int status, const char *message);

// A copy of s (from a file: tensor names, metadata, text chunks) that is safe to print on a
// terminal: control characters (ESC, BEL, CR, ...), DEL and the C1 controls U+0080..U+009F are
// written as \xNN / \u00NN escapes, and a backslash as "\\"; `multiline` keeps newlines and tabs
// (text chunks, captions). The caller frees it; NULL when out of memory.
char *vkp_cli_escape(const char *s, bool multiline);

#endif
