/*
 * Unit tests of the firmware library: one ctest per behaviour (`dgb_unit_tests <case>`).
 * Run `dgb_unit_tests --list` for the cases; CMake registers each one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dgb_cobs.h"
#include "dgb_crc32.h"
#include "dgb_device.h"

static int g_failed = 0;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            g_failed = 1;                                                           \
            return;                                                                 \
        }                                                                           \
    } while (0)

/* ---- helpers ---------------------------------------------------------------------------- */

static uint32_t g_rng = 12345u;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

static dgb_msg_t make_targets(uint32_t seq, uint32_t session, uint64_t host_time, float value)
{
    dgb_msg_t m;
    unsigned i;
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_TARGETS;
    m.seq = seq;
    m.session_id = session;
    m.u.targets.host_time_us = host_time;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        m.u.targets.positions[i] = i < DGB_NUM_ARM_JOINTS ? value : 0.5f;
    }
    return m;
}

static size_t encode(const dgb_msg_t *m, uint8_t *wire)
{
    size_t n = 0;
    dgb_error_t err;
    if (!dgb_encode(m, wire, DGB_MAX_WIRE, &n, &err)) {
        return 0;
    }
    return n;
}

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
typedef struct {
    dgb_msg_t out[64];
    unsigned n_out;
    unsigned n_applied;
    uint32_t applied_seq[64];
    float applied_first[64];
    dgb_framer_t host_framer;
} sink_t;

static void sink_write(void *ctx, const uint8_t *b, size_t n)
{
    sink_t *s = (sink_t *)ctx;
    size_t i;
    for (i = 0; i < n; ++i) {
        dgb_msg_t m;
        dgb_error_t e;
        if (dgb_framer_push(&s->host_framer, b[i], &m, &e) == DGB_FRAMER_FRAME && s->n_out < 64u) {
            s->out[s->n_out++] = m;
        }
    }
}

static void sink_applied(void *ctx, uint32_t seq, uint64_t t, const float *p)
{
    sink_t *s = (sink_t *)ctx;
    (void)t;
    if (s->n_applied < 64u) {
        s->applied_seq[s->n_applied] = seq;
        s->applied_first[s->n_applied] = p[0];
    }
    s->n_applied++;
}

static const char *const k_names[DGB_NUM_JOINTS] = {
    "arm_joint_1", "arm_joint_2", "arm_joint_3", "arm_joint_4", "arm_joint_5", "arm_joint_6", "arm_joint_7",
    "hand_joint_1", "hand_joint_2", "hand_joint_3", "hand_joint_4", "hand_joint_5", "hand_joint_6"};

#define SESSION 0xA5A5F00Du

static void device_setup(dgb_device_t *dev, sink_t *s)
{
    dgb_device_config_t cfg;
    memset(s, 0, sizeof *s);
    dgb_framer_init(&s->host_framer);
    dgb_device_default_config(&cfg);
    cfg.schema_hash = dgb_schema_hash(k_names, DGB_NUM_JOINTS);
    dgb_device_init(dev, &cfg, SESSION, 1000000u, NULL, sink_write, sink_applied, s);
}

static void send(dgb_device_t *dev, const dgb_msg_t *m, uint64_t now)
{
    uint8_t wire[DGB_MAX_WIRE];
    size_t n = encode(m, wire);
    dgb_device_rx(dev, wire, n, now);
}

static void send_simple(dgb_device_t *dev, uint8_t type, uint32_t seq, uint64_t now)
{
    dgb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.seq = seq;
    m.session_id = SESSION;
    send(dev, &m, now);
}

static void handshake(dgb_device_t *dev, uint32_t seq, uint64_t now)
{
    dgb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_HELLO;
    m.seq = seq;
    m.u.hello.protocol_version = DGB_PROTOCOL_VERSION;
    m.u.hello.num_joints = DGB_NUM_JOINTS;
    m.u.hello.schema_hash = dgb_schema_hash(k_names, DGB_NUM_JOINTS);
    m.u.hello.host_nonce = 42u;
    send(dev, &m, now);
}

static const dgb_msg_t *last_out(const sink_t *s)
{
    return s->n_out > 0u ? &s->out[s->n_out - 1u] : NULL;
}

/* Run the servo for `ms` milliseconds at 1 kHz from *now. */
static void run_ms(dgb_device_t *dev, uint64_t *now, unsigned ms)
{
    unsigned k;
    for (k = 0; k < ms; ++k) {
        *now += 1000u;
        dgb_device_tick(dev, *now, 0.001f);
    }
}

