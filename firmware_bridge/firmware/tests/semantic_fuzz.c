/*
 * semantic_fuzz.c - CRC-valid semantic fuzzer of the firmware state machine (dgb_device_*).
 *
 * The decoder fuzzer (fuzz/) throws bytes at the codec; this one sends frames that DECODE (valid
 * COBS and CRC) but whose meaning is hostile or careless: random message types, wrong sessions,
 * replayed / reordered / jumping sequence numbers, stale / zero / huge timestamps, targets beyond
 * the limits, huge, NaN and Inf values, trajectories with bad offsets, and irregular servo ticks
 * (0, 1 ms, tens of ms, seconds). After every frame and every tick it checks the safety invariants
 * against an independent model of PROTOCOL.md sections 4-6:
 *
 *   position   lower <= setpoint <= upper                       (every joint, every tick)
 *   velocity   |v| <= max_velocity
 *   accel      |v - v_prev| <= max_acceleration * dt            (float tolerance 0.1 %)
 *   step       |p - p_prev| <= max_velocity * dt
 *   decel      not ARMED: |v| never grows and never changes sign (no motion while disarmed,
 *              holding, safe-off or stopped: only braking to rest)
 *   watchdog   ARMED/HOLD after a tick only if an authentic host frame came within safe_off_timeout
 *   latch      SAFE_OFF is left only by an authentic ARM (to ARMED), PSTOP or DISARM (both still
 *              need an ARM to move); PSTOP only by CLEAR_PSTOP, to DISARMED; DISARMED/SAFE_OFF/PSTOP become ARMED only by an authentic ARM; ticks never
 *              leave SAFE_OFF or PSTOP
 *   applied    a target is applied only from ARMED/HOLD, from an authentic frame (this session,
 *              handshaken, seq newer), finite, not older than the last accepted command
 *
 * usage: semantic_fuzz SEED FRAMES          (the fuzzer)
 *        semantic_fuzz --corrupt SEED SECONDS (the 1% corruption stream in stepped time, below)
 * Prints one line "frames=.. ticks=.. applied=.. ..." and exits 0, or prints the first violation
 * ("VIOLATION rule=<name> ...") and exits 1. Used by tests/firmware_bridge/test_fw_semantic_fuzz.py,
 * which also builds it against mutated copies of dgb_device.c to show each rule catches its bug.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dgb_device.h"

static unsigned long long g_rng;

static unsigned long long rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1DULL;
}

static double unif(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }
static unsigned below(unsigned n) { return (unsigned)(rnd() % n); }

/* --- the device's output and its applied-target callback ---------------------------------- */

static unsigned long g_applied;
static uint32_t g_applied_seq;

static void on_write(void *ctx, const uint8_t *bytes, size_t len)
{
    (void)ctx;
    (void)bytes;
    (void)len;
}

static float g_applied_pos[DGB_NUM_JOINTS];

static void on_applied(void *ctx, uint32_t seq, uint64_t now_us, const float positions[DGB_NUM_JOINTS])
{
    (void)ctx;
    (void)now_us;
    g_applied++;
    g_applied_seq = seq;
    memcpy(g_applied_pos, positions, sizeof g_applied_pos);
}

/* --- the model of the host-facing rules (PROTOCOL.md 4-6), independent of dgb_device.c ------ */

typedef struct {
    bool handshaked;
    uint32_t last_seq;
    uint64_t last_cmd_time;
    uint64_t last_auth_us;
} model_t;

static dgb_device_t g_dev;
static model_t g_model;
static uint64_t g_now;
static unsigned long g_frames, g_ticks, g_authentic, g_safe_offs, g_pstops, g_holds, g_armed_ticks, g_limited_ticks;
static uint32_t g_seq = 1u;
static uint64_t g_host_time = 1000u;

static void violation(const char *rule, const char *fmt, double a, double b, unsigned joint)
{
    printf("VIOLATION rule=%s frame=%lu tick=%lu joint=%u mode=%u ", rule, g_frames, g_ticks, joint,
           (unsigned)g_dev.mode);
    printf(fmt, a, b);
    printf("\n");
    exit(1);
}

