/*
 * dgb_protocol.h - DexGrasp firmware bridge wire protocol (C99, no malloc).
 *
 * Every frame on the wire is COBS(payload) followed by one 0x00 delimiter, where
 *   payload = header (12 bytes) | body (body_len bytes) | CRC-32 (4 bytes, little-endian)
 * All multi-byte fields are little-endian; floats are IEEE-754 binary32. The full byte layout of
 * every message is in firmware_bridge/PROTOCOL.md. The caller owns every buffer; functions return
 * bool and report the reason through a dgb_error_t (dgb_error_name() gives its string).
 */
#ifndef DGB_PROTOCOL_H
#define DGB_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DGB_PROTOCOL_VERSION 2u /* 2: HELLO_ACK carries the compiled-in joint limits */
#define DGB_FIRMWARE_VERSION 0x00020000u /* 2.0.0 as major<<16 | minor<<8 | patch */
#define DGB_NUM_JOINTS 13u
#define DGB_NUM_ARM_JOINTS 7u
#define DGB_MAX_TRAJ_POINTS 8u

#define DGB_HEADER_SIZE 12u
#define DGB_CRC_SIZE 4u

/* Body sizes (bytes) of the fixed-size messages. */
#define DGB_BODY_HELLO 12u
/* HELLO_ACK: the 32-byte prefix every version shares, then (since version 2) the firmware's own
 * limits: lower, upper, max_velocity, max_acceleration as f32[13] each. Decoders also accept the
 * bare 32-byte version-1 answer, so a host still reports a version mismatch instead of a timeout. */
#define DGB_BODY_HELLO_ACK_V1 32u
#define DGB_BODY_HELLO_ACK (DGB_BODY_HELLO_ACK_V1 + 4u * 4u * DGB_NUM_JOINTS) /* 240 */
#define DGB_BODY_EMPTY 0u
#define DGB_BODY_HEARTBEAT 8u
#define DGB_BODY_TARGETS (12u + 4u * DGB_NUM_JOINTS)          /* 64 */
#define DGB_TRAJ_HEAD 12u
#define DGB_TRAJ_POINT (4u + 4u * DGB_NUM_JOINTS)            /* 56 */
#define DGB_BODY_TRAJECTORY(n) (DGB_TRAJ_HEAD + (n) * DGB_TRAJ_POINT)
#define DGB_BODY_STATE (28u + 3u * 4u * DGB_NUM_JOINTS)       /* 184 */
#define DGB_BODY_ACK 8u
#define DGB_BODY_FAULT 8u

#define DGB_MAX_BODY DGB_BODY_TRAJECTORY(DGB_MAX_TRAJ_POINTS) /* 460 */
#define DGB_MAX_PAYLOAD (DGB_HEADER_SIZE + DGB_MAX_BODY + DGB_CRC_SIZE) /* 476 */
/* COBS adds one byte per started 254-byte block, plus the leading code byte. */
#define DGB_MAX_ENCODED (DGB_MAX_PAYLOAD + (DGB_MAX_PAYLOAD / 254u) + 1u) /* 478 */
#define DGB_MAX_WIRE (DGB_MAX_ENCODED + 1u) /* with the 0x00 delimiter */

typedef enum {
    DGB_MSG_HELLO = 0x01,       /* host -> device: start a session handshake */
    DGB_MSG_ARM = 0x02,         /* host -> device: enable motion */
    DGB_MSG_DISARM = 0x03,      /* host -> device: disable motion (decelerate, hold) */
    DGB_MSG_PSTOP = 0x04,       /* host -> device: protective stop (latched) */
    DGB_MSG_CLEAR_PSTOP = 0x05, /* host -> device: clear the protective stop latch */
    DGB_MSG_HEARTBEAT = 0x06,   /* host -> device: keep-alive */
    DGB_MSG_TARGETS = 0x10,     /* host -> device: one timestamped joint target */
    DGB_MSG_TRAJECTORY = 0x11,  /* host -> device: up to 8 timed points to interpolate */
    DGB_MSG_HELLO_ACK = 0x81,   /* device -> host: handshake answer */
    DGB_MSG_STATE = 0x82,       /* device -> host: joint state report */
    DGB_MSG_ACK = 0x83,         /* device -> host: answer to ARM/DISARM/PSTOP/CLEAR_PSTOP/HEARTBEAT */
    DGB_MSG_FAULT = 0x84        /* device -> host: a received frame was rejected */
} dgb_msg_type_t;