/* ---- codec ------------------------------------------------------------------------------ */

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

/* ---- device ----------------------------------------------------------------------------- */

static void test_handshake_ok(void)
{
    dgb_device_t dev;
    sink_t s;
    const dgb_msg_t *r;
    device_setup(&dev, &s);
    handshake(&dev, 1u, 1000100u);
    r = last_out(&s);
    CHECK(r != NULL && r->type == DGB_MSG_HELLO_ACK && r->u.hello_ack.result == DGB_OK);
    CHECK(r->session_id == SESSION && r->u.hello_ack.session_id == SESSION && r->u.hello_ack.host_nonce == 42u);
    CHECK(dev.handshaked && dev.mode == DGB_MODE_DISARMED);
}

static void test_handshake_version_mismatch(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t m;
    const dgb_msg_t *r;
    device_setup(&dev, &s);
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_HELLO;
    m.seq = 1u;
    m.u.hello.protocol_version = 2u;
    m.u.hello.num_joints = DGB_NUM_JOINTS;
    m.u.hello.schema_hash = dev.cfg.schema_hash;
    send(&dev, &m, 1000100u);
    r = last_out(&s);
    CHECK(r != NULL && r->type == DGB_MSG_HELLO_ACK && r->u.hello_ack.result == DGB_ERR_VERSION);
    CHECK(r->u.hello_ack.protocol_version == DGB_PROTOCOL_VERSION);
    CHECK(!dev.handshaked);
    send_simple(&dev, DGB_MSG_ARM, 2u, 1000200u);
    CHECK(dev.mode == DGB_MODE_DISARMED && last_out(&s)->type == DGB_MSG_FAULT &&
          last_out(&s)->u.fault.error == DGB_ERR_NO_HANDSHAKE);
}

static void test_handshake_schema_mismatch(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t m;
    device_setup(&dev, &s);
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_HELLO;
    m.seq = 1u;
    m.u.hello.protocol_version = DGB_PROTOCOL_VERSION;
    m.u.hello.num_joints = DGB_NUM_JOINTS;
    m.u.hello.schema_hash = dev.cfg.schema_hash ^ 1u;
    send(&dev, &m, 1000100u);
    CHECK(last_out(&s)->u.hello_ack.result == DGB_ERR_SCHEMA && !dev.handshaked);
    m.u.hello.schema_hash = dev.cfg.schema_hash;
    m.u.hello.num_joints = 12u;
    send(&dev, &m, 1000200u);
    CHECK(last_out(&s)->u.hello_ack.result == DGB_ERR_SCHEMA && !dev.handshaked);
}

static void test_no_motion_before_handshake_or_arm(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t = make_targets(5u, SESSION, 10u, 0.3f);
    device_setup(&dev, &s);
    send(&dev, &t, 1000100u);
    CHECK(s.n_applied == 0u && last_out(&s)->u.fault.error == DGB_ERR_NO_HANDSHAKE);
    handshake(&dev, 1u, 1000200u);
    t.seq = 6u;
    send(&dev, &t, 1000300u);
    CHECK(s.n_applied == 0u && last_out(&s)->u.fault.error == DGB_ERR_NOT_ARMED);
    send_simple(&dev, DGB_MSG_ARM, 7u, 1000400u);
    CHECK(dev.mode == DGB_MODE_ARMED && last_out(&s)->type == DGB_MSG_ACK);
    t.seq = 8u;
    send(&dev, &t, 1000500u);
    CHECK(s.n_applied == 1u && s.applied_seq[0] == 8u && dev.last_applied_seq == 8u && dev.state_due);
}

static void test_session_mismatch(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t;
    device_setup(&dev, &s);
    handshake(&dev, 1u, 1000100u);
    send_simple(&dev, DGB_MSG_ARM, 2u, 1000200u);
    t = make_targets(3u, SESSION + 1u, 10u, 0.3f);
    send(&dev, &t, 1000300u);
    CHECK(s.n_applied == 0u && last_out(&s)->u.fault.error == DGB_ERR_SESSION);
}