static float value(unsigned j)
{
    const float lo = g_dev.cfg.lower[j], hi = g_dev.cfg.upper[j];
    unsigned k = below(100);
    if (k < 55u) {
        return lo + (float)unif() * (hi - lo);
    }
    if (k < 75u) { /* at or just around a limit */
        return (below(2) ? hi : lo) + (float)((unif() - 0.5) * 0.02);
    }
    if (k < 88u) { /* beyond the limits */
        return (below(2) ? hi : lo) + (float)((unif() - 0.5) * 200.0);
    }
    if (k < 94u) {
        static const float huge[] = {1e30f, -1e30f, FLT_MAX, -FLT_MAX, 1e9f, -1e9f};
        return huge[below(6)];
    }
    if (k < 97u) { /* current setpoint (a goal right where the joint is) */
        return g_dev.setpoint[j];
    }
    return g_dev.setpoint[j] + (float)((unif() - 0.5) * 2e-3);
}

static bool fill_positions(float *p)
{
    unsigned j;
    bool finite = true;
    for (j = 0; j < DGB_NUM_JOINTS; ++j) {
        p[j] = value(j);
    }
    if (below(100) < 3u) {
        static const float bad[] = {NAN, INFINITY, -INFINITY};
        p[below(DGB_NUM_JOINTS)] = bad[below(3)];
        finite = false;
    }
    return finite;
}

static uint64_t host_time(void)
{
    unsigned k = below(100);
    if (k < 90u) {
        g_host_time += 1u + below(10000);
        return g_host_time;
    }
    if (k < 95u) {
        return g_host_time > 50000u ? g_host_time - below(50000) : 0u; /* older */
    }
    if (k < 98u) {
        return 0u;
    }
    return 0xFFFFFFFFFFFFFFFFULL - below(1000); /* huge: later commands are stale until HELLO */
}

static uint32_t next_seq(void)
{
    unsigned k = below(100);
    if (k < 90u) {
        return ++g_seq;
    }
    if (k < 95u) {
        return g_seq - below(5); /* duplicate or older */
    }
    if (k < 99u) {
        g_seq += 1u + below(100000);
        return g_seq;
    }
    return (uint32_t)rnd(); /* anything, also 0 or below the window */
}

/* One random frame: fields chosen as above; returns whether its motion content is finite. */
static bool make_frame(dgb_msg_t *m)
{
    /* weights (per 1000): mostly motion, enough ARMs to keep reaching motion, rare stops */
    static const struct { uint8_t type; unsigned w; } mix[] = {
        {DGB_MSG_TARGETS, 520}, {DGB_MSG_TRAJECTORY, 120}, {DGB_MSG_HEARTBEAT, 150}, {DGB_MSG_ARM, 110},
        {DGB_MSG_DISARM, 30}, {DGB_MSG_PSTOP, 15}, {DGB_MSG_CLEAR_PSTOP, 30}, {DGB_MSG_HELLO, 15},
        {DGB_MSG_STATE, 10}};
    unsigned pick = below(1000), k = 0;
    bool finite = true;
    unsigned i;
    memset(m, 0, sizeof *m);
    while (k + 1u < sizeof mix / sizeof mix[0] && pick >= mix[k].w) {
        pick -= mix[k].w;
        ++k;
    }
    m->type = mix[k].type;
    m->seq = next_seq();
    m->session_id = below(100) < 95u ? g_dev.session_id : (uint32_t)rnd();
    switch (m->type) {
    case DGB_MSG_HELLO:
        m->session_id = 0u;
        m->u.hello.protocol_version = below(10) ? DGB_PROTOCOL_VERSION : (uint16_t)below(5);
        m->u.hello.num_joints = below(20) ? DGB_NUM_JOINTS : (uint16_t)below(20);
        m->u.hello.schema_hash = below(20) ? g_dev.cfg.schema_hash : (uint32_t)rnd();
        m->u.hello.host_nonce = (uint32_t)rnd();
        break;
    case DGB_MSG_HEARTBEAT:
        m->u.heartbeat.host_time_us = host_time();
        break;
    case DGB_MSG_TARGETS:
        m->u.targets.host_time_us = host_time();
        m->u.targets.reach_in_us = below(3) == 0u ? 0u : (below(20) ? below(200000) : 0xFFFFFFFFu);
        finite = fill_positions(m->u.targets.positions);
        break;
    case DGB_MSG_TRAJECTORY:
        m->u.trajectory.host_time_us = host_time();
        m->u.trajectory.num_points = (uint8_t)(1u + below(DGB_MAX_TRAJ_POINTS));
        {
            uint32_t t = below(5000);
            for (i = 0; i < m->u.trajectory.num_points; ++i) {
                t += below(20) ? 1u + below(30000) : 0u; /* sometimes not increasing */
                m->u.trajectory.points[i].t_offset_us = t;
                finite = fill_positions(m->u.trajectory.points[i].positions) && finite;
            }
        }
        break;
    case DGB_MSG_STATE:
        break; /* a device->host type sent to the device */
    default:
        break;
    }
    return finite;
}

