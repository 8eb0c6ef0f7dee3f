/* Encoder / decoder of the wire protocol. Byte layouts: firmware_bridge/PROTOCOL.md. */
#include "dgb_protocol.h"

#include <string.h>

#include "dgb_cobs.h"
#include "dgb_crc32.h"

/* Wire sizes are part of the protocol: a change here is a protocol version bump. */
_Static_assert(sizeof(float) == 4, "binary32 floats required");
_Static_assert(DGB_BODY_TARGETS == 64u, "TARGETS body is 64 bytes");
_Static_assert(DGB_TRAJ_POINT == 56u, "trajectory point is 56 bytes");
_Static_assert(DGB_BODY_STATE == 184u, "STATE body is 184 bytes");
_Static_assert(DGB_MAX_BODY == 460u, "largest body is an 8-point trajectory");
_Static_assert(DGB_MAX_PAYLOAD == 476u, "largest payload");
_Static_assert(DGB_MAX_ENCODED == DGB_COBS_MAX_ENCODED(DGB_MAX_PAYLOAD), "encoded bound");
_Static_assert(DGB_MAX_PAYLOAD <= 0xFFFFu, "body_len fits in u16");

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v & 0xFFFFFFFFu));
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    put_u32(p, v);
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | ((uint16_t)p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

static float get_f32(const uint8_t *p)
{
    uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

static void put_joints(uint8_t *p, const float *v)
{
    unsigned i;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        put_f32(p + 4u * i, v[i]);
    }
}

static void get_joints(const uint8_t *p, float *v)
{
    unsigned i;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        v[i] = get_f32(p + 4u * i);
    }
}

static bool fail(dgb_error_t *err, dgb_error_t code)
{
    if (err != NULL) {
        *err = code;
    }
    return false;
}

const char *dgb_error_name(dgb_error_t err)
{
    switch (err) {
    case DGB_OK: return "OK";
    case DGB_ERR_OVERSIZE: return "ERR_OVERSIZE";
    case DGB_ERR_COBS: return "ERR_COBS";
    case DGB_ERR_SHORT: return "ERR_SHORT";
    case DGB_ERR_CRC: return "ERR_CRC";
    case DGB_ERR_RESERVED: return "ERR_RESERVED";
    case DGB_ERR_LENGTH: return "ERR_LENGTH";
    case DGB_ERR_TYPE: return "ERR_TYPE";
    case DGB_ERR_BODY_SIZE: return "ERR_BODY_SIZE";
    case DGB_ERR_FIELD: return "ERR_FIELD";
    case DGB_ERR_BUFFER: return "ERR_BUFFER";
    case DGB_ERR_SESSION: return "ERR_SESSION";
    case DGB_ERR_NO_HANDSHAKE: return "ERR_NO_HANDSHAKE";
    case DGB_ERR_REPLAY: return "ERR_REPLAY";
    case DGB_ERR_STALE: return "ERR_STALE";
    case DGB_ERR_NONFINITE: return "ERR_NONFINITE";
    case DGB_ERR_NOT_ARMED: return "ERR_NOT_ARMED";
    case DGB_ERR_SAFE_OFF: return "ERR_SAFE_OFF";
    case DGB_ERR_PSTOP: return "ERR_PSTOP";
    case DGB_ERR_VERSION: return "ERR_VERSION";
    case DGB_ERR_SCHEMA: return "ERR_SCHEMA";
    case DGB_ERR_TRAJ_TIME: return "ERR_TRAJ_TIME";
    case DGB_ERR_DIRECTION: return "ERR_DIRECTION";
    default: return "ERR_UNKNOWN";
    }
}

const char *dgb_msg_type_name(uint8_t type)
{
    switch (type) {
    case DGB_MSG_HELLO: return "HELLO";
    case DGB_MSG_ARM: return "ARM";
    case DGB_MSG_DISARM: return "DISARM";
    case DGB_MSG_PSTOP: return "PSTOP";
    case DGB_MSG_CLEAR_PSTOP: return "CLEAR_PSTOP";
    case DGB_MSG_HEARTBEAT: return "HEARTBEAT";
    case DGB_MSG_TARGETS: return "TARGETS";
    case DGB_MSG_TRAJECTORY: return "TRAJECTORY";
    case DGB_MSG_HELLO_ACK: return "HELLO_ACK";
    case DGB_MSG_STATE: return "STATE";
    case DGB_MSG_ACK: return "ACK";
    case DGB_MSG_FAULT: return "FAULT";
    default: return NULL;
    }
}

