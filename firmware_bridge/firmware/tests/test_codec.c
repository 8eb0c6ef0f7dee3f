/* Codec and framer behaviours of the firmware library, one ctest each. */
#include "test_harness.h"

/* Feed bytes to a fresh framer; count events; remember the last frame and error. */
typedef struct {
    unsigned frames;
    unsigned errors;
    dgb_msg_t last;
    dgb_error_t last_err;
} feed_result_t;

static void feed(dgb_framer_t *f, const uint8_t *b, size_t n, feed_result_t *r)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        dgb_msg_t m;
        dgb_error_t e = DGB_OK;
        dgb_framer_event_t ev = dgb_framer_push(f, b[i], &m, &e);
        if (ev == DGB_FRAMER_FRAME) {
            r->frames++;
            r->last = m;
        } else if (ev == DGB_FRAMER_ERROR) {
            r->errors++;
            r->last_err = e;
        }
    }
}

/* Build a raw payload with a valid CRC and encode it (for frames the encoder refuses to make). */
static size_t raw_frame(uint8_t type, uint8_t flags, uint16_t body_len, const uint8_t *body, size_t body_n,
                        uint8_t *wire)
{
    uint8_t p[1024];
    size_t n = DGB_HEADER_SIZE + body_n;
    size_t enc = 0;
    uint32_t crc;
    memset(p, 0, sizeof p);
    p[0] = type;
    p[1] = flags;
    p[2] = (uint8_t)(body_len & 0xFFu);
    p[3] = (uint8_t)(body_len >> 8);
    p[4] = 7u; /* seq 7 */
    if (body_n > 0u) {
        memcpy(p + DGB_HEADER_SIZE, body, body_n);
    }
    crc = dgb_crc32(0u, p, n);
    p[n] = (uint8_t)crc;
    p[n + 1u] = (uint8_t)(crc >> 8);
    p[n + 2u] = (uint8_t)(crc >> 16);
    p[n + 3u] = (uint8_t)(crc >> 24);
    n += 4u;
    dgb_cobs_encode(p, n, wire, 2048u, &enc);
    wire[enc] = 0u;
    return enc + 1u;
}

/* A device under test that records what it wrote and applied. */
/* ---- codec ---- */

static void test_crc32_check_value(void)
{
    const uint8_t s[] = "123456789";
    CHECK(dgb_crc32(0u, s, 9u) == DGB_CRC32_CHECK);
    /* chaining gives the same result */
    CHECK(dgb_crc32(dgb_crc32(0u, s, 4u), s + 4, 5u) == DGB_CRC32_CHECK);
}

static void test_cobs_roundtrip(void)
{
    static const size_t lens[] = {0, 1, 2, 253, 254, 255, 256, 508, 509, 476};
    unsigned li;
    for (li = 0; li < sizeof lens / sizeof lens[0]; ++li) {
        unsigned pattern;
        for (pattern = 0; pattern < 3u; ++pattern) {
            uint8_t src[600], enc[700], dec[600];
            size_t n = lens[li], en = 0, dn = 0, i;
            for (i = 0; i < n; ++i) {
                src[i] = pattern == 0u ? 0u : (pattern == 1u ? (uint8_t)(1u + i % 255u) : (uint8_t)rnd());
            }
            CHECK(dgb_cobs_encode(src, n, enc, sizeof enc, &en));
            CHECK(en <= DGB_COBS_MAX_ENCODED(n));
            for (i = 0; i < en; ++i) {
                CHECK(enc[i] != 0u);
            }
            CHECK(dgb_cobs_decode(enc, en, dec, sizeof dec, &dn));
            CHECK(dn == n);
            CHECK(n == 0u || memcmp(src, dec, n) == 0);
        }
    }
}

static void test_cobs_known_vectors(void)
{
    /* Examples from the COBS paper / Wikipedia. */
    const uint8_t in1[] = {0x11, 0x22, 0x00, 0x33};
    const uint8_t out1[] = {0x03, 0x11, 0x22, 0x02, 0x33};
    const uint8_t in2[] = {0x00, 0x00};
    const uint8_t out2[] = {0x01, 0x01, 0x01};
    uint8_t enc[16];
    size_t n = 0;
    CHECK(dgb_cobs_encode(in1, sizeof in1, enc, sizeof enc, &n) && n == sizeof out1 && memcmp(enc, out1, n) == 0);
    CHECK(dgb_cobs_encode(in2, sizeof in2, enc, sizeof enc, &n) && n == sizeof out2 && memcmp(enc, out2, n) == 0);
}

static void test_cobs_rejects_invalid(void)
{
    const uint8_t zero_inside[] = {0x03, 0x11, 0x00};
    const uint8_t overrun[] = {0x05, 0x11, 0x22};
    uint8_t dec[16];
    size_t n;
    CHECK(!dgb_cobs_decode(zero_inside, sizeof zero_inside, dec, sizeof dec, &n));
    CHECK(!dgb_cobs_decode(overrun, sizeof overrun, dec, sizeof dec, &n));
    /* too small an output buffer is refused, never overrun */
    CHECK(!dgb_cobs_decode((const uint8_t *)"\x05\x11\x22\x33\x44", 5u, dec, 2u, &n));
}

