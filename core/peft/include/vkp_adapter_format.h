// vkp_adapter_format.h — adapter files as pluggable readers/writers. A format maps an adapter's
// tensors (vkp_adapter_tensor: a slot parameter of a module, an adapter-wide parameter, or a
// trained base parameter) to the keys of its files and back. HF PEFT folders
// (adapter_config.json + adapter_model.safetensors, core/peft/format_peft.c) are the one format
// today; kohya/LyCORIS safetensors (`lora_unet_<module_with_underscores>.lora_down.weight`,
// `.lora_up.weight`, `.alpha`) and diffusers files plug in as further formats:
//   detect  the file's keys (`lora_unet_`/`lora_te_` prefixes, `.lora_down.weight` suffixes);
//   read    for each module of the model, the format's spelling of each of its names
//           (vkp_adapter_find_module with a spell function: prefix + name with '.' -> '_'), so
//           the ambiguous underscores never have to be parsed; group the keys by module, build a
//           config (method from the suffixes, r from the shapes, target_modules = the module
//           names found), vkp_peft_attach, set each slot's scaling from its `.alpha`
//           (vkp_adapter_slot_set_scaling), then vkp_adapter_load_tensors (all or nothing);
//   write   vkp_adapter_tensor_at for every tensor, the module's spelling and the format's suffix.
#ifndef VKP_ADAPTER_FORMAT_H
#define VKP_ADAPTER_FORMAT_H

#include "vkp_peft.h"
#include "vkp_safetensors.h"

// Options of one read or write.
typedef struct vkp_adapter_io {
  const char *key_prefix;     // a format's prefix of this model's keys in a shared file ("lora_unet_",
                              // "unet."), NULL for the format's default
  const char *adapter_name;   // read: name of the attached adapter (NULL: the file's, else "default")
} vkp_adapter_io;

typedef struct vkp_adapter_format {
  const char *name;           // "peft"
  const char *description;
  // True if `path` (a folder or a file) holds this format.
  bool (*detect)(const char *path);
  // Attaches the adapter stored at `path` to m; on failure the model is left as it was.
  vkp_status (*read)(vkp_model *m, const char *path, const vkp_adapter_io *io, vkp_adapter **out);
  vkp_status (*write)(vkp_model *m, const vkp_adapter *a, const char *path, const vkp_adapter_io *io);
} vkp_adapter_format;

// The formats (NULL-terminated), and lookups.
extern const vkp_adapter_format *const vkp_adapter_formats[];
extern const vkp_adapter_format vkp_adapter_format_peft;   // HF PEFT folders
const vkp_adapter_format *vkp_adapter_format_find(const char *name);
const vkp_adapter_format *vkp_adapter_format_detect(const char *path);
// Reads / writes with the named format (NULL: detect on read, "peft" on write); io may be NULL.
vkp_status vkp_adapter_read(vkp_model *m, const char *path, const char *format, const vkp_adapter_io *io,
                            vkp_adapter **out);
vkp_status vkp_adapter_write(vkp_model *m, const vkp_adapter *a, const char *path, const char *format,
                             const vkp_adapter_io *io);

// ---- for format implementations -----------------------------------------------------------------

typedef enum vkp_adapter_tensor_kind {
  VKP_ADAPTER_TENSOR_SLOT = 0,   // a parameter the method created for a module
  VKP_ADAPTER_TENSOR_SHARED,     // an adapter-wide parameter (VeRA's projections)
  VKP_ADAPTER_TENSOR_SAVED,      // a trained base parameter (modules_to_save, BitFit, LN tuning, full)
} vkp_adapter_tensor_kind;

typedef struct vkp_adapter_tensor {
  vkp_adapter_tensor_kind kind;
  vkp_param *param;
  const vkp_module *module;      // SLOT, SAVED: its module (SAVED: NULL for a free parameter)
  const char *suffix;            // SLOT: the method's saved suffix ("lora_A.weight"); SHARED: its name
                                 // ("vera_A"); SAVED: NULL
  int slot;                      // SLOT: the slot index (vkp_adapter_slot_module)
} vkp_adapter_tensor;

// The adapter's tensors, in a stable order (slots, saved, shared).
int vkp_adapter_tensor_count(const vkp_adapter *a);
vkp_adapter_tensor vkp_adapter_tensor_at(const vkp_adapter *a, int i);
// Slots: count, the multiplier of a slot's delta (alpha / r, ...), and its change (a format whose
// files store a per-module alpha).
int vkp_adapter_slot_count(const vkp_adapter *a);
float vkp_adapter_slot_scaling(const vkp_adapter *a, int slot);
void vkp_adapter_slot_set_scaling(vkp_adapter *a, int slot, float scaling);

// Attaches cfg to exactly the n modules given (its targeting keys are replaced by a regex naming
// them, so the adapter written as an HF PEFT folder loads onto the same modules): for readers of
// formats whose files list their modules (kohya, diffusers).
vkp_status vkp_adapter_attach_modules(vkp_model *m, const vkp_peft_config *cfg, vkp_module *const *mods, int n,
                                      uint64_t seed, vkp_adapter **out);
// The module one of whose names, passed through `spell` (NULL: as is), equals `key`.
typedef void (*vkp_module_spell_fn)(void *user, const char *name, char *out, size_t cap);
vkp_module *vkp_adapter_find_module(const vkp_model *m, const char *key, vkp_module_spell_fn spell, void *user);

// Binds the tensors of `sf` (file `where`) to a's parameters and writes them, all or nothing:
// `bind` maps a key to a parameter (VKP_ADAPTER_KEY_PARAM), marks it consumed elsewhere
// (VKP_ADAPTER_KEY_SKIP, e.g. kohya's `.alpha`), or rejects it (VKP_ADAPTER_KEY_UNKNOWN: an error
// naming the tensor). Each parameter must be bound once, with its element count (I32 index
// tensors in range of their module's weight); every parameter of `a` must be present.
typedef enum { VKP_ADAPTER_KEY_UNKNOWN = 0, VKP_ADAPTER_KEY_PARAM, VKP_ADAPTER_KEY_SKIP } vkp_adapter_key_kind;
typedef vkp_adapter_key_kind (*vkp_adapter_bind_fn)(void *user, const vkp_adapter *a, const char *key,
                                                    vkp_param **out);
vkp_status vkp_adapter_load_tensors(vkp_model *m, vkp_adapter *a, const vkp_safetensors *sf, const char *where,
                                    vkp_adapter_bind_fn bind, void *user);
// Removes an adapter again (a reader's failure path): unlinks and frees what it created.
void vkp_adapter_discard(vkp_model *m, vkp_adapter *a);

#endif