const char *dgb_mode_name(uint8_t mode)
{
    switch (mode) {
    case DGB_MODE_DISARMED: return "DISARMED";
    case DGB_MODE_ARMED: return "ARMED";
    case DGB_MODE_HOLD: return "HOLD";
    case DGB_MODE_SAFE_OFF: return "SAFE_OFF";
    case DGB_MODE_PSTOP: return "PSTOP";
    default: return "UNKNOWN";
    }
}

bool dgb_msg_type_known(uint8_t type)
{
    return dgb_msg_type_name(type) != NULL;
}

/* Body size of a message, or 0xFFFFFFFF if the type is unknown / count out of range. */
static size_t body_size(const dgb_msg_t *msg)
{
    switch (msg->type) {
    case DGB_MSG_HELLO: return DGB_BODY_HELLO;
    case DGB_MSG_ARM:
    case DGB_MSG_DISARM:
    case DGB_MSG_PSTOP:
    case DGB_MSG_CLEAR_PSTOP: return DGB_BODY_EMPTY;
    case DGB_MSG_HEARTBEAT: return DGB_BODY_HEARTBEAT;
    case DGB_MSG_TARGETS: return DGB_BODY_TARGETS;
    case DGB_MSG_TRAJECTORY:
        if (msg->u.trajectory.num_points < 1u || msg->u.trajectory.num_points > DGB_MAX_TRAJ_POINTS) {
            return (size_t)-1;
        }
        return DGB_BODY_TRAJECTORY((size_t)msg->u.trajectory.num_points);
    case DGB_MSG_HELLO_ACK: return msg->u.hello_ack.has_limits ? DGB_BODY_HELLO_ACK : DGB_BODY_HELLO_ACK_V1;
    case DGB_MSG_STATE: return DGB_BODY_STATE;
    case DGB_MSG_ACK: return DGB_BODY_ACK;
    case DGB_MSG_FAULT: return DGB_BODY_FAULT;
    default: return (size_t)-1;
    }
}

static void encode_body(const dgb_msg_t *msg, uint8_t *b)
{
    unsigned i;
    switch (msg->type) {
    case DGB_MSG_HELLO:
        put_u16(b + 0, msg->u.hello.protocol_version);
        put_u16(b + 2, msg->u.hello.num_joints);
        put_u32(b + 4, msg->u.hello.schema_hash);
        put_u32(b + 8, msg->u.hello.host_nonce);
        break;
    case DGB_MSG_HELLO_ACK:
        put_u16(b + 0, msg->u.hello_ack.protocol_version);
        put_u16(b + 2, msg->u.hello_ack.num_joints);
        put_u32(b + 4, msg->u.hello_ack.schema_hash);
        put_u32(b + 8, msg->u.hello_ack.session_id);
        put_u32(b + 12, msg->u.hello_ack.host_nonce);
        put_u32(b + 16, msg->u.hello_ack.firmware_version);
        put_u16(b + 20, msg->u.hello_ack.result);
        put_u16(b + 22, msg->u.hello_ack.max_traj_points);
        put_u32(b + 24, msg->u.hello_ack.hold_timeout_us);
        put_u32(b + 28, msg->u.hello_ack.safe_off_timeout_us);
        if (msg->u.hello_ack.has_limits) {
            put_joints(b + 32, msg->u.hello_ack.lower);
            put_joints(b + 32 + 4u * DGB_NUM_JOINTS, msg->u.hello_ack.upper);
            put_joints(b + 32 + 8u * DGB_NUM_JOINTS, msg->u.hello_ack.max_velocity);
            put_joints(b + 32 + 12u * DGB_NUM_JOINTS, msg->u.hello_ack.max_acceleration);
        }
        break;
    case DGB_MSG_HEARTBEAT:
        put_u64(b, msg->u.heartbeat.host_time_us);
        break;
    case DGB_MSG_TARGETS:
        put_u64(b + 0, msg->u.targets.host_time_us);
        put_u32(b + 8, msg->u.targets.reach_in_us);
        put_joints(b + 12, msg->u.targets.positions);
        break;
    case DGB_MSG_TRAJECTORY:
        put_u64(b + 0, msg->u.trajectory.host_time_us);
        b[8] = msg->u.trajectory.num_points;
        b[9] = 0u;
        b[10] = 0u;
        b[11] = 0u;
        for (i = 0; i < msg->u.trajectory.num_points; ++i) {
            uint8_t *p = b + DGB_TRAJ_HEAD + DGB_TRAJ_POINT * i;
            put_u32(p, msg->u.trajectory.points[i].t_offset_us);
            put_joints(p + 4, msg->u.trajectory.points[i].positions);
        }
        break;
    case DGB_MSG_STATE:
        put_u64(b + 0, msg->u.state.mcu_time_us);
        put_u64(b + 8, msg->u.state.echo_host_time_us);
        put_u32(b + 16, msg->u.state.last_applied_seq);
        b[20] = msg->u.state.mode;
        b[21] = msg->u.state.flags;
        put_u16(b + 22, msg->u.state.fault_flags);
        put_u16(b + 24, msg->u.state.last_error);
        put_u16(b + 26, msg->u.state.rx_errors);
        put_joints(b + 28, msg->u.state.positions);
        put_joints(b + 28 + 4 * DGB_NUM_JOINTS, msg->u.state.velocities);
        put_joints(b + 28 + 8 * DGB_NUM_JOINTS, msg->u.state.efforts);
        break;
    case DGB_MSG_ACK:
        put_u32(b + 0, msg->u.ack.acked_seq);
        b[4] = msg->u.ack.acked_type;
        b[5] = 0u;
        put_u16(b + 6, msg->u.ack.result);
        break;
    case DGB_MSG_FAULT:
        put_u16(b + 0, msg->u.fault.error);
        b[2] = msg->u.fault.rejected_type;
        b[3] = 0u;
        put_u32(b + 4, msg->u.fault.rejected_seq);
        break;
    default: /* empty bodies */
        break;
    }
}