static void test_replay_and_reorder_rejected(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t;
    device_setup(&dev, &s);
    handshake(&dev, 1u, 1000100u);
    send_simple(&dev, DGB_MSG_ARM, 2u, 1000200u);
    t = make_targets(10u, SESSION, 100u, 0.1f);
    send(&dev, &t, 1000300u);
    send(&dev, &t, 1000400u); /* duplicate */
    CHECK(s.n_applied == 1u && last_out(&s)->u.fault.error == DGB_ERR_REPLAY);
    t = make_targets(9u, SESSION, 90u, 0.2f); /* older, arrives late */
    send(&dev, &t, 1000500u);
    CHECK(s.n_applied == 1u && last_out(&s)->u.fault.error == DGB_ERR_REPLAY);
    t = make_targets(11u, SESSION, 50u, 0.2f); /* newer seq, older timestamp */
    send(&dev, &t, 1000600u);
    CHECK(s.n_applied == 1u && last_out(&s)->u.fault.error == DGB_ERR_STALE);
    t = make_targets(12u, SESSION, 120u, 0.2f);
    send(&dev, &t, 1000700u);
    CHECK(s.n_applied == 2u && s.applied_seq[1] == 12u);
}

static void test_nonfinite_rejected(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t;
    float bad[3];
    unsigned k;
    bad[0] = NAN;
    bad[1] = INFINITY;
    bad[2] = -INFINITY;
    device_setup(&dev, &s);
    handshake(&dev, 1u, 1000100u);
    send_simple(&dev, DGB_MSG_ARM, 2u, 1000200u);
    for (k = 0; k < 3u; ++k) {
        t = make_targets(3u + k, SESSION, 100u + k, 0.1f);
        t.u.targets.positions[12] = bad[k];
        send(&dev, &t, 1000300u + k);
        CHECK(s.n_applied == 0u && last_out(&s)->u.fault.error == DGB_ERR_NONFINITE);
    }
    CHECK(dev.fault_flags & DGB_FAULT_NONFINITE);
    for (k = 0; k < DGB_NUM_JOINTS; ++k) {
        CHECK(isfinite(dev.setpoint[k]));
    }
}

static void test_position_clamp(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t;
    uint64_t now = 1000100u;
    unsigned k;
    device_setup(&dev, &s);
    handshake(&dev, 1u, now);
    send_simple(&dev, DGB_MSG_ARM, 2u, now);
    for (k = 0; k < 3000u; ++k) { /* 3 s of 1 kHz targets far outside the limits */
        t = make_targets(3u + k, SESSION, 100u + k, 100.0f);
        t.u.targets.positions[7] = -5.0f;
        send(&dev, &t, now);
        run_ms(&dev, &now, 1u);
    }
    CHECK(s.applied_first[0] == 3.1f); /* the logged applied value is the clamped one */
    CHECK(dev.setpoint[0] <= 3.1f && dev.setpoint[0] > 3.0f);
    CHECK(dev.setpoint[6] <= 6.28f);
    CHECK(dev.setpoint[7] >= 0.0f && dev.setpoint[7] < 1e-3f);
}

static void test_velocity_and_acceleration_limits(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t;
    uint64_t now = 1000100u;
    unsigned k;
    float prev_v = 0.0f, max_v = 0.0f, max_a = 0.0f;
    device_setup(&dev, &s);
    handshake(&dev, 1u, now);
    send_simple(&dev, DGB_MSG_ARM, 2u, now);
    for (k = 0; k < 2000u; ++k) {
        float v;
        t = make_targets(3u + k, SESSION, 100u + k, 2.0f); /* a 2 rad step: must be rate limited */
        send(&dev, &t, now);
        run_ms(&dev, &now, 1u);
        v = dev.setpoint_velocity[0];
        if (fabsf(v) > max_v) {
            max_v = fabsf(v);
        }
        /* the last settling step (< 1e-4 rad from the goal) snaps onto it: excluded */
        if (fabsf(2.0f - dev.setpoint[0]) > 1e-4f && fabsf(v - prev_v) / 0.001f > max_a) {
            max_a = fabsf(v - prev_v) / 0.001f;
        }
        prev_v = v;
    }
    CHECK(max_v <= 1.5f + 1e-4f);
    CHECK(max_a <= 10.0f * 1.01f);
    CHECK(fabsf(dev.setpoint[0] - 2.0f) < 1e-3f);
}

