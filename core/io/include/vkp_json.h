// vkp_json.h — JSON documents in and out: strict parsing, atomic writes, and a table-driven reader
// for typed keys (HF config.json files, adapter configs, trainer states).
//
// A reader declares its keys once, as a table:
//
//   static const vkp_json_field fields[] = {
//       {"image_size", VKP_JSON_INT, offsetof(vkp_vit_config, image_size), .lo = 1, .hi = 8192, .def = 224},
//       {"layer_norm_eps", VKP_JSON_FLOAT, offsetof(vkp_vit_config, layer_norm_eps), .hi = 1,
//        .def = 1e-12, .flags = VKP_JSON_OPEN_LO},
//       {"qkv_bias", VKP_JSON_BOOL, offsetof(vkp_vit_config, qkv_bias), .def = 1},
//   };
//   vkp_json_read_fields(json, path, fields, n, &cfg, err);
//
// Every error names the file (`where`) and the key: "config.json: key 'image_size' must be an
// integer in [1, 8192]".
#ifndef VKP_JSON_H
#define VKP_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "vkp_status.h"

// ---- documents ---------------------------------------------------------------------------------

// Parses text[0..len) as exactly one JSON document: anything but white space after it is an error
// (cJSON alone stops at the end of the first value): "<where>: trailing text after the JSON
// document (at byte N)", "<where>: not valid JSON (near byte N)".
// *out: new tree, caller frees with cJSON_Delete. Errors: VKP_ERR_FORMAT.
vkp_status vkp_json_parse(const char *text, size_t len, const char *where, cJSON **out, vkp_error *err);
// Reads the file at `path` (at most max_bytes) and parses it with vkp_json_parse.
// Errors: VKP_ERR_IO (as vkp_file_read_all), VKP_ERR_FORMAT.
vkp_status vkp_json_load(const char *path, size_t max_bytes, cJSON **out, vkp_error *err);
// vkp_json_load, and the document must be an object (VKP_ERR_FORMAT "not a JSON object").
vkp_status vkp_json_load_object(const char *path, size_t max_bytes, cJSON **out, vkp_error *err);
// Writes `doc` formatted (cJSON_Print) to `path` atomically (temp file, fsync, rename: see
// vkp_file_write_atomic). Errors: VKP_ERR_OOM, VKP_ERR_IO.
vkp_status vkp_json_write_atomic(const char *path, const cJSON *doc, vkp_error *err);

// What a value is, for messages: "a number", "a string", "true or false", "a list", "an object",
// "null".
const char *vkp_json_kind(const cJSON *v);

// ---- table-driven reading -----------------------------------------------------------------------

typedef enum vkp_json_type {
  VKP_JSON_INT,     // int: an integral number in [lo, hi] (lo = hi = 0: any int)
  VKP_JSON_INT64,   // int64_t: an integral number in [lo, hi] (lo = hi = 0: |v| <= 2^53)
  VKP_JSON_FLOAT,   // float: a number finite as a float, in [lo, hi] (lo = hi = 0: any)
  VKP_JSON_DOUBLE,  // double: a finite number in [lo, hi] (lo = hi = 0: any)
  VKP_JSON_BOOL,    // bool: true or false
  VKP_JSON_STRING,  // char[size]: a string shorter than `size` bytes
  VKP_JSON_ENUM,    // one of `choices` (by name); its value stored in an int (size 0 or 4) or a
                    // bool / uint8 (size 1); offset VKP_JSON_CHECK_ONLY stores nothing
} vkp_json_type;

typedef struct vkp_json_choice {
  const char *name;
  int value;
} vkp_json_choice;

#define VKP_JSON_REQUIRED 1u      // a missing key is an error (else the default is written)
#define VKP_JSON_KEEP 2u          // a missing key leaves the field as it is (no default)
#define VKP_JSON_NULL_DEFAULT 4u  // null counts as missing (HF configs: Python's None)
#define VKP_JSON_OPEN_LO 8u       // the lower bound is exclusive (v > lo)
#define VKP_JSON_UNSUPPORTED 16u  // ENUM: another string is VKP_ERR_UNSUPPORTED (a value the
                                  // format allows that vkpeft does not implement), not INVALID
#define VKP_JSON_OPEN_HI 32u      // the upper bound is exclusive (v < hi), e.g. a dropout in [0, 1)

#define VKP_JSON_CHECK_ONLY ((size_t)-1)   // offset of an ENUM that is checked, not stored

typedef struct vkp_json_field {
  const char *key;                       // member name in the object
  vkp_json_type type;
  size_t offset;                         // offsetof(struct, member)
  double lo, hi;                         // numeric range, inclusive (see the types); hi = INFINITY:
                                         // no upper bound
  double def;                            // default of numbers, bools (0/1) and enums (a value)
  const char *def_str;                   // default of strings (NULL: "")
  size_t size;                           // STRING: buffer size; ENUM: storage size (0 = int)
  const vkp_json_choice *choices;        // ENUM: terminated by {NULL, 0}
  unsigned flags;                        // VKP_JSON_*
} vkp_json_field;

// Reads the n fields of `fields` from the object `obj` into the struct at `out`: a present key
// must have the field's type and range, a missing one gets its default (or is an error, or is
// left, by flags). Keys of `obj` not in the table are not looked at. The first bad key stops the
// read (fields before it are already written). Errors: VKP_ERR_INVALID (wrong type, out of range,
// not finite, missing, unknown choice), VKP_ERR_UNSUPPORTED (ENUM with VKP_JSON_UNSUPPORTED).
vkp_status vkp_json_read_fields(const cJSON *obj, const char *where, const vkp_json_field *fields, int n, void *out,
                                vkp_error *err);
// Writes the defaults of the n fields into `out` (fields with VKP_JSON_KEEP too).
void vkp_json_field_defaults(const vkp_json_field *fields, int n, void *out);

#endif
