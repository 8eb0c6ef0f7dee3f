/*
 * libFuzzer target for the receive path: arbitrary bytes go through the framer and the device
 * state machine. Invariants (abort on violation): the framer's buffer stays bounded, every decoded
 * frame re-encodes and decodes to the same canonical message, and no non-finite value ever
 * reaches the setpoint.  Build with clang: -fsanitize=fuzzer,address (see CMakeLists.txt).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dgb_device.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void discard(void *ctx, const uint8_t *b, size_t n)
{
    (void)ctx;
    (void)b;
    (void)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dgb_device_t dev;
    dgb_device_config_t cfg;
    dgb_framer_t f;
    size_t i;
    unsigned j;
    uint64_t now = 1000u;

    dgb_framer_init(&f);
    for (i = 0; i < size; ++i) {
        dgb_msg_t m;
        dgb_error_t e = DGB_OK;
        if (dgb_framer_push(&f, data[i], &m, &e) == DGB_FRAMER_FRAME) {
            uint8_t wire[DGB_MAX_WIRE];
            size_t n = 0;
            dgb_msg_t m2;
            if (!dgb_encode(&m, wire, sizeof wire, &n, &e) || !dgb_decode(wire, n - 1u, &m2, &e) ||
                m2.type != m.type || m2.seq != m.seq || m2.session_id != m.session_id) {
                abort();
            }
        }
        if (f.len > sizeof f.buf) {
            abort();
        }
    }

    /* The same bytes against the device; the session id is taken from the input so fuzzing can
     * reach past the session check. */
    dgb_device_default_config(&cfg);
    dgb_device_init(&dev, &cfg, size >= 4u ? (uint32_t)data[0] | ((uint32_t)data[1] << 8) : 1u, now, NULL,
                    discard, NULL, NULL);
    for (i = 0; i < size; i += 64u) {
        size_t n = size - i < 64u ? size - i : 64u;
        dgb_device_rx(&dev, data + i, n, now);
        now += 1000u;
        dgb_device_tick(&dev, now, 0.001f);
        for (j = 0; j < DGB_NUM_JOINTS; ++j) {
            if (!isfinite(dev.setpoint[j]) || dev.setpoint[j] < cfg.lower[j] || dev.setpoint[j] > cfg.upper[j]) {
                abort();
            }
        }
    }
    return 0;
}