static void test_roundtrip_all_types(void)
{
    static const uint8_t types[] = {DGB_MSG_HELLO, DGB_MSG_ARM, DGB_MSG_DISARM, DGB_MSG_PSTOP,
                                    DGB_MSG_CLEAR_PSTOP, DGB_MSG_HEARTBEAT, DGB_MSG_TARGETS, DGB_MSG_TRAJECTORY,
                                    DGB_MSG_HELLO_ACK, DGB_MSG_STATE, DGB_MSG_ACK, DGB_MSG_FAULT};
    unsigned t;
    for (t = 0; t < sizeof types; ++t) {
        dgb_msg_t m, d;
        uint8_t wire[DGB_MAX_WIRE], wire2[DGB_MAX_WIRE];
        size_t n, n2, k;
        dgb_error_t e;
        unsigned char *raw = (unsigned char *)&m.u;
        memset(&m, 0, sizeof m);
        for (k = 0; k < sizeof m.u; ++k) {
            raw[k] = (unsigned char)(rnd() & 0x3Fu); /* small bytes: finite floats */
        }
        m.type = types[t];
        m.seq = rnd();
        m.session_id = rnd();
        if (m.type == DGB_MSG_TRAJECTORY) {
            m.u.trajectory.num_points = 3u;
        }
        if (m.type == DGB_MSG_HELLO_ACK) {
            m.u.hello_ack.has_limits = true;
        }
        n = encode(&m, wire);
        CHECK(n > 0u && n <= DGB_MAX_WIRE && wire[n - 1u] == 0u);
        CHECK(dgb_decode(wire, n - 1u, &d, &e));
        CHECK(d.type == m.type && d.seq == m.seq && d.session_id == m.session_id);
        n2 = encode(&d, wire2);
        CHECK(n2 == n && memcmp(wire, wire2, n) == 0);
    }
}

static void test_every_bit_flip_rejected(void)
{
    dgb_msg_t m = make_targets(5u, SESSION, 1000u, 0.25f);
    uint8_t wire[DGB_MAX_WIRE];
    size_t n = encode(&m, wire);
    size_t byte;
    unsigned bit;
    for (byte = 0; byte + 1u < n; ++byte) {
        for (bit = 0; bit < 8u; ++bit) {
            uint8_t bad[DGB_MAX_WIRE];
            dgb_msg_t d;
            dgb_error_t e = DGB_OK;
            memcpy(bad, wire, n);
            bad[byte] ^= (uint8_t)(1u << bit);
            if (bad[byte] == 0u) {
                continue; /* became a delimiter: covered by the truncation test */
            }
            CHECK(!dgb_decode(bad, n - 1u, &d, &e));
            CHECK(e == DGB_ERR_CRC || e == DGB_ERR_COBS || e == DGB_ERR_SHORT);
        }
    }
}

static void test_truncation_every_offset(void)
{
    dgb_msg_t m = make_targets(9u, SESSION, 1000u, 0.5f);
    uint8_t wire[DGB_MAX_WIRE];
    size_t n = encode(&m, wire);
    size_t cut;
    for (cut = 0; cut + 1u < n; ++cut) {
        dgb_framer_t f;
        feed_result_t r;
        const uint8_t delim = 0u;
        memset(&r, 0, sizeof r);
        dgb_framer_init(&f);
        feed(&f, wire, cut, &r);
        feed(&f, &delim, 1u, &r);
        CHECK(r.frames == 0u);
        CHECK(cut == 0u ? r.errors == 0u : r.errors == 1u);
        feed(&f, wire, n, &r); /* the next good frame parses */
        CHECK(r.frames == 1u && r.last.seq == 9u);
    }
}

static void test_garbage_burst_64k(void)
{
    static uint8_t garbage[65536];
    dgb_msg_t m = make_targets(11u, SESSION, 1000u, 0.5f);
    uint8_t wire[DGB_MAX_WIRE];
    size_t n = encode(&m, wire);
    size_t i;
    dgb_framer_t f;
    feed_result_t r;
    for (i = 0; i < sizeof garbage; ++i) {
        garbage[i] = (uint8_t)(1u + rnd() % 255u);
    }
    memset(&r, 0, sizeof r);
    dgb_framer_init(&f);
    feed(&f, garbage, sizeof garbage, &r);
    CHECK(r.errors == 1u && r.last_err == DGB_ERR_OVERSIZE && f.resyncs == 1u);
    CHECK(f.len <= sizeof f.buf);
    /* the frame right after the burst: its delimiter ends the discard, the frame after parses */
    feed(&f, wire, n, &r);
    CHECK(r.frames == 0u);
    feed(&f, wire, n, &r);
    CHECK(r.frames == 1u && r.last.seq == 11u);
}