static void test_watchdog_hold_then_safe_off_latched(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t;
    uint64_t now = 1000100u;
    unsigned k;
    device_setup(&dev, &s);
    handshake(&dev, 1u, now);
    send_simple(&dev, DGB_MSG_ARM, 2u, now);
    for (k = 0; k < 300u; ++k) { /* moving at full speed toward +2 */
        t = make_targets(3u + k, SESSION, 100u + k, 2.0f);
        send(&dev, &t, now);
        run_ms(&dev, &now, 1u);
    }
    CHECK(dev.mode == DGB_MODE_ARMED && fabsf(dev.setpoint_velocity[0]) > 1.0f);
    run_ms(&dev, &now, 10u); /* 10 ms silence: still armed */
    CHECK(dev.mode == DGB_MODE_ARMED);
    run_ms(&dev, &now, 40u); /* 50 ms: hold, decelerating within the acceleration limit */
    CHECK(dev.mode == DGB_MODE_HOLD);
    CHECK(fabsf(dev.setpoint_velocity[0]) < 1.5f - 10.0f * 0.025f + 1e-3f);
    run_ms(&dev, &now, 150u); /* 200 ms: latched safe-off, at rest */
    CHECK(dev.mode == DGB_MODE_SAFE_OFF && (dev.fault_flags & DGB_FAULT_WATCHDOG_SAFE_OFF));
    CHECK(dev.setpoint_velocity[0] == 0.0f);
    /* resuming the stream does not move the robot */
    t = make_targets(1000u, SESSION, 5000u, -1.0f);
    send(&dev, &t, now);
    CHECK(last_out(&s)->u.fault.error == DGB_ERR_SAFE_OFF && dev.mode == DGB_MODE_SAFE_OFF);
    run_ms(&dev, &now, 1800u); /* 2 s total */
    CHECK(dev.mode == DGB_MODE_SAFE_OFF);
}

static void test_rearm_after_safe_off(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t;
    uint64_t now = 1000100u;
    unsigned applied;
    device_setup(&dev, &s);
    handshake(&dev, 1u, now);
    send_simple(&dev, DGB_MSG_ARM, 2u, now);
    run_ms(&dev, &now, 500u);
    CHECK(dev.mode == DGB_MODE_SAFE_OFF);
    applied = s.n_applied;
    send_simple(&dev, DGB_MSG_ARM, 3u, now);
    CHECK(dev.mode == DGB_MODE_ARMED && dev.fault_flags == 0u);
    t = make_targets(4u, SESSION, 10u, 0.1f);
    send(&dev, &t, now);
    CHECK(s.n_applied == applied + 1u);
}

static void test_pstop_latch(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t t;
    uint64_t now = 1000100u;
    device_setup(&dev, &s);
    handshake(&dev, 1u, now);
    send_simple(&dev, DGB_MSG_ARM, 2u, now);
    send_simple(&dev, DGB_MSG_PSTOP, 3u, now);
    CHECK(dev.mode == DGB_MODE_PSTOP);
    t = make_targets(4u, SESSION, 10u, 0.1f);
    send(&dev, &t, now);
    CHECK(s.n_applied == 0u && last_out(&s)->u.fault.error == DGB_ERR_PSTOP);
    send_simple(&dev, DGB_MSG_ARM, 5u, now);
    CHECK(dev.mode == DGB_MODE_PSTOP && last_out(&s)->u.ack.result == DGB_ERR_PSTOP);
    handshake(&dev, 6u, now); /* a new handshake does not clear it either */
    CHECK(dev.mode == DGB_MODE_PSTOP);
    send_simple(&dev, DGB_MSG_CLEAR_PSTOP, 7u, now);
    CHECK(dev.mode == DGB_MODE_DISARMED); /* cleared, but still needs ARM */
    send_simple(&dev, DGB_MSG_ARM, 8u, now);
    CHECK(dev.mode == DGB_MODE_ARMED);
}

static void test_rehandshake_disarms(void)
{
    dgb_device_t dev;
    sink_t s;
    device_setup(&dev, &s);
    handshake(&dev, 1u, 1000100u);
    send_simple(&dev, DGB_MSG_ARM, 2u, 1000200u);
    CHECK(dev.mode == DGB_MODE_ARMED);
    handshake(&dev, 1u, 1000300u); /* a restarted host starts its seq again at 1 */
    CHECK(dev.mode == DGB_MODE_DISARMED && dev.handshaked);
}

