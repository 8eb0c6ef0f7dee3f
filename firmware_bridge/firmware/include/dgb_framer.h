/* dgb_framer.h - byte-at-a-time receive framer with a bounded buffer.
 *
 * Bytes accumulate until a 0x00 delimiter; the frame is then decoded. More than DGB_MAX_ENCODED
 * bytes without a delimiter is reported once as DGB_ERR_OVERSIZE and the rest is discarded until
 * the next delimiter (a resync), so garbage of any length costs at most one buffer. */
#ifndef DGB_FRAMER_H
#define DGB_FRAMER_H
#include "dgb_protocol.h"

typedef enum {
    DGB_FRAMER_NONE = 0,  /* byte consumed, nothing complete */
    DGB_FRAMER_FRAME = 1, /* *out holds a decoded frame */
    DGB_FRAMER_ERROR = 2  /* *err holds why the frame (or the overflow) was rejected */
} dgb_framer_event_t;

typedef struct {
    uint8_t buf[DGB_MAX_ENCODED];
    size_t len;
    bool discarding;
    uint32_t frames_ok;
    uint32_t frames_rejected;
    uint32_t resyncs;
} dgb_framer_t;

void dgb_framer_init(dgb_framer_t *f);
dgb_framer_event_t dgb_framer_push(dgb_framer_t *f, uint8_t byte, dgb_msg_t *out, dgb_error_t *err);
#endif