static uint64_t frame_time(const dgb_msg_t *m)
{
    return m->type == DGB_MSG_TARGETS ? m->u.targets.host_time_us : m->u.trajectory.host_time_us;
}

static void send_frame(void)
{
    dgb_msg_t m;
    uint8_t wire[DGB_MAX_WIRE];
    size_t n = 0;
    dgb_error_t err;
    const bool finite = make_frame(&m);
    const dgb_mode_t before = g_dev.mode;
    const unsigned long applied_before = g_applied;
    const bool host_type = (m.type & 0x80u) == 0u;
    const bool hello = m.type == DGB_MSG_HELLO;
    const bool authentic = host_type && !hello && m.session_id == g_dev.session_id && g_model.handshaked &&
                           m.seq > g_model.last_seq;
    bool applied;
    dgb_mode_t after;
    if (!dgb_encode(&m, wire, sizeof wire, &n, &err)) {
        printf("harness: encode failed (%s)\n", dgb_error_name(err));
        exit(2);
    }
    g_frames++;
    dgb_device_rx(&g_dev, wire, n, g_now);
    applied = g_applied != applied_before;
    after = g_dev.mode;

    /* the model's view of this frame */
    if (hello) {
        g_model.handshaked = m.u.hello.protocol_version == DGB_PROTOCOL_VERSION &&
                             m.u.hello.num_joints == DGB_NUM_JOINTS && m.u.hello.schema_hash == g_dev.cfg.schema_hash;
        g_model.last_seq = m.seq;
        g_model.last_cmd_time = 0u;
        g_model.last_auth_us = g_now;
    } else if (authentic) {
        g_authentic++;
        g_model.last_seq = m.seq;
        g_model.last_auth_us = g_now;
    }

    if (applied) {
        if (!authentic) {
            violation("applied", "target applied from a frame that is not authentic (session/handshake/replay) "
                      "seq=%.0f window=%.0f", (double)m.seq, (double)g_model.last_seq, 0u);
        }
        if (before != DGB_MODE_ARMED && before != DGB_MODE_HOLD) {
            violation("applied", "target applied while not armed (mode before %.0f, seq %.0f)", (double)before, (double)m.seq, 0u);
        }
        if (!finite) {
            violation("applied", "non-finite target applied (type %.0f, seq %.0f)", (double)m.type, (double)m.seq, 0u);
        }
        if (frame_time(&m) < g_model.last_cmd_time) {
            violation("applied", "stale target applied: host time %.0f < last %.0f", (double)frame_time(&m),
                      (double)g_model.last_cmd_time, 0u);
        }
        if (g_applied_seq != m.seq) {
            violation("applied", "applied seq %.0f is not the frame's %.0f", (double)g_applied_seq, (double)m.seq, 0u);
        }
        g_model.last_cmd_time = frame_time(&m);
    }
    if (after == DGB_MODE_ARMED && before != DGB_MODE_ARMED && before != DGB_MODE_HOLD &&
        !(authentic && m.type == DGB_MSG_ARM && before != DGB_MODE_PSTOP)) {
        violation("latch", "mode %.0f -> ARMED without an authentic ARM (frame type %.0f)", (double)before, (double)m.type, 0u);
    }
    if (before == DGB_MODE_PSTOP && after != DGB_MODE_PSTOP &&
        !(authentic && m.type == DGB_MSG_CLEAR_PSTOP && after == DGB_MODE_DISARMED)) {
        violation("latch", "protective stop left to mode %.0f by frame type %.0f (only CLEAR_PSTOP may)", (double)after, (double)m.type, 0u);
    }
    if (before == DGB_MODE_SAFE_OFF && after != DGB_MODE_SAFE_OFF &&
        !(authentic && ((m.type == DGB_MSG_ARM && after == DGB_MODE_ARMED) ||
                        (m.type == DGB_MSG_PSTOP && after == DGB_MODE_PSTOP) ||
                        (m.type == DGB_MSG_DISARM && after == DGB_MODE_DISARMED)))) {
        violation("latch", "safe-off left to mode %.0f by frame type %.0f (only ARM, PSTOP, DISARM may)", (double)after, (double)m.type, 0u);
    }
    if (after == DGB_MODE_PSTOP && before != DGB_MODE_PSTOP) {
        g_pstops++;
    }
}

