"""Certificates (openssl CLI) and a Mosquitto with TLS, client certificates and passwords."""

from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge.broker import free_port
from tests.conftest import Mosquitto


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: "wrong CA"


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", key, "-out", cert)
    return cert, key


def _signed(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", f"/CN={name}", "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-days", "2", "-extfile", ext, "-out", cert)
    return cert, key


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "edge-test-ca")
    server = _signed(folder, "broker", ca, "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                           "extendedKeyUsage=serverAuth\n")
    client = _signed(folder, "edge-client", ca, "extendedKeyUsage=clientAuth\n")
    other, _ = _ca(folder, "other-ca")
    return Pki(ca[0], *server, *client, other)


def tls_mosquitto(folder: Path, pki: Pki, password_file: Path | None = None) -> Mosquitto:
    """A broker with a plain listener (for the test's watcher, anonymous) and a TLS listener
    that requires a client certificate (and, with `password_file`, a password)."""
    plain, tls = free_port(), free_port()
    config = folder / "mosquitto-tls.conf"
    auth = (f"allow_anonymous false\npassword_file {password_file}\n" if password_file
            else "allow_anonymous true\n")
    config.write_text(
        "per_listener_settings true\npersistence false\n"
        f"user {getpass.getuser()}\n"  # files under pytest's 0700 tmp folders stay readable
        f"listener {plain} 127.0.0.1\nallow_anonymous true\n"
        f"listener {tls} 127.0.0.1\n{auth}"
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        "require_certificate true\n")
    broker = Mosquitto(plain, config)
    broker.tls_port = tls  # type: ignore[attr-defined]
    return broker


def password_file(folder: Path, user: str, password: str) -> Path:
    path = folder / "mosquitto.passwd"
    path.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True,
                   capture_output=True, timeout=30)
    path.chmod(0o644)  # mosquitto drops to its own user before reading it
    return path


def login_mosquitto(folder: Path, user: str, password: str) -> Mosquitto:
    """A plain Mosquitto on a free port that lets in only `user` with `password` (not
    started)."""
    port = free_port()
    config = folder / "login.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
                      f"user {getpass.getuser()}\n"
                      f"password_file {password_file(folder, user, password)}\n")
    return Mosquitto(port, config)