typedef enum {
    DGB_OK = 0,
    /* framing / codec errors (a frame that fails these is never interpreted) */
    DGB_ERR_OVERSIZE = 1,  /* more than DGB_MAX_ENCODED bytes without a delimiter */
    DGB_ERR_COBS = 2,      /* invalid COBS encoding */
    DGB_ERR_SHORT = 3,     /* decoded payload shorter than header + CRC */
    DGB_ERR_CRC = 4,       /* CRC-32 mismatch */
    DGB_ERR_RESERVED = 5,  /* header flags byte not zero */
    DGB_ERR_LENGTH = 6,    /* header body_len disagrees with the payload size */
    DGB_ERR_TYPE = 7,      /* unknown message type */
    DGB_ERR_BODY_SIZE = 8, /* body size wrong for the message type */
    DGB_ERR_FIELD = 9,     /* a field is out of its range (e.g. trajectory point count) */
    DGB_ERR_BUFFER = 10,   /* caller buffer too small (encoder) */
    /* device-side semantic rejections */
    DGB_ERR_SESSION = 20,       /* session id is not the device's current session */
    DGB_ERR_NO_HANDSHAKE = 21,  /* command before a successful HELLO in this session */
    DGB_ERR_REPLAY = 22,        /* sequence number not newer than the last accepted one */
    DGB_ERR_STALE = 23,         /* command timestamp older than the last accepted command */
    DGB_ERR_NONFINITE = 24,     /* NaN or Inf in a command */
    DGB_ERR_NOT_ARMED = 25,     /* motion command while disarmed */
    DGB_ERR_SAFE_OFF = 26,      /* motion command while the watchdog safe-off is latched */
    DGB_ERR_PSTOP = 27,         /* motion command / ARM while the protective stop is latched */
    DGB_ERR_VERSION = 28,       /* HELLO: protocol version mismatch */
    DGB_ERR_SCHEMA = 29,        /* HELLO: joint count or joint-name schema hash mismatch */
    DGB_ERR_TRAJ_TIME = 30,     /* trajectory time offsets not strictly increasing */
    DGB_ERR_DIRECTION = 31      /* a device->host message was sent to the device */
} dgb_error_t;

typedef enum {
    DGB_MODE_DISARMED = 0,
    DGB_MODE_ARMED = 1,
    DGB_MODE_HOLD = 2,
    DGB_MODE_SAFE_OFF = 3,
    DGB_MODE_PSTOP = 4
} dgb_mode_t;

/* STATE.flags bits */
#define DGB_FLAG_HANDSHAKED 0x01u
#define DGB_FLAG_CLAMPED_POSITION 0x02u /* last applied command was clamped to position limits */
#define DGB_FLAG_LIMITED_VELOCITY 0x04u /* setpoint is velocity/acceleration limited this tick */
#define DGB_FLAG_TRAJECTORY 0x08u      /* a trajectory is being interpolated */

/* STATE.fault_flags bits (sticky until the next successful ARM) */
#define DGB_FAULT_WATCHDOG_SAFE_OFF 0x0001u
#define DGB_FAULT_NONFINITE 0x0002u
#define DGB_FAULT_RX_ERROR 0x0004u
#define DGB_FAULT_PSTOP 0x0008u

typedef struct {
    uint16_t protocol_version;
    uint16_t num_joints;
    uint32_t schema_hash;
    uint32_t host_nonce;
} dgb_hello_t;

