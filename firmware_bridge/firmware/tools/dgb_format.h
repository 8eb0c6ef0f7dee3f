/* Canonical one-line text form of a decoded message, identical to firmware_bridge.codec.canonical()
 * in Python: the test vectors and the shared random corpus compare codecs through it. */
#ifndef DGB_FORMAT_H
#define DGB_FORMAT_H
#include <stddef.h>

#include "dgb_protocol.h"

/* Writes at most cap bytes (NUL-terminated); returns false if the text did not fit. */
bool dgb_format_msg(const dgb_msg_t *msg, char *out, size_t cap);
#endif