bool dgb_encode(const dgb_msg_t *msg, uint8_t *out, size_t cap, size_t *out_len, dgb_error_t *err)
{
    uint8_t payload[DGB_MAX_PAYLOAD];
    size_t blen;
    size_t plen;
    size_t enc_len = 0;
    uint32_t crc;
    if (!dgb_msg_type_known(msg->type)) {
        return fail(err, DGB_ERR_TYPE);
    }
    blen = body_size(msg);
    if (blen > DGB_MAX_BODY) {
        return fail(err, DGB_ERR_FIELD);
    }
    payload[0] = msg->type;
    payload[1] = 0u;
    put_u16(payload + 2, (uint16_t)blen);
    put_u32(payload + 4, msg->seq);
    put_u32(payload + 8, msg->session_id);
    encode_body(msg, payload + DGB_HEADER_SIZE);
    plen = DGB_HEADER_SIZE + blen;
    crc = dgb_crc32(0u, payload, plen);
    put_u32(payload + plen, crc);
    plen += DGB_CRC_SIZE;
    if (cap < 1u || !dgb_cobs_encode(payload, plen, out, cap - 1u, &enc_len)) {
        return fail(err, DGB_ERR_BUFFER);
    }
    out[enc_len] = 0u;
    *out_len = enc_len + 1u;
    if (err != NULL) {
        *err = DGB_OK;
    }
    return true;
}

