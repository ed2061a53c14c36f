// vkp_status.h — status codes and error messages shared by every vkpeft package.
//
// Functions that can fail return vkp_status (0 ok, negative error) and write a one-line message
// into a vkp_error: the device context owns one (vkp_ctx_error), context-free functions (file
// formats, configs) take a `vkp_error *err` as their last argument (NULL = no message wanted).
#ifndef VKP_STATUS_H
#define VKP_STATUS_H

#include <stdarg.h>

typedef enum vkp_status {
  VKP_OK = 0,
  VKP_ERR_INVALID = -1,     // bad argument or bad input value (config key, option)
  VKP_ERR_IO = -2,          // a file could not be opened, read or written
  VKP_ERR_FORMAT = -3,      // a file is corrupt, truncated or not in the expected format
  VKP_ERR_SHAPE = -4,       // tensor shapes or dtypes do not fit
  VKP_ERR_OOM = -5,         // host or device memory exhausted
  VKP_ERR_DEVICE = -6,      // Vulkan failure, device lost
  VKP_ERR_SHADER = -7,      // shader module or pipeline creation failed
  VKP_ERR_UNSUPPORTED = -8, // feature not available on this device / not implemented for this input
  VKP_ERR_NOT_FOUND = -9,   // a named tensor, key or device does not exist
} vkp_status;

#define VKP_ERROR_MSG_MAX 512

typedef struct vkp_error {
  vkp_status status;            // last status recorded
  char msg[VKP_ERROR_MSG_MAX];  // one line, no trailing newline
} vkp_error;

// Records `status` and a printf-style message into err (if err is non-NULL); returns status so
// callers can write `return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open", path);`. The
// arguments may include err->msg itself, to prefix a lower layer's message ("%s: %s", path, err->msg).
vkp_status vkp_error_set(vkp_error *err, vkp_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
vkp_status vkp_error_setv(vkp_error *err, vkp_status status, const char *fmt, va_list ap);

// Clears err to VKP_OK with an empty message.
void vkp_error_clear(vkp_error *err);

// Short name of a status code, e.g. "format error".
const char *vkp_status_name(vkp_status status);

// Propagate a failing status: `VKP_TRY(vkp_foo(...));`
#define VKP_TRY(expr)                   \
  do {                                  \
    vkp_status vkp_try_st_ = (expr);    \
    if (vkp_try_st_ != VKP_OK) return vkp_try_st_; \
  } while (0)

#endif
