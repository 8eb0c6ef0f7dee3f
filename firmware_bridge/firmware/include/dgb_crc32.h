/* dgb_crc32.h - CRC-32/ISO-HDLC (the zlib / Ethernet CRC): poly 0x04C11DB7 reflected (0xEDB88320),
 * init 0xFFFFFFFF, reflected in and out, final XOR 0xFFFFFFFF. Check value: "123456789" -> 0xCBF43926. */
#ifndef DGB_CRC32_H
#define DGB_CRC32_H
#include <stddef.h>
#include <stdint.h>

#define DGB_CRC32_CHECK 0xCBF43926u

/* CRC of data[0..len). Start with crc = 0 and chain calls: crc = dgb_crc32(crc, next, n). */
uint32_t dgb_crc32(uint32_t crc, const uint8_t *data, size_t len);
#endif
