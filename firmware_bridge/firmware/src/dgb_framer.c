#include "dgb_framer.h"

#include <string.h>

void dgb_framer_init(dgb_framer_t *f)
{
    memset(f, 0, sizeof *f);
}

dgb_framer_event_t dgb_framer_push(dgb_framer_t *f, uint8_t byte, dgb_msg_t *out, dgb_error_t *err)
{
    if (byte == 0u) {
        size_t n = f->len;
        bool was_discarding = f->discarding;
        f->len = 0;
        f->discarding = false;
        if (was_discarding || n == 0u) {
            /* End of an overflow (already reported) or an empty frame (idle delimiters). */
            return DGB_FRAMER_NONE;
        }
        if (dgb_decode(f->buf, n, out, err)) {
            ++f->frames_ok;
            return DGB_FRAMER_FRAME;
        }
        ++f->frames_rejected;
        return DGB_FRAMER_ERROR;
    }
    if (f->discarding) {
        return DGB_FRAMER_NONE;
    }
    if (f->len >= sizeof f->buf) {
        /* Bounded buffer: drop everything until the next delimiter. */
        f->discarding = true;
        ++f->resyncs;
        ++f->frames_rejected;
        *err = DGB_ERR_OVERSIZE;
        return DGB_FRAMER_ERROR;
    }
    f->buf[f->len++] = byte;
    return DGB_FRAMER_NONE;
}
