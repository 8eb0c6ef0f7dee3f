/* Device state machine and safety behaviours of the firmware library, one ctest each. */
#include "test_harness.h"

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

/* ---- device ---- */

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
    /* the answer carries the limits this firmware enforces (the host refuses a wider envelope) */
    CHECK(r->u.hello_ack.has_limits);
    CHECK(memcmp(r->u.hello_ack.lower, dev.cfg.lower, sizeof dev.cfg.lower) == 0);
    CHECK(memcmp(r->u.hello_ack.upper, dev.cfg.upper, sizeof dev.cfg.upper) == 0);
    CHECK(memcmp(r->u.hello_ack.max_velocity, dev.cfg.max_velocity, sizeof dev.cfg.max_velocity) == 0);
    CHECK(memcmp(r->u.hello_ack.max_acceleration, dev.cfg.max_acceleration, sizeof dev.cfg.max_acceleration) == 0);
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
    m.u.hello.protocol_version = DGB_PROTOCOL_VERSION + 1u;
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
        /* no snap onto the goal any more: the settling steps are accel limited too */
        if (fabsf(v - prev_v) / 0.001f > max_a) {
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

static const test_case_t k_cases[] = {
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
    return run_cases(k_cases, sizeof k_cases / sizeof k_cases[0], argc, argv);
}
