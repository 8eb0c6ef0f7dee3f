#include "dgb_cobs.h"

bool dgb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len)
{
    size_t code_pos = 0; /* where the current block's code byte goes */
    size_t w = 1;        /* next write position (position 0 is reserved for the first code) */
    uint8_t code = 1;    /* 1 + number of data bytes in the current block */
    size_t i;
    if (cap < 1u) {
        return false;
    }
    for (i = 0; i < len; ++i) {
        const uint8_t b = src[i];
        if (b != 0u) {
            if (w >= cap) {
                return false;
            }
            dst[w++] = b;
            ++code;
        }
        if (b == 0u || code == 0xFFu) {
            /* Close the block: a zero byte, or 254 data bytes (no implied zero then). */
            dst[code_pos] = code;
            code = 1;
            code_pos = w;
            if (b == 0u || i + 1u < len) {
                if (w >= cap) {
                    return false;
                }
                ++w; /* reserve the next code byte */
            }
        }
    }
    if (code_pos < w) {
        dst[code_pos] = code;
    }
    *out_len = w;
    return true;
}

bool dgb_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len)
{
    size_t r = 0;
    size_t w = 0;
    while (r < len) {
        uint8_t code = src[r++];
        size_t k;
        if (code == 0u) {
            return false;
        }
        for (k = 1; k < code; ++k) {
            if (r >= len || src[r] == 0u || w >= cap) {
                return false;
            }
            dst[w++] = src[r++];
        }
        /* An implied zero follows every block shorter than 254 bytes, except the last one. */
        if (code != 0xFFu && r < len) {
            if (w >= cap) {
                return false;
            }
            dst[w++] = 0u;
        }
    }
    *out_len = w;
    return true;
}
