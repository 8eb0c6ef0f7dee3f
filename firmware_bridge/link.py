"""The serial port: exclusive open (TIOCEXCL, plus pyserial's advisory flock), a named reader
thread feeding the framer, a locked writer.

Shaped like pyserial's `serial.threaded.ReaderThread`: one thread blocks in `read`, hands every
decoded frame (with its host receive time) and every rejection to callbacks, and reports a port
that went away (cable pulled, emulator killed) once through `on_disconnect`, then ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import struct
import termios
import threading
from collections.abc import Callable

from firmware_bridge import protocol as P
from firmware_bridge.framer import FrameError, Framer
from runtime.clock import Clock
from runtime.errors import DeviceNotConnectedError

log = logging.getLogger(__name__)


TIOCGEXCL = 0x80045440  # Linux _IOR('T', 0x40, int): is TIOCEXCL set on this tty?


def take_tty_exclusive(fd: int, port: str, name: str = "bridge") -> bool:
    """Set TIOCEXCL on the open tty: every later open() of the device fails with EBUSY.

    pyserial's `exclusive=True` is only an advisory flock(), which a plain open() ignores (it
    read the session id off the line and injected a target). Root (CAP_SYS_ADMIN) still gets
    through TIOCEXCL, so the host also detects a second writer on the protocol level.
    Returns False (with a warning) where the port is no tty that supports it."""
    try:
        fcntl.ioctl(fd, termios.TIOCEXCL)
    except OSError as exc:
        log.warning("%s: %s: exclusive tty mode (TIOCEXCL) not available: %s", name, port, exc)
        return False
    return True


def tty_is_exclusive(fd: int) -> bool:
    """Whether TIOCEXCL is set on the tty behind `fd` (Linux TIOCGEXCL)."""
    return struct.unpack("i", fcntl.ioctl(fd, TIOCGEXCL, struct.pack("i", 0)))[0] != 0


class SerialLink:
    """One open serial port. `write` is thread-safe; callbacks run on the reader thread."""

    def __init__(
        self,
        port: str,
        on_message: Callable[[P.Message, float], None],
        on_frame_error: Callable[[FrameError], None],
        on_disconnect: Callable[[Exception], None],
        clock: Clock | None = None,
        baudrate: int = 2_000_000,
        write_timeout_s: float = 0.05,
        name: str = "bridge",
    ) -> None:
        self.port = port
        self.clock = clock or Clock()
        self._on_message = on_message
        self._on_frame_error = on_frame_error
        self._on_disconnect = on_disconnect
        self._baudrate = baudrate
        self._write_timeout_s = write_timeout_s
        self._name = name
        self._serial = None
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self.framer = Framer()
        self.bytes_rx = 0
        self.bytes_tx = 0
        self.exclusive_tty = False  # TIOCEXCL set by open()

    def open(self) -> None:
        """Open the port exclusively and start the reader. Raises DeviceNotConnectedError naming
        the port when it is missing, busy (another process holds it) or not a serial device."""
        import serial  # pyserial

        try:
            self._serial = serial.Serial(
                self.port, baudrate=self._baudrate, timeout=0.05, write_timeout=self._write_timeout_s,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            text = str(exc).lower()
            busy = "lock" in text or "resource temporarily unavailable" in text or "busy" in text
            why = "another process has it open (exclusive open refused)" if busy else str(exc)
            raise DeviceNotConnectedError(f"cannot open serial port {self.port}: {why}") from None
        self.exclusive_tty = take_tty_exclusive(self._serial.fileno(), self.port, self._name)
        self._stop.clear()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._read_loop, name=f"{self._name}-reader", daemon=True)
        self._thread.start()

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._thread is not None and self._thread.is_alive()

    def write(self, data: bytes) -> None:
        """Write one or more whole frames. Blocks at most `write_timeout_s`; raises
        DeviceNotConnectedError if the port is closed, gone or stuck."""
        import serial

        ser = self._serial
        if ser is None:
            raise DeviceNotConnectedError(f"serial port {self.port} is not open")
        with self._write_lock:
            try:
                ser.write(data)
            except (serial.SerialException, OSError) as exc:
                raise DeviceNotConnectedError(f"write to {self.port} failed: {exc}") from None
            self.bytes_tx += len(data)

    def _read_loop(self) -> None:
        """poll() + os.read on the port's fd (pyserial configures the port; reading ourselves lets
        us tell a hang-up (POLLHUP/POLLERR: the device is gone) from a spurious empty read, which a
        pty can produce and pyserial would report as a disconnect)."""
        fd = self._serial.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        poller.register(self._wake_r, select.POLLIN)
        empty_reads = 0
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(100))
                if self._stop.is_set():
                    break
                ev = events.get(fd, 0)
                if ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) and not ev & select.POLLIN:
                    raise OSError(f"hang-up on {self.port} (poll events 0x{ev:x})")
                if not ev & select.POLLIN:
                    continue
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    empty_reads += 1
                    if empty_reads > 50:
                        raise OSError(f"{self.port} keeps returning no data (device disconnected?)")
                    continue
                empty_reads = 0
                t_rx = self.clock.now()
                self.bytes_rx += len(data)
                for event in self.framer.feed(data):
                    if isinstance(event, FrameError):
                        self._on_frame_error(event)
                    else:
                        self._on_message(event, t_rx)
        except OSError as exc:
            if not self._stop.is_set():
                log.warning("%s: serial port %s lost: %s", self._name, self.port, exc)
                self._on_disconnect(exc)

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the reader (joined with a timeout) and close the port. Idempotent."""
        self._stop.set()
        ser = self._serial
        if self._wake_w is not None:
            os.write(self._wake_w, b"x")
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout_s)
            if t.is_alive():
                log.warning("%s: reader thread still alive after %.1f s", self._name, timeout_s)
        if ser is not None:
            if self.exclusive_tty:
                # The flag lives on the tty, not the fd: a pty whose other end stays open (the
                # emulator) would refuse the next non-root open, our own reconnect included.
                with contextlib.suppress(OSError, ValueError):
                    fcntl.ioctl(ser.fileno(), termios.TIOCNXCL)
                self.exclusive_tty = False
            try:
                ser.close()
            except OSError as exc:
                log.debug("%s: close: %s", self._name, exc)
        self._serial = None
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None
