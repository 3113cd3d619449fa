"""Why a camera's server could not be talked to, in words, from what the network said: one
wording for the stream probe (`edge.sources.stream_probe`) and the snapshot camera
(`edge.sources.snapshot`), which meet the same failures (a name that does not resolve, a
refused connection, a certificate that does not verify, a ca_file that cannot be read)."""

from __future__ import annotations

import socket
import ssl

from edge.sources.ffmpeg_options import CAPTURE_OPTIONS, CaFileError, certificate_check
from edge.sources.stream_url import TLS_SCHEMES, StreamTarget

#: OpenSSL's verify codes for a certificate made out to another host name, or address
#: (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH).
X509_HOST_MISMATCHES = frozenset({62, 64})


def unreached(exc: OSError, target: StreamTarget, timeout: float) -> str:
    """Why the server of `target` could not be talked to within `timeout` seconds, from the
    error the network step raised. Never quotes the credentials."""
    protocol = target.protocol
    if isinstance(exc, socket.gaierror):
        return (f"the host name {target.host!r} does not resolve ({exc.strerror}): check the "
                "camera's address, or use its IP address")
    if isinstance(exc, ConnectionRefusedError) and target.playlist:
        return (f"{target.address} refused the connection: nothing listens on that port (check "
                "the port the restreamer or NVR serves its HLS on, as go2rtc's 1984 or "
                "Frigate's 5000, and that it runs)")
    if isinstance(exc, ConnectionRefusedError):
        service = target.scheme.upper()
        return (f"{target.address} refused the connection: nothing listens on that port (the "
                f"camera's {service} port is usually {target.default_port}; check its network "
                f"settings, and that its {service} service is on)")
    if isinstance(exc, TimeoutError):
        return (f"{target.address} did not answer within {timeout:g} s ({busy_or(target)}the "
                "camera switched off, on another network, or a firewall in the way)")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return untrusted(target, exc)
    if isinstance(exc, CaFileError):
        return (f"the ca_file in {CAPTURE_OPTIONS} cannot be read as certificates ({exc}): "
                "give the path of the camera's CA certificate (PEM)")
    if isinstance(exc, ssl.SSLError):
        return (f"the TLS handshake with {target.address} failed ({exc.reason or exc}); "
                f"{target.scheme}:// needs the camera's {protocol}-over-TLS port, "
                f"{TLS_SCHEMES.get(target.scheme, target.scheme)}:// the plain one")
    if isinstance(exc, ConnectionError):
        return (f"{target.address} closed the connection during the {protocol} handshake "
                f"({exc})")
    return f"{target.address} could not be reached ({exc.strerror or exc})"


def busy_or(target: StreamTarget) -> str:
    """For an HTTP camera, the first cause of its silence: it streams to another viewer (a
    one-client camera, busy, neither answers nor, its queue full, takes a connection)."""
    return ("a camera that streams to one viewer at a time, as ESP32 cameras do, serving "
            "another: close that viewer; or " if target.protocol == "HTTP" else "")


def usual_port(target: StreamTarget) -> str:
    """The scheme's usual port, and for a plain scheme the TLS one's scheme (a user check:
    http:// to an https port was not told to write https://)."""
    tls = next((tls for tls, plain in TLS_SCHEMES.items() if plain == target.scheme), None)
    return (f"usually {target.default_port}; a port serving TLS wants {tls}://" if tls else
            f"usually {target.default_port}")


def untrusted(target: StreamTarget, exc: ssl.SSLCertVerificationError) -> str:
    """Why the camera's certificate failed the check the user's FFmpeg options ask for."""
    why = exc.verify_message or str(exc)
    ca_file = certificate_check()[1]
    if exc.verify_code in X509_HOST_MISMATCHES:  # a user check: an address's was "not signed"
        return (f"{target.address}'s certificate is made out to another host ({why}): "
                "give the camera by a name or address its certificate holds, or leave "
                f"tls_verify out of {CAPTURE_OPTIONS}")
    if ca_file is not None:
        return (f"{target.address}'s certificate is not signed by the CA in {ca_file} ({why}): "
                f"give the CA that signed it as ca_file in {CAPTURE_OPTIONS}, or the camera's "
                "own certificate where it signed itself")
    return (f"{target.address}'s certificate was refused ({why}), as {CAPTURE_OPTIONS} asks "
            "it verified: give the camera's CA as ca_file;/path/ca.pem there, or leave "
            "tls_verify out (cameras' certificates are then not verified)")