static uint64_t gap_us(void)
{
    unsigned k = below(1000);
    if (k < 700u) {
        return 1000u;
    }
    if (k < 730u) {
        return 0u;
    }
    if (k < 880u) {
        return 100u + below(5000);
    }
    if (k < 965u) {
        return 20000u + below(80000);
    }
    if (k < 998u) {
        return 150000u + below(250000);
    }
    return 1000000u + below(2000000);
}

static void tick(void)
{
    float p0[DGB_NUM_JOINTS], v0[DGB_NUM_JOINTS];
    const dgb_mode_t before = g_dev.mode;
    const uint64_t gap = gap_us();
    const float dt = (float)gap * 1e-6f;
    unsigned j;
    memcpy(p0, g_dev.setpoint, sizeof p0);
    memcpy(v0, g_dev.setpoint_velocity, sizeof v0);
    g_now += gap;
    g_ticks++;
    dgb_device_tick(&g_dev, g_now, dt);
    if ((before == DGB_MODE_SAFE_OFF || before == DGB_MODE_PSTOP) && g_dev.mode != before) {
        violation("latch", "a tick left latched mode %.0f to %.0f", (double)before, (double)g_dev.mode, 0u);
    }
    if (before == DGB_MODE_DISARMED && g_dev.mode != DGB_MODE_DISARMED) {
        violation("latch", "a tick left DISARMED to %.0f (gap %.0f us)", (double)g_dev.mode, (double)gap, 0u);
    }
    if ((g_dev.mode == DGB_MODE_ARMED || g_dev.mode == DGB_MODE_HOLD) &&
        g_now - g_model.last_auth_us > g_dev.cfg.safe_off_timeout_us) {
        violation("watchdog", "still in motion mode %.0f ms after the last authentic frame (timeout %.0f ms)",
                  (double)(g_now - g_model.last_auth_us) * 1e-3, g_dev.cfg.safe_off_timeout_us * 1e-3, 0u);
    }
    if (g_dev.mode == DGB_MODE_SAFE_OFF && before != DGB_MODE_SAFE_OFF) {
        g_safe_offs++;
    }
    if (g_dev.mode == DGB_MODE_HOLD && before != DGB_MODE_HOLD) {
        g_holds++;
    }
    if (g_dev.mode == DGB_MODE_ARMED) {
        g_armed_ticks++;
    }
    if (g_dev.flags & DGB_FLAG_LIMITED_VELOCITY) {
        g_limited_ticks++;
    }
    for (j = 0; j < DGB_NUM_JOINTS; ++j) {
        const float p = g_dev.setpoint[j], v = g_dev.setpoint_velocity[j];
        const float vmax = g_dev.cfg.max_velocity[j], amax = g_dev.cfg.max_acceleration[j];
        if (!(p >= g_dev.cfg.lower[j] && p <= g_dev.cfg.upper[j])) {
            violation("position", "setpoint %.9g outside its limit %.9g", p, p < g_dev.cfg.lower[j] ? g_dev.cfg.lower[j]
                      : g_dev.cfg.upper[j], j);
        }
        if (!(fabsf(v) <= vmax * (1.0f + 1e-6f))) {
            violation("velocity", "|v| %.9g > max %.9g", fabsf(v), vmax, j);
        }
        if (dt > 0.0f && !(fabsf(v - v0[j]) <= amax * dt * 1.001f + 1e-7f)) {
            violation("accel", "|dv|/dt %.9g > max %.9g", fabsf(v - v0[j]) / dt, amax, j);
        }
        if (!(fabsf(p - p0[j]) <= vmax * dt * 1.001f + 1e-6f)) {
            violation("step", "|dp| %.9g > max_velocity*dt %.9g", fabsf(p - p0[j]), vmax * dt, j);
        }
        if (g_dev.mode != DGB_MODE_ARMED && (fabsf(v) > fabsf(v0[j]) + 1e-7f || v * v0[j] < 0.0f)) {
            violation("decel", "not armed but |v| went %.9g -> %.9g", v0[j], v, j);
        }
    }
}

