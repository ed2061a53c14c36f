// status.c — vkp_error helpers.
#include "vkp_status.h"

#include <stdio.h>
#include <string.h>

vkp_status vkp_error_setv(vkp_error *err, vkp_status status, const char *fmt, va_list ap) {
  if (err) {
    // Formatted aside first: callers prefix a message with its own text (`"%s: %s", path, err->msg`).
    char msg[sizeof err->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    err->status = status;
    memcpy(err->msg, msg, sizeof msg);
  }
  return status;
}

vkp_status vkp_error_set(vkp_error *err, vkp_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vkp_error_setv(err, status, fmt, ap);
  va_end(ap);
  return status;
}

void vkp_error_clear(vkp_error *err) {
  if (!err) return;
  err->status = VKP_OK;
  err->msg[0] = '\0';
}

const char *vkp_status_name(vkp_status status) {
  switch (status) {
    case VKP_OK: return "ok";
    case VKP_ERR_INVALID: return "invalid argument";
    case VKP_ERR_IO: return "i/o error";
    case VKP_ERR_FORMAT: return "format error";
    case VKP_ERR_SHAPE: return "shape error";
    case VKP_ERR_OOM: return "out of memory";
    case VKP_ERR_DEVICE: return "device error";
    case VKP_ERR_SHADER: return "shader error";
    case VKP_ERR_UNSUPPORTED: return "unsupported";
    case VKP_ERR_NOT_FOUND: return "not found";
  }
  return "unknown error";
}
