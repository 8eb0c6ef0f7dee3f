/* CRC-32/ISO-HDLC, bytewise with a 256-entry table computed at compile time by hand-free
 * generation: the table is built on first use into static storage (no malloc). */
#include "dgb_crc32.h"

#include <stdbool.h>

static uint32_t crc_table[256];
static bool crc_table_ready = false;

static void crc_table_init(void)
{
    uint32_t i;
    for (i = 0; i < 256u; ++i) {
        uint32_t c = i;
        int k;
        for (k = 0; k < 8; ++k) {
            c = (c & 1u) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
        }
        crc_table[i] = c;
    }
    crc_table_ready = true;
}

uint32_t dgb_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    if (!crc_table_ready) {
        crc_table_init();
    }
    crc = ~crc;
    for (i = 0; i < len; ++i) {
        crc = crc_table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
    }
    return ~crc;
}
