// pairs_internal.h — helpers shared by the image–text pair sources (not installed, not public).
#ifndef VKP_PAIRS_INTERNAL_H
#define VKP_PAIRS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data_internal.h"
#include "vkp_pairs.h"

// One image as a reader found it, before decoding. Every string is owned.
typedef struct vkp_pairs_entry {
  char *path;                  // the image file
  char *key;                   // content identity; NULL = the path
  char *name;                  // or NULL
  vkp_data_strings captions;   // at least one when built
  int32_t repeats;             // >= 1
} vkp_pairs_entry;

typedef VKP_VEC(vkp_pairs_entry) vkp_pairs_entries;

void vkp_pairs_entries_free(vkp_pairs_entries *e);
// Appends an entry with path and key (taken over: freed on failure too), no name, no caption,
// repeats 1. Returns the new entry, NULL on OOM.
vkp_pairs_entry *vkp_pairs_entries_add(vkp_pairs_entries *e, char *path, char *key);
// Drops the last entry.
void vkp_pairs_entries_pop(vkp_pairs_entries *e);
// Appends a caption (taken over: freed on failure). VKP_OK or VKP_ERR_OOM (no message).
vkp_status vkp_pairs_entry_caption(vkp_pairs_entry *e, char *caption);

// Decodes the entries' images (vkp_data_decode_files) into a new pair set named `what`; takes the
// entries over (empties them). Entries whose image is skipped (opts->skip_bad) are left out.
vkp_status vkp_pairs_build(const char *what, vkp_pairs_entries *e, const vkp_pairs_opts *opts,
                           vkp_pairs **out, vkp_error *err);

// The decode options for pair options (channels 0 -> 4), after checking them.
vkp_status vkp_pairs_load_opts(const char *what, const vkp_pairs_opts *opts,
                               vkp_data_load_opts *lo, vkp_error *err);

// Distinct names of names[0..n-1] (NULL entries: no name) in strcmp order as new strings
// (*class_names, *n_classes) and each image's id in labels (-1 without a name).
// VKP_OK or VKP_ERR_OOM (no message).
vkp_status vkp_pairs_name_ids(char *const *names, size_t n, char ***class_names, int *n_classes,
                              int32_t *labels);

// Trims ASCII white space at both ends in place; returns s.
char *vkp_pairs_trim(char *s);
// Lower-cases ASCII and the Latin-1 capitals (U+00C0..U+00DE, UTF-8 C3 80..C3 9E) in place.
void vkp_pairs_lower(char *s);

#endif
