"""The FFmpeg options OpenCV opens every stream with (`OPENCV_FFMPEG_CAPTURE_OPTIONS`,
`key;value|key;value`), as far as edge sets or reads them: whether a camera's TLS certificate
is verified.

Cameras' certificates are self-signed nearly always. FFmpeg long verified none; the FFmpeg in
recent OpenCV wheels (libavformat 63) verifies by default, so an `https://` or `rtsps://` camera
failed with nothing on the terminal (a user check). Edge asks it not to, as NVRs do, unless the
user's own options say `tls_verify` (`tls_verify;1|ca_file;/etc/edge/cameras-ca.pem` verifies
against that CA).
"""

from __future__ import annotations

import difflib
import logging
import os
import ssl

from edge.redact import redact_text

log = logging.getLogger(__name__)

CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def capture_options() -> dict[str, str]:
    """The options as given in the environment, by name."""
    options = {}
    for pair in os.environ.get(CAPTURE_OPTIONS, "").split("|"):
        name, separator, value = pair.partition(";")
        if separator and name.strip():
            options[name.strip()] = value.strip()
    return options


def trust_camera_certificates() -> None:
    """Leave cameras' certificates unverified (`tls_verify;0`) where the user's options do not
    say; OpenCV reads them at each open, so call this before a TLS stream opens. It changes
    the environment once, the first time: sources are first built on the main thread, before
    any camera's thread opens a video (a `setenv` beside a `getenv` is unsafe in C)."""
    if "tls_verify" in capture_options():
        return
    given = os.environ.get(CAPTURE_OPTIONS, "").strip("|")
    os.environ[CAPTURE_OPTIONS] = f"{given}|tls_verify;0" if given else "tls_verify;0"
    misspelt = difflib.get_close_matches(CAPTURE_OPTIONS, [
        name for name in os.environ if name != CAPTURE_OPTIONS], n=1, cutoff=0.85)
    if misspelt:  # a user check: a name a letter short turned the check off unsaid
        log.warning("%s is set, but OpenCV reads %s: its options (%s) are not in effect, and "
                    "cameras' TLS certificates are not verified; rename it", misspelt[0],
                    CAPTURE_OPTIONS, redact_text(os.environ[misspelt[0]]))
    else:
        log.info("cameras' TLS certificates are not verified (they are self-signed nearly "
                 "always); %s=\"tls_verify;1|ca_file;/path/ca.pem\" verifies them",
                 CAPTURE_OPTIONS)


def certificate_check() -> tuple[bool, str | None]:
    """Whether FFmpeg verifies a camera's certificate, and against which CA file (None: the
    system's), as the options in the environment say."""
    options = capture_options()
    verify = options.get("tls_verify", "0") not in ("0", "")
    return verify, options.get("ca_file") or None


class CaFileError(OSError):
    """The CA file the user's FFmpeg options name cannot be read as one."""


def camera_tls_context() -> ssl.SSLContext:
    """A TLS context that checks a camera's certificate as FFmpeg does under these options:
    against `ca_file` (or the system's CAs) where `tls_verify` asks, else not at all.
    Raises CaFileError for a ca_file that cannot be read as certificates."""
    verify, ca_file = certificate_check()
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CaFileError(f"{ca_file}: {exc.strerror or exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