static void clean_request(dgb_msg_t *m)
{
    uint8_t wire[DGB_MAX_WIRE];
    size_t n = 0;
    dgb_error_t err;
    m->seq = ++g_seq;
    dgb_encode(m, wire, sizeof wire, &n, &err);
    dgb_device_rx(&g_dev, wire, n, g_now);
}

/* --corrupt: the 1% corruption test in stepped time. A host streams TARGETS at 500 Hz (each frame
 * preceded by a 0x00, as BridgeHost does) through a line that replaces each byte with probability
 * 1% by another value (as testing.PtyProxy does); the firmware ticks at 1 kHz. Nothing re-arms.
 * Reports the longest run of lost commands, hold entries and safe-off trips; exits 1 if a damaged
 * frame was applied or an applied target differs from what was sent. */
#define CORRUPT_MAX_CMDS 600000u
static unsigned char g_damaged[CORRUPT_MAX_CMDS], g_was_applied[CORRUPT_MAX_CMDS];

static void stream_target(unsigned long k, float *q)
{
    unsigned i;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        q[i] = 0.5f * (g_dev.cfg.lower[i] + g_dev.cfg.upper[i]) +
               (i < DGB_NUM_ARM_JOINTS ? 0.05f * sinf((float)k / 100.0f) : 0.0f);
    }
}

static int corrupt_run(double seconds)
{
    dgb_msg_t m;
    const uint32_t first = g_seq + 3u;
    unsigned long cmds = (unsigned long)(seconds * 500.0), k, damaged_applied = 0, mismatched = 0, sent = 0;
    unsigned long applied = 0, longest = 0, run = 0, damaged = 0;
    unsigned sub;
    if (cmds > CORRUPT_MAX_CMDS) {
        fprintf(stderr, "semantic_fuzz: at most %u commands\n", CORRUPT_MAX_CMDS);
        return 2;
    }
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_HELLO;
    m.u.hello.protocol_version = DGB_PROTOCOL_VERSION;
    m.u.hello.num_joints = DGB_NUM_JOINTS;
    m.u.hello.schema_hash = g_dev.cfg.schema_hash;
    clean_request(&m);
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_ARM;
    m.session_id = g_dev.session_id;
    clean_request(&m);
    for (k = 0; k < cmds; ++k) {
        uint8_t wire[DGB_MAX_WIRE + 1u];
        size_t n = 0, b;
        dgb_error_t err;
        const unsigned long before = g_applied;
        bool hit = false;
        memset(&m, 0, sizeof m);
        m.type = DGB_MSG_TARGETS;
        m.seq = ++g_seq;
        m.session_id = g_dev.session_id;
        m.u.targets.host_time_us = g_now;
        stream_target(k, m.u.targets.positions);
        wire[0] = 0u;
        dgb_encode(&m, wire + 1, sizeof wire - 1u, &n, &err);
        ++n;
        for (b = 0; b < n; ++b) {
            if (below(100) == 0u) {
                wire[b] = (uint8_t)(wire[b] + 1u + below(255));
                hit = true;
            }
        }
        g_damaged[m.seq - first] = hit;
        sent++;
        dgb_device_rx(&g_dev, wire, n, g_now);
        if (g_applied != before) {
            /* a frame can complete later (its delimiter was damaged): check the seq it reported */
            const uint32_t s_applied = g_applied_seq;
            applied++;
            if (s_applied < first || s_applied - first >= cmds || g_damaged[s_applied - first]) {
                damaged_applied++;
            } else {
                float want[DGB_NUM_JOINTS];
                g_was_applied[s_applied - first] = 1u;
                stream_target(s_applied - first, want);
                if (memcmp(g_applied_pos, want, sizeof want) != 0) {
                    mismatched++;
                }
            }
        }
        for (sub = 0; sub < 2u; ++sub) {
            const dgb_mode_t before_mode = g_dev.mode;
            g_now += 1000u;
            g_ticks++;
            dgb_device_tick(&g_dev, g_now, 1e-3f);
            if (g_dev.mode == DGB_MODE_SAFE_OFF && before_mode != DGB_MODE_SAFE_OFF) {
                g_safe_offs++;
            }
            if (g_dev.mode == DGB_MODE_HOLD && before_mode != DGB_MODE_HOLD) {
                g_holds++;
            }
        }
    }
    for (k = 0; k < cmds; ++k) {
        damaged += g_damaged[k];
        run = g_was_applied[k] ? 0u : run + 1u;
        longest = run > longest ? run : longest;
    }
    printf("sent=%lu applied=%lu damaged=%lu damaged_applied=%lu mismatched=%lu longest_lost=%lu holds=%lu "
           "safe_offs=%lu final_mode=%u sim_s=%.1f\n", sent, applied, damaged, damaged_applied,
           mismatched, longest, g_holds, g_safe_offs, (unsigned)g_dev.mode, seconds);
    return damaged_applied == 0u && mismatched == 0u ? 0 : 1;
}

