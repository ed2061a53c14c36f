// vkpeft_cli.h — subcommands of the vkpeft program. Each lives in tools/cmd_<name>.c and returns
// the process exit status: 0 ok, 1 runtime failure, 2 bad input (usage, missing/corrupt file).
#ifndef VKPEFT_CLI_H
#define VKPEFT_CLI_H

#define VKP_EXIT_OK 0
#define VKP_EXIT_FAIL 1
#define VKP_EXIT_BAD_INPUT 2

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
// (2 for input errors: invalid, io, format, shape, not found, unsupported; 1 otherwise).
int vkp_cli_fail(const char *cmd, int status, const char *message);

#endif
