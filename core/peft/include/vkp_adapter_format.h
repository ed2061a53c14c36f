// vkp_adapter_format.h — adapter files as pluggable readers/writers. A format maps an adapter's
// tensors (vkp_adapter_tensor: a slot parameter of a module, an adapter-wide parameter, or a
// trained base parameter) to the keys of its files and back. The formats: HF PEFT folders
// (adapter_config.json + adapter_model.safetensors, core/peft/format_peft.c), kohya/A1111/LyCORIS
// single files (`lora_unet_<module_with_underscores>.lora_down.weight`, `.lora_up.weight`,
// `.alpha`; LoHa `hada_*`, LoKr `lokr_*`, DoRA `dora_scale`; core/peft/format_kohya.c) and
// diffusers/PEFT single files (`unet.<module>.lora_A.weight`, core/peft/format_diffusers.c):
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
                              // "unet.", "lora_te_"), NULL for the format's default; keys under the
                              // format's other prefixes are then another model's and skipped silently
  const char *adapter_name;   // read: name of the attached adapter (NULL: the file's, else "default")
  bool skip_unmatched;        // read (kohya, diffusers): keys that name no module of the model are skipped
                              // with one warning on stderr (A1111 ignores them); default: an error listing
                              // the first few
  float alpha;                // read (diffusers): alpha when the file stores none (> 0); 0: alpha = r (scale
                              // 1), as diffusers loads such a file
  const char *base_model_version;   // write (kohya): `ss_base_model_version` ("sd_v1", "sd_v2",
                                    // "sdxl_base_v1-0") in __metadata__; NULL: not written
  const char *const *metadata;      // write (kohya): more __metadata__ entries (a trainer's ss_* keys),
                                    // key, value, key, value, ..., NULL; written after (over) the above
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
extern const vkp_adapter_format vkp_adapter_format_peft;        // HF PEFT folders
extern const vkp_adapter_format vkp_adapter_format_kohya;       // kohya / A1111 / LyCORIS .safetensors
extern const vkp_adapter_format vkp_adapter_format_diffusers;   // diffusers / PEFT pytorch_lora_weights.safetensors
const vkp_adapter_format *vkp_adapter_format_find(const char *name);
const vkp_adapter_format *vkp_adapter_format_detect(const char *path);
// Reads / writes with the named format (NULL: detect on read, "peft" on write); io may be NULL.
vkp_status vkp_adapter_read(vkp_model *m, const char *path, const char *format, const vkp_adapter_io *io,
                            vkp_adapter **out);
vkp_status vkp_adapter_write(vkp_model *m, const vkp_adapter *a, const char *path, const char *format,
                             const vkp_adapter_io *io);
// An adapter folder (HF PEFT) or a .safetensors file (kohya, diffusers), format by detection.
vkp_status vkp_adapter_load(vkp_model *m, const char *path, vkp_adapter **out);
// Writes `a` as "peft" (a folder), "kohya" or "diffusers" (a .safetensors file).
vkp_status vkp_adapter_save_format(vkp_model *m, const vkp_adapter *a, const char *path, const char *format);

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

// ---- low-rank single files (format_kohya.c; shared with format_diffusers.c) ---------------------
// A file's tensors for one module, by role; the builder checks them (float dtypes, scalar alphas,
// matching ranks and module shapes, one method per file), attaches one adapter with r = the largest
// rank (smaller ranks are zero-padded, which changes no output; the kohya writer trims the padding
// again), sets each slot's scaling from its alpha (kohya: alpha / rank; missing: alpha = rank) and
// writes the parameters, deriving what the methods store differently (LoCon's lora_mid folded into
// lora_down, LoKr's lokr_w1_a @ lokr_w1_b). Any failure leaves the model as it was.
typedef enum {
  VKP_LR_DOWN = 0, VKP_LR_UP, VKP_LR_MID, VKP_LR_ALPHA, VKP_LR_DORA,
  VKP_LR_HADA_W1_A, VKP_LR_HADA_W1_B, VKP_LR_HADA_W2_A, VKP_LR_HADA_W2_B, VKP_LR_HADA_T1, VKP_LR_HADA_T2,
  VKP_LR_LOKR_W1, VKP_LR_LOKR_W1_A, VKP_LR_LOKR_W1_B, VKP_LR_LOKR_W2, VKP_LR_LOKR_W2_A, VKP_LR_LOKR_W2_B, VKP_LR_LOKR_T2,
  VKP_LR_ROLES
} vkp_lowrank_role;
typedef struct vkp_lowrank_entry {
  char stem[400];                        // the file's module key ("lora_unet_..._to_q", "unet.<module>")
  vkp_module *mod;
  const vkp_st_tensor *t[VKP_LR_ROLES];
  bool dora_peft;                        // DORA is peft's lora_magnitude_vector (else LyCORIS dora_scale)
  bool has_alpha;                        // alpha given outside the tensors (diffusers metadata)
  float alpha;
} vkp_lowrank_entry;
vkp_status vkp_lowrank_build(vkp_model *m, const char *path, vkp_lowrank_entry *e, int n, const vkp_adapter_io *io,
                             vkp_adapter **out);
// Groups a file's keys into entries (*out, *nout; caller frees): `split` gives a key's stem (module
// key) and role (false: not a key of the format); the stem starts with one of `prefixes` (NULL-
// terminated) and names the module whose name, after the prefix ('.' -> '_' when `underscores`),
// is the rest. A prefix none of whose stems names a module is another model's (skipped, noted on
// stderr); other keys that match nothing are an error naming the first few (io->skip_unmatched:
// a warning); no match at all is always an error. With io->key_prefix only stems under it are
// taken; stems under the other `prefixes` (the format's parts) are skipped without a note.
vkp_status vkp_lowrank_group(vkp_model *m, const char *path, const vkp_safetensors *sf, const vkp_adapter_io *io,
                             const char *const *prefixes, bool underscores,
                             bool (*split)(const char *key, char *stem, size_t cap, int *role, bool *peft_dora),
                             vkp_lowrank_entry **out, int *nout);

#endif
