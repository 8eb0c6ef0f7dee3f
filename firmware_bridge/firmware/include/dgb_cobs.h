/* dgb_cobs.h - Consistent Overhead Byte Stuffing: the encoded bytes contain no 0x00, so 0x00 can
 * delimit frames and a receiver resynchronises at the next delimiter after any corruption. */
#ifndef DGB_COBS_H
#define DGB_COBS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Worst-case encoded size of n input bytes (without a delimiter). */
#define DGB_COBS_MAX_ENCODED(n) ((n) + ((n) / 254u) + 1u)

/* Encode src[0..len) into dst (capacity cap). Returns false if dst is too small. */
bool dgb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len);

/* Decode src[0..len) (no delimiter) into dst. Returns false on a 0x00 inside the input, a code
 * byte that runs past the end, or a too-small dst. */
bool dgb_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len);
#endif
