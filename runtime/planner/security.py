"""Optional CURVE authentication and encryption for the planner link.

Why: the planner link crosses a lab network, and whoever can talk to the robot's planner client can
choose what the robot grasps. With CURVE the client pins the server's public key (a server with any
other key is never answered), and the server only accepts clients whose public keys are in an
allowlist directory (checked by a ZAP handler, pyzmq's ThreadAuthenticator). Keys are ZeroMQ
certificate files made by `dexgrasp planner keygen`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from runtime.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurveServerConfig:
    """The server's own secret certificate and a directory of allowed clients' public certificates."""

    secret_key_file: str
    allowed_clients_dir: str


@dataclass(frozen=True)
class CurveClientConfig:
    """The client's own secret certificate and the server's public certificate it pins."""

    secret_key_file: str
    server_public_key_file: str


def generate_keypair(directory: str, name: str) -> tuple[str, str]:
    """Write `name.key` (public, share it) and `name.key_secret` (keep it) into `directory`."""
    import zmq.auth

    os.makedirs(directory, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return public, secret


def load_public(path: str) -> bytes:
    import zmq.auth

    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load CURVE public key from '{path}': {exc}") from exc
    return public


def load_secret(path: str) -> tuple[bytes, bytes]:
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load CURVE key pair from '{path}': {exc}") from exc
    if not secret:
        raise ConfigError(f"'{path}' holds no secret key (pass the .key_secret file)")
    return public, secret


def apply_server(socket, ctx, cfg: CurveServerConfig):
    """Make `socket` a CURVE server and start a ZAP authenticator on `ctx`; returns the authenticator
    (stop it when the socket closes)."""
    from zmq.auth.thread import ThreadAuthenticator

    if not os.path.isdir(cfg.allowed_clients_dir):
        raise ConfigError(f"CURVE allowed-clients directory '{cfg.allowed_clients_dir}' does not exist")
    public, secret = load_secret(cfg.secret_key_file)
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("runtime.planner.zap"))
    auth.start()
    auth.configure_curve(domain="*", location=cfg.allowed_clients_dir)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return auth


def apply_client(socket, cfg: CurveClientConfig) -> None:
    """Make `socket` a CURVE client pinned to the server's public key."""
    public, secret = load_secret(cfg.secret_key_file)
    socket.curve_serverkey = load_public(cfg.server_public_key_file)
    socket.curve_publickey = public
    socket.curve_secretkey = secret
