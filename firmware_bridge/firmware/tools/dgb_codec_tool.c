/*
 * dgb_codec_tool - the C codec as a filter, so Python tests can compare both codecs on a shared
 * random corpus. Each stdin line is the hex of a byte stream; it is fed to a fresh framer and
 * every event is printed:  "FRAME <canonical> <re-encoded wire hex>" or "ERROR <error name>",
 * then "END". Blank lines are skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dgb_format.h"
#include "dgb_framer.h"

#define LINE_MAX_BYTES (256u * 1024u)

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static void print_hex(const uint8_t *b, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        printf("%02x", b[i]);
    }
}

int main(void)
{
    static char line[2u * LINE_MAX_BYTES + 8u];
    static uint8_t bytes[LINE_MAX_BYTES];
    static char text[8192];
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t n = 0;
        size_t i;
        size_t len = strlen(line);
        dgb_framer_t fr;
        while (len > 0u && (line[len - 1u] == '\n' || line[len - 1u] == '\r' || line[len - 1u] == ' ')) {
            line[--len] = '\0';
        }
        if (len == 0u) {
            continue;
        }
        if (len % 2u != 0u) {
            printf("BADHEX odd length\nEND\n");
            continue;
        }
        for (i = 0; i + 1u < len && n < LINE_MAX_BYTES; i += 2u) {
            int hi = hexval(line[i]);
            int lo = hexval(line[i + 1u]);
            if (hi < 0 || lo < 0) {
                break;
            }
            bytes[n++] = (uint8_t)((hi << 4) | lo);
        }
        dgb_framer_init(&fr);
        for (i = 0; i < n; ++i) {
            dgb_msg_t msg;
            dgb_error_t err = DGB_OK;
            dgb_framer_event_t ev = dgb_framer_push(&fr, bytes[i], &msg, &err);
            if (ev == DGB_FRAMER_FRAME) {
                uint8_t wire[DGB_MAX_WIRE];
                size_t wn = 0;
                dgb_error_t e2;
                if (!dgb_format_msg(&msg, text, sizeof text)) {
                    printf("FRAME <format overflow>\n");
                    continue;
                }
                printf("FRAME %s ", text);
                if (dgb_encode(&msg, wire, sizeof wire, &wn, &e2)) {
                    print_hex(wire, wn);
                } else {
                    printf("%s", dgb_error_name(e2));
                }
                printf("\n");
            } else if (ev == DGB_FRAMER_ERROR) {
                printf("ERROR %s\n", dgb_error_name(err));
            }
        }
        printf("END\n");
        fflush(stdout);
    }
    return 0;
}