typedef struct {
    uint16_t protocol_version;
    uint16_t num_joints;
    uint32_t schema_hash;
    uint32_t session_id;
    uint32_t host_nonce;
    uint32_t firmware_version;
    uint16_t result; /* dgb_error_t: DGB_OK, DGB_ERR_VERSION or DGB_ERR_SCHEMA */
    uint16_t max_traj_points;
    uint32_t hold_timeout_us;
    uint32_t safe_off_timeout_us;
    bool has_limits; /* false: a 32-byte version-1 answer (decoded only to report the version) */
    float lower[DGB_NUM_JOINTS];
    float upper[DGB_NUM_JOINTS];
    float max_velocity[DGB_NUM_JOINTS];
    float max_acceleration[DGB_NUM_JOINTS];
} dgb_hello_ack_t;

typedef struct {
    uint64_t host_time_us;
} dgb_heartbeat_t;

typedef struct {
    uint64_t host_time_us;
    uint32_t reach_in_us; /* 0: as fast as the limits allow */
    float positions[DGB_NUM_JOINTS];
} dgb_targets_t;

typedef struct {
    uint32_t t_offset_us; /* from the frame's arrival; strictly increasing */
    float positions[DGB_NUM_JOINTS];
} dgb_traj_point_t;

typedef struct {
    uint64_t host_time_us;
    uint8_t num_points; /* 1..DGB_MAX_TRAJ_POINTS */
    dgb_traj_point_t points[DGB_MAX_TRAJ_POINTS];
} dgb_trajectory_t;

typedef struct {
    uint64_t mcu_time_us;
    uint64_t echo_host_time_us; /* host_time_us of the last applied command */
    uint32_t last_applied_seq;
    uint8_t mode;  /* dgb_mode_t */
    uint8_t flags; /* DGB_FLAG_* */
    uint16_t fault_flags;
    uint16_t last_error;
    uint16_t rx_errors; /* rejected frames since boot, wraps */
    float positions[DGB_NUM_JOINTS];
    float velocities[DGB_NUM_JOINTS];
    float efforts[DGB_NUM_JOINTS];
} dgb_state_t;

typedef struct {
    uint32_t acked_seq;
    uint8_t acked_type;
    uint16_t result; /* dgb_error_t */
} dgb_ack_t;

typedef struct {
    uint16_t error;
    uint8_t rejected_type; /* 0 when the frame could not be decoded */
    uint32_t rejected_seq; /* 0 when the frame could not be decoded */
} dgb_fault_t;

typedef struct {
    uint8_t type; /* dgb_msg_type_t */
    uint32_t seq;
    uint32_t session_id;
    union {
        dgb_hello_t hello;
        dgb_hello_ack_t hello_ack;
        dgb_heartbeat_t heartbeat;
        dgb_targets_t targets;
        dgb_trajectory_t trajectory;
        dgb_state_t state;
        dgb_ack_t ack;
        dgb_fault_t fault;
    } u;
} dgb_msg_t;

/* Human-readable name of an error code ("DGB_ERR_CRC"); never NULL. */
const char *dgb_error_name(dgb_error_t err);
/* Name of a message type ("TARGETS"), or NULL if unknown. */
const char *dgb_msg_type_name(uint8_t type);
const char *dgb_mode_name(uint8_t mode);

/* True if `type` is a known message type. */
bool dgb_msg_type_known(uint8_t type);

/* Encode `msg` as a complete wire frame (COBS + trailing 0x00) into out[0..cap).
 * cap >= DGB_MAX_WIRE always suffices. On success *out_len is the number of bytes written. */
bool dgb_encode(const dgb_msg_t *msg, uint8_t *out, size_t cap, size_t *out_len, dgb_error_t *err);

/* Decode one COBS-encoded frame (the bytes between two delimiters, delimiter excluded).
 * Checks, in this order: size, COBS, length >= 16, CRC, flags, body_len, type, body size,
 * field ranges. Semantic checks (NaN, sequence, session) are the device's job. */
bool dgb_decode(const uint8_t *enc, size_t enc_len, dgb_msg_t *out, dgb_error_t *err);

/* FNV-1a 32-bit over each joint name's bytes followed by one 0x00 byte, in joint order. */
uint32_t dgb_schema_hash(const char *const names[], size_t count);

#ifdef __cplusplus
}
#endif
#endif /* DGB_PROTOCOL_H */