int main(int argc, char **argv)
{
    dgb_device_config_t cfg;
    static const char *const names[DGB_NUM_JOINTS] = {
        "arm_joint_1", "arm_joint_2", "arm_joint_3", "arm_joint_4", "arm_joint_5", "arm_joint_6", "arm_joint_7",
        "hand_joint_1", "hand_joint_2", "hand_joint_3", "hand_joint_4", "hand_joint_5", "hand_joint_6"};
    unsigned long frames, i;
    const bool corrupt = argc == 4 && strcmp(argv[1], "--corrupt") == 0;
    if (argc != 3 && !corrupt) {
        fprintf(stderr, "usage: semantic_fuzz SEED FRAMES | semantic_fuzz --corrupt SEED SECONDS\n");
        return 2;
    }
    g_rng = strtoull(argv[corrupt ? 2 : 1], NULL, 10) * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
    frames = strtoul(argv[corrupt ? 3 : 2], NULL, 10);
    dgb_device_default_config(&cfg);
    cfg.schema_hash = dgb_schema_hash(names, DGB_NUM_JOINTS);
    g_now = 1000000u;
    dgb_device_init(&g_dev, &cfg, (uint32_t)(rnd() | 1u), g_now, NULL, on_write, on_applied, NULL);
    memset(&g_model, 0, sizeof g_model);
    g_model.last_auth_us = g_now;
    if (corrupt) {
        return corrupt_run((double)frames);
    }
    while (g_frames < frames) {
        /* bursts: a few frames, then a few ticks; an ARM-heavy start so motion is reached early */
        unsigned burst = 1u + below(3), ticks = 1u + below(4);
        if (below(50) == 0u || (g_frames == 0u)) {
            dgb_msg_t m;
            uint8_t wire[DGB_MAX_WIRE];
            size_t n = 0;
            dgb_error_t err;
            memset(&m, 0, sizeof m); /* a good handshake now and then, so sessions come back */
            m.type = DGB_MSG_HELLO;
            m.seq = ++g_seq;
            m.u.hello.protocol_version = DGB_PROTOCOL_VERSION;
            m.u.hello.num_joints = DGB_NUM_JOINTS;
            m.u.hello.schema_hash = cfg.schema_hash;
            dgb_encode(&m, wire, sizeof wire, &n, &err);
            dgb_device_rx(&g_dev, wire, n, g_now);
            g_model.handshaked = true;
            g_model.last_seq = m.seq;
            g_model.last_cmd_time = 0u;
            g_model.last_auth_us = g_now;
            g_host_time = 1000u;
        }
        if (below(100) == 0u) { /* an undecodable frame now and then */
            uint8_t junk[40];
            for (i = 0; i + 1u < sizeof junk; ++i) {
                junk[i] = (uint8_t)(1u + below(255));
            }
            junk[sizeof junk - 1u] = 0u;
            dgb_device_rx(&g_dev, junk, sizeof junk, g_now);
        }
        for (i = 0; i < burst; ++i) {
            send_frame();
        }
        for (i = 0; i < ticks; ++i) {
            tick();
        }
    }
    printf("frames=%lu ticks=%lu authentic=%lu applied=%lu armed_ticks=%lu limited_ticks=%lu holds=%lu safe_offs=%lu "
           "pstops=%lu sim_s=%.1f violations=0\n", g_frames, g_ticks, g_authentic, g_applied, g_armed_ticks,
           g_limited_ticks, g_holds, g_safe_offs, g_pstops, (double)(g_now - 1000000u) * 1e-6);
    return 0;
}
