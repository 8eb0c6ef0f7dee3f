"""One decoded STATE report, as the host hands it to the control loop (via BridgeHost.state)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_bridge import protocol as P


@dataclass(frozen=True)
class State:
    """One STATE report, as received. Arrays are float64 copies of the wire's float32 values."""

    session_id: int
    mcu_time_us: int
    positions: np.ndarray
    velocities: np.ndarray
    efforts: np.ndarray
    mode: P.Mode
    flags: int
    fault_flags: int
    last_error: int
    rx_errors: int
    last_applied_seq: int
    echo_host_time_us: int
    t_host_receive: float