static void test_trajectory_interpolation(void)
{
    dgb_device_t dev;
    sink_t s;
    dgb_msg_t m;
    uint64_t now = 1000100u;
    unsigned i;
    device_setup(&dev, &s);
    handshake(&dev, 1u, now);
    send_simple(&dev, DGB_MSG_ARM, 2u, now);
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_TRAJECTORY;
    m.seq = 3u;
    m.session_id = SESSION;
    m.u.trajectory.host_time_us = 10u;
    m.u.trajectory.num_points = 3u;
    for (i = 0; i < 3u; ++i) {
        unsigned j;
        m.u.trajectory.points[i].t_offset_us = 100000u * (i + 1u);
        for (j = 0; j < DGB_NUM_JOINTS; ++j) {
            m.u.trajectory.points[i].positions[j] = j < DGB_NUM_ARM_JOINTS ? 0.05f * (float)(i + 1u) : 0.5f;
        }
    }
    send(&dev, &m, now);
    CHECK(s.n_applied == 3u && dev.traj_active);
    run_ms(&dev, &now, 100u);
    send_simple(&dev, DGB_MSG_HEARTBEAT, 4u, now); /* heartbeats keep the safe-off watchdog fed */
    run_ms(&dev, &now, 100u);
    CHECK(dev.mode == DGB_MODE_ARMED); /* a running trajectory keeps the hold away */
    CHECK(fabsf(dev.setpoint[0] - 0.1f) < 0.02f);
    send_simple(&dev, DGB_MSG_HEARTBEAT, 5u, now);
    run_ms(&dev, &now, 130u);
    CHECK(fabsf(dev.setpoint[0] - 0.15f) < 0.005f);
    /* non-increasing times are refused */
    m.seq = 6u;
    m.u.trajectory.host_time_us = 20u;
    m.u.trajectory.points[1].t_offset_us = m.u.trajectory.points[0].t_offset_us;
    send(&dev, &m, now);
    CHECK(last_out(&s)->u.fault.error == DGB_ERR_TRAJ_TIME && s.n_applied == 3u);
}

static void test_rx_errors_reported(void)
{
    dgb_device_t dev;
    sink_t s;
    uint8_t wire[DGB_MAX_WIRE];
    dgb_msg_t t = make_targets(3u, SESSION, 10u, 0.1f);
    size_t n = encode(&t, wire);
    device_setup(&dev, &s);
    wire[5] ^= 0x10u;
    dgb_device_rx(&dev, wire, n, 1000100u);
    CHECK(last_out(&s)->type == DGB_MSG_FAULT && last_out(&s)->u.fault.error == DGB_ERR_CRC);
    CHECK(dev.rx_errors == 1u && s.n_applied == 0u);
}

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case_t;

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
    {"handshake_ok", test_handshake_ok},
    {"handshake_version_mismatch", test_handshake_version_mismatch},
    {"handshake_schema_mismatch", test_handshake_schema_mismatch},
    {"no_motion_before_handshake_or_arm", test_no_motion_before_handshake_or_arm},
    {"session_mismatch", test_session_mismatch},
    {"replay_and_reorder_rejected", test_replay_and_reorder_rejected},
    {"nonfinite_rejected", test_nonfinite_rejected},
    {"position_clamp", test_position_clamp},
    {"velocity_and_acceleration_limits", test_velocity_and_acceleration_limits},
    {"watchdog_hold_then_safe_off_latched", test_watchdog_hold_then_safe_off_latched},
    {"rearm_after_safe_off", test_rearm_after_safe_off},
    {"pstop_latch", test_pstop_latch},
    {"rehandshake_disarms", test_rehandshake_disarms},
    {"trajectory_interpolation", test_trajectory_interpolation},
    {"rx_errors_reported", test_rx_errors_reported},
};

int main(int argc, char **argv)
{
    size_t i;
    const size_t n = sizeof k_cases / sizeof k_cases[0];
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (i = 0; i < n; ++i) {
            printf("%s\n", k_cases[i].name);
        }
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (argc < 2 || strcmp(argv[1], k_cases[i].name) == 0) {
            g_failed = 0;
            k_cases[i].fn();
            printf("%s %s\n", g_failed ? "FAIL" : "ok  ", k_cases[i].name);
            if (g_failed) {
                return 1;
            }
            if (argc >= 2) {
                return 0;
            }
        }
    }
    if (argc >= 2) {
        fprintf(stderr, "unknown test case %s (see --list)\n", argv[1]);
        return 2;
    }
    return 0;
}
