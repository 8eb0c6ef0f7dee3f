/*
 * dgb_device.h - the firmware side of the bridge: session, handshake, sequence rules, the
 * disarmed / armed / hold / safe-off / protective-stop state machine, the command watchdog and
 * the setpoint generator (position clamp, velocity and acceleration limits, deceleration on hold).
 *
 * Platform-free: the caller feeds received bytes (dgb_device_rx), calls dgb_device_tick at the
 * servo rate with a monotonic microsecond clock, and provides a write callback for outgoing bytes.
 * The setpoint (dev->setpoint) is what the motor controllers should track.
 */
#ifndef DGB_DEVICE_H
#define DGB_DEVICE_H
#include "dgb_framer.h"

typedef struct {
    float lower[DGB_NUM_JOINTS];
    float upper[DGB_NUM_JOINTS];
    float max_velocity[DGB_NUM_JOINTS];     /* per second */
    float max_acceleration[DGB_NUM_JOINTS]; /* per second^2 */
    uint32_t schema_hash;
    uint32_t hold_timeout_us;     /* no motion command for this long: decelerate and hold */
    uint32_t safe_off_timeout_us; /* no valid host frame for this long: latched safe-off */
} dgb_device_config_t;

typedef void (*dgb_write_fn)(void *ctx, const uint8_t *bytes, size_t len);
/* Called once per applied joint target (after position clamping); trajectories call it per point. */
typedef void (*dgb_applied_fn)(void *ctx, uint32_t seq, uint64_t now_us, const float positions[DGB_NUM_JOINTS]);

typedef struct {
    dgb_device_config_t cfg;
    dgb_write_fn write;
    dgb_applied_fn applied;
    void *ctx;

    uint32_t session_id;
    uint64_t boot_us;
    dgb_mode_t mode;
    bool handshaked;
    uint32_t last_rx_seq;
    uint64_t last_cmd_host_time_us;
    uint32_t last_applied_seq;
    uint64_t echo_host_time_us;
    uint64_t last_motion_cmd_us;
    uint64_t last_host_frame_us;
    uint32_t tx_seq;
    uint16_t fault_flags;
    uint16_t last_error;
    uint16_t rx_errors;
    uint8_t flags;
    bool state_due; /* a command was applied: report state now */

    /* motion goal: either a single target (reach by goal_deadline_us) or a trajectory */
    float goal[DGB_NUM_JOINTS];
    uint64_t goal_deadline_us;
    bool traj_active;
    uint64_t traj_start_us;
    dgb_trajectory_t traj;

    float setpoint[DGB_NUM_JOINTS];
    float setpoint_velocity[DGB_NUM_JOINTS];

    dgb_framer_t framer;
} dgb_device_t;

/* Defaults: the 13-joint arm+hand limits of PROTOCOL.md, 20 ms hold, 150 ms safe-off. */
void dgb_device_default_config(dgb_device_config_t *cfg);

/* Start (boot) the device at `now_us` with a fresh session id (must be non-zero) and the initial
 * setpoint (the measured joint positions at boot, clamped into the limits). */
void dgb_device_init(dgb_device_t *dev, const dgb_device_config_t *cfg, uint32_t session_id,
                     uint64_t now_us, const float initial[DGB_NUM_JOINTS], dgb_write_fn write,
                     dgb_applied_fn applied, void *ctx);

/* Feed received bytes. Every complete frame is decoded and handled; answers are written. */
void dgb_device_rx(dgb_device_t *dev, const uint8_t *data, size_t len, uint64_t now_us);

/* Handle one decoded frame (what dgb_device_rx does per frame). */
void dgb_device_handle(dgb_device_t *dev, const dgb_msg_t *msg, uint64_t now_us);

/* Servo tick: watchdog, then advance the setpoint by dt_s within the limits. */
void dgb_device_tick(dgb_device_t *dev, uint64_t now_us, float dt_s);

/* Write one STATE report with the measured values. Clears state_due. */
void dgb_device_send_state(dgb_device_t *dev, uint64_t now_us, const float pos[DGB_NUM_JOINTS],
                           const float vel[DGB_NUM_JOINTS], const float eff[DGB_NUM_JOINTS]);
#endif
