// cli_gen_prompts.c — `vkpeft generate --prompts FILE` (cli_generate.h): one prompt per line, as
// A1111's "Prompts from file or textbox" script reads them (blank lines skipped; here also lines
// starting with '#', so a list can carry comments).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_generate.h"
#include "vkp_fileio.h"

void vkp_gen_prompts_free(char **prompts, int n) {
  for (int i = 0; i < n; i++) free(prompts[i]);
  free(prompts);
}

vkp_status vkp_gen_prompts_read(const char *path, char ***prompts, int *n, vkp_error *err) {
  *prompts = NULL;
  *n = 0;
  char *text = NULL;
  size_t len = 0;
  vkp_status st = vkp_file_read_all(path, (size_t)VKP_GEN_MAX_PROMPTS * VKP_GEN_MAX_PROMPT_BYTES, &text, &len, err);
  if (st) return st;
  if (memchr(text, 0, len)) {
    free(text);
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a text file (NUL byte)", path);
  }
  char **out = calloc(VKP_GEN_MAX_PROMPTS, sizeof *out);
  int count = 0, line_no = 0;
  if (!out) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (char *line = text; !st && line < text + len; ) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    char *end = nl ? nl : text + len;
    char *next = nl ? nl + 1 : text + len;
    line_no++;
    while (line < end && (*line == ' ' || *line == '\t')) line++;
    while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t l = (size_t)(end - line);
    if (l && line[0] != '#') {
      if (count == VKP_GEN_MAX_PROMPTS)
        st = vkp_error_set(err, VKP_ERR_INVALID, "%s: more than %d prompts", path, VKP_GEN_MAX_PROMPTS);
      else if (l >= VKP_GEN_MAX_PROMPT_BYTES)
        st = vkp_error_set(err, VKP_ERR_INVALID, "%s:%d: prompt longer than %d bytes", path, line_no,
                           VKP_GEN_MAX_PROMPT_BYTES - 1);
      else if (memmem(line, l, "<lora:", 6))
        st = vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                           "%s:%d: <lora:...> tags are not supported in a prompts file (they would change the model "
                           "between images); pass --lora FILE[:SCALE]", path, line_no);
      else if (!(out[count] = malloc(l + 1))) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      else {
        memcpy(out[count], line, l);
        out[count++][l] = 0;
      }
    }
    line = next;
  }
  free(text);
  if (!st && !count) st = vkp_error_set(err, VKP_ERR_INVALID, "%s: no prompts (every line is blank or a # comment)", path);
  if (st) {
    vkp_gen_prompts_free(out, count);
    return st;
  }
  *prompts = out;
  *n = count;
  return VKP_OK;
}