static void test_declared_length_0_and_65535(void)
{
    uint8_t body[DGB_BODY_TARGETS];
    uint8_t wire[2048];
    size_t n;
    dgb_framer_t f;
    feed_result_t r;
    memset(body, 0, sizeof body);
    memset(&r, 0, sizeof r);
    dgb_framer_init(&f);
    n = raw_frame(DGB_MSG_TARGETS, 0u, 0u, body, sizeof body, wire);
    feed(&f, wire, n, &r);
    CHECK(r.errors == 1u && r.last_err == DGB_ERR_LENGTH);
    n = raw_frame(DGB_MSG_TARGETS, 0u, 65535u, body, sizeof body, wire);
    feed(&f, wire, n, &r);
    CHECK(r.errors == 2u && r.last_err == DGB_ERR_LENGTH);
    n = raw_frame(DGB_MSG_TARGETS, 0u, 0u, NULL, 0u, wire); /* consistent 0 but wrong for TARGETS */
    feed(&f, wire, n, &r);
    CHECK(r.errors == 3u && r.last_err == DGB_ERR_BODY_SIZE && r.frames == 0u);
}

static void test_unknown_type_and_flags(void)
{
    uint8_t wire[2048];
    size_t n;
    dgb_framer_t f;
    feed_result_t r;
    unsigned t;
    memset(&r, 0, sizeof r);
    dgb_framer_init(&f);
    for (t = 0; t < 256u; ++t) {
        if (dgb_msg_type_known((uint8_t)t)) {
            continue;
        }
        n = raw_frame((uint8_t)t, 0u, 0u, NULL, 0u, wire);
        feed(&f, wire, n, &r);
        CHECK(r.last_err == DGB_ERR_TYPE);
    }
    CHECK(r.frames == 0u && r.errors == 256u - 12u);
    n = raw_frame(DGB_MSG_ARM, 1u, 0u, NULL, 0u, wire);
    feed(&f, wire, n, &r);
    CHECK(r.last_err == DGB_ERR_RESERVED && r.frames == 0u);
}

static void test_trajectory_point_count(void)
{
    uint8_t body[DGB_BODY_TRAJECTORY(1)];
    uint8_t wire[2048];
    size_t n;
    dgb_framer_t f;
    feed_result_t r;
    memset(body, 0, sizeof body);
    memset(&r, 0, sizeof r);
    dgb_framer_init(&f);
    body[8] = 0u;
    n = raw_frame(DGB_MSG_TRAJECTORY, 0u, (uint16_t)sizeof body, body, sizeof body, wire);
    feed(&f, wire, n, &r);
    CHECK(r.last_err == DGB_ERR_FIELD);
    body[8] = 2u; /* says 2 points, carries 1 */
    n = raw_frame(DGB_MSG_TRAJECTORY, 0u, (uint16_t)sizeof body, body, sizeof body, wire);
    feed(&f, wire, n, &r);
    CHECK(r.last_err == DGB_ERR_BODY_SIZE && r.frames == 0u);
}

static void test_encoder_small_buffer(void)
{
    dgb_msg_t m = make_targets(1u, SESSION, 1u, 0.0f);
    uint8_t wire[DGB_MAX_WIRE];
    size_t n = 0;
    dgb_error_t e = DGB_OK;
    CHECK(!dgb_encode(&m, wire, 20u, &n, &e) && e == DGB_ERR_BUFFER);
    m.type = 0x7Fu;
    CHECK(!dgb_encode(&m, wire, sizeof wire, &n, &e) && e == DGB_ERR_TYPE);
}

static void test_schema_hash(void)
{
    /* FNV-1a of "a\0" and of the default joint names (value shared with the Python tests). */
    const char *const one[] = {"a"};
    uint32_t h = 0x811C9DC5u;
    h = (h ^ 0x61u) * 0x01000193u;
    h = (h ^ 0x00u) * 0x01000193u;
    CHECK(dgb_schema_hash(one, 1u) == h);
    CHECK(dgb_schema_hash(k_names, DGB_NUM_JOINTS) != dgb_schema_hash(k_names, DGB_NUM_JOINTS - 1u));
}

static const test_case_t k_cases[] = {
    {"crc32_check_value", test_crc32_check_value},
    {"cobs_roundtrip", test_cobs_roundtrip},
    {"cobs_known_vectors", test_cobs_known_vectors},
    {"cobs_rejects_invalid", test_cobs_rejects_invalid},
    {"roundtrip_all_types", test_roundtrip_all_types},
    {"every_bit_flip_rejected", test_every_bit_flip_rejected},
    {"truncation_every_offset", test_truncation_every_offset},
    {"garbage_burst_64k", test_garbage_burst_64k},
    {"declared_length_0_and_65535", test_declared_length_0_and_65535},
    {"unknown_type_and_flags", test_unknown_type_and_flags},
    {"trajectory_point_count", test_trajectory_point_count},
    {"encoder_small_buffer", test_encoder_small_buffer},
    {"schema_hash", test_schema_hash},
};

int main(int argc, char **argv)
{
    return run_cases(k_cases, sizeof k_cases / sizeof k_cases[0], argc, argv);
}
