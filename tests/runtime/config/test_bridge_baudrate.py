"""`bridge.baudrate` reaches the serial port: it used to be validated and then ignored (2 000 000 baud
whatever the config said). Checked on a pseudo-terminal, whose termios records the speed pyserial sets."""

import os
import termios

import pytest

from runtime.clock import Clock
from runtime.config import config_from_dict

pytest.importorskip("serial")

HOME = [0.0] * 13


@pytest.fixture
def pty_port():
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave), slave
    finally:
        os.close(master)
        os.close(slave)


def line_speed(fd: int) -> tuple[int, int]:
    attrs = termios.tcgetattr(fd)
    return attrs[4], attrs[5]  # ispeed, ospeed


@pytest.mark.parametrize("baudrate, speed", [(115200, termios.B115200), (1_000_000, termios.B1000000)])
def test_make_bridge_opens_the_serial_port_at_the_configured_rate(monkeypatch, pty_port, baudrate, speed):
    from firmware_bridge.host import BridgeHost
    from runtime.config.components import make_bridge

    port, slave = pty_port
    opened = []

    def open_only(self, timeout_s=2.0):  # no firmware behind the pty: stop after opening the port
        self._open_link()
        opened.append(self)

    monkeypatch.setattr(BridgeHost, "connect", open_only)
    cfg = config_from_dict({"bridge": {"kind": "serial", "port": port, "baudrate": baudrate},
                            "robot": {"home_positions": HOME}})
    handle = make_bridge(cfg, Clock())  # the serial kind: BridgeHost on the pty
    try:
        assert opened and opened[0].baudrate == baudrate
        assert line_speed(slave) == (speed, speed)
    finally:
        handle.close()


def test_host_option_cannot_silently_override_nothing(pty_port):
    """An unknown key under bridge.options.host is refused, never dropped (it used to be, at debug level)."""
    from runtime.errors import ConfigError

    port, _ = pty_port
    with pytest.raises(ConfigError, match=r"bridge.options.host.baud_rate: unknown key; did you mean 'baudrate'\?"):
        config_from_dict({"bridge": {"kind": "serial", "port": port, "options": {"host": {"baud_rate": 9600}}},
                          "robot": {"home_positions": HOME}})