static bool decode_body(dgb_msg_t *out, const uint8_t *b, size_t blen, dgb_error_t *err)
{
    unsigned i;
    size_t want;
    switch (out->type) {
    case DGB_MSG_TRAJECTORY:
        if (blen < DGB_TRAJ_HEAD) {
            return fail(err, DGB_ERR_BODY_SIZE);
        }
        out->u.trajectory.num_points = b[8];
        if (b[8] < 1u || b[8] > DGB_MAX_TRAJ_POINTS) {
            return fail(err, DGB_ERR_FIELD);
        }
        want = DGB_BODY_TRAJECTORY((size_t)b[8]);
        break;
    case DGB_MSG_HELLO_ACK:
        /* the current layout, or a version-1 answer (prefix only) */
        out->u.hello_ack.has_limits = blen != DGB_BODY_HELLO_ACK_V1;
        want = body_size(out);
        break;
    default:
        want = body_size(out);
        break;
    }
    if (blen != want) {
        return fail(err, DGB_ERR_BODY_SIZE);
    }
    switch (out->type) {
    case DGB_MSG_HELLO:
        out->u.hello.protocol_version = get_u16(b + 0);
        out->u.hello.num_joints = get_u16(b + 2);
        out->u.hello.schema_hash = get_u32(b + 4);
        out->u.hello.host_nonce = get_u32(b + 8);
        break;
    case DGB_MSG_HELLO_ACK:
        out->u.hello_ack.protocol_version = get_u16(b + 0);
        out->u.hello_ack.num_joints = get_u16(b + 2);
        out->u.hello_ack.schema_hash = get_u32(b + 4);
        out->u.hello_ack.session_id = get_u32(b + 8);
        out->u.hello_ack.host_nonce = get_u32(b + 12);
        out->u.hello_ack.firmware_version = get_u32(b + 16);
        out->u.hello_ack.result = get_u16(b + 20);
        out->u.hello_ack.max_traj_points = get_u16(b + 22);
        out->u.hello_ack.hold_timeout_us = get_u32(b + 24);
        out->u.hello_ack.safe_off_timeout_us = get_u32(b + 28);
        if (out->u.hello_ack.has_limits) {
            get_joints(b + 32, out->u.hello_ack.lower);
            get_joints(b + 32 + 4u * DGB_NUM_JOINTS, out->u.hello_ack.upper);
            get_joints(b + 32 + 8u * DGB_NUM_JOINTS, out->u.hello_ack.max_velocity);
            get_joints(b + 32 + 12u * DGB_NUM_JOINTS, out->u.hello_ack.max_acceleration);
        }
        break;
    case DGB_MSG_HEARTBEAT:
        out->u.heartbeat.host_time_us = get_u64(b);
        break;
    case DGB_MSG_TARGETS:
        out->u.targets.host_time_us = get_u64(b + 0);
        out->u.targets.reach_in_us = get_u32(b + 8);
        get_joints(b + 12, out->u.targets.positions);
        break;
    case DGB_MSG_TRAJECTORY:
        out->u.trajectory.host_time_us = get_u64(b + 0);
        for (i = 0; i < out->u.trajectory.num_points; ++i) {
            const uint8_t *p = b + DGB_TRAJ_HEAD + DGB_TRAJ_POINT * i;
            out->u.trajectory.points[i].t_offset_us = get_u32(p);
            get_joints(p + 4, out->u.trajectory.points[i].positions);
        }
        break;
    case DGB_MSG_STATE:
        out->u.state.mcu_time_us = get_u64(b + 0);
        out->u.state.echo_host_time_us = get_u64(b + 8);
        out->u.state.last_applied_seq = get_u32(b + 16);
        out->u.state.mode = b[20];
        out->u.state.flags = b[21];
        out->u.state.fault_flags = get_u16(b + 22);
        out->u.state.last_error = get_u16(b + 24);
        out->u.state.rx_errors = get_u16(b + 26);
        get_joints(b + 28, out->u.state.positions);
        get_joints(b + 28 + 4 * DGB_NUM_JOINTS, out->u.state.velocities);
        get_joints(b + 28 + 8 * DGB_NUM_JOINTS, out->u.state.efforts);
        break;
    case DGB_MSG_ACK:
        out->u.ack.acked_seq = get_u32(b + 0);
        out->u.ack.acked_type = b[4];
        out->u.ack.result = get_u16(b + 6);
        break;
    case DGB_MSG_FAULT:
        out->u.fault.error = get_u16(b + 0);
        out->u.fault.rejected_type = b[2];
        out->u.fault.rejected_seq = get_u32(b + 4);
        break;
    default:
        break;
    }
    return true;
}

bool dgb_decode(const uint8_t *enc, size_t enc_len, dgb_msg_t *out, dgb_error_t *err)
{
    uint8_t payload[DGB_MAX_PAYLOAD];
    size_t plen = 0;
    size_t blen;
    uint32_t crc_wire;
    if (enc_len > DGB_MAX_ENCODED) {
        return fail(err, DGB_ERR_OVERSIZE);
    }
    if (!dgb_cobs_decode(enc, enc_len, payload, sizeof payload, &plen)) {
        return fail(err, DGB_ERR_COBS);
    }
    if (plen < DGB_HEADER_SIZE + DGB_CRC_SIZE) {
        return fail(err, DGB_ERR_SHORT);
    }
    crc_wire = get_u32(payload + plen - DGB_CRC_SIZE);
    if (dgb_crc32(0u, payload, plen - DGB_CRC_SIZE) != crc_wire) {
        return fail(err, DGB_ERR_CRC);
    }
    if (payload[1] != 0u) {
        return fail(err, DGB_ERR_RESERVED);
    }
    blen = get_u16(payload + 2);
    if (blen != plen - DGB_HEADER_SIZE - DGB_CRC_SIZE) {
        return fail(err, DGB_ERR_LENGTH);
    }
    memset(out, 0, sizeof *out);
    out->type = payload[0];
    out->seq = get_u32(payload + 4);
    out->session_id = get_u32(payload + 8);
    if (!dgb_msg_type_known(out->type)) {
        return fail(err, DGB_ERR_TYPE);
    }
    if (!decode_body(out, payload + DGB_HEADER_SIZE, blen, err)) {
        return false;
    }
    if (err != NULL) {
        *err = DGB_OK;
    }
    return true;
}

uint32_t dgb_schema_hash(const char *const names[], size_t count)
{
    uint32_t h = 0x811C9DC5u;
    size_t i;
    for (i = 0; i < count; ++i) {
        const unsigned char *p = (const unsigned char *)names[i];
        while (*p != 0u) {
            h ^= *p++;
            h *= 0x01000193u;
        }
        h ^= 0u;
        h *= 0x01000193u;
    }
    return h;
}
