// clip_tok_embed.c — OpenAI's bpe_simple_vocab_16e6.txt.gz (vlm/data/, MIT licence beside it),
// linked into the library with the assembler's .incbin, so the tokenizer needs no file at run
// time. CMake passes the file's path as VKP_CLIP_BPE_GZ and rebuilds this file when it changes.
#include "clip_tok_internal.h"

#ifndef VKP_CLIP_BPE_GZ
#error "VKP_CLIP_BPE_GZ (path of bpe_simple_vocab_16e6.txt.gz) must be defined by the build"
#endif

__asm__(".pushsection .rodata.vkp_clip_bpe_gz, \"a\", @progbits\n"
        ".balign 16\n"
        "clip_tok_bpe_gz_start:\n"
        ".incbin \"" VKP_CLIP_BPE_GZ "\"\n"
        "clip_tok_bpe_gz_end:\n"
        ".popsection\n");

extern const unsigned char clip_tok_bpe_gz_start[] __asm__("clip_tok_bpe_gz_start");
extern const unsigned char clip_tok_bpe_gz_end[] __asm__("clip_tok_bpe_gz_end");

const unsigned char *clip_tok_embedded_bpe(size_t *size) {
  *size = (size_t)(clip_tok_bpe_gz_end - clip_tok_bpe_gz_start);
  return clip_tok_bpe_gz_start;
}
