"""User-facing errors.

An `EdgeError` means the user gave us something we cannot use (a config, a model, a source, a
file). Its message names the thing and says how to fix it; the CLI prints it without a
traceback and exits with code 2. Any other exception is a bug.
"""

from edge.install_hint import install_command, install_packages
from edge.redact import redact_text


class EdgeError(Exception):
    """Base class of every error caused by user input rather than by a bug."""

    def __str__(self) -> str:
        # messages quote URIs (camera sources, broker URLs): never their passwords or tokens
        return redact_text(super().__str__())


class ConfigError(EdgeError):
    """The daemon config is missing, malformed, or has an unknown key or bad value."""


class ModelError(EdgeError):
    """A model file is missing, unreadable, or has a layout or spec we do not understand."""


#: What to pass instead of a file that is no ONNX model, for every command that reads one.
NOT_A_MODEL_FIX = ("the file may be cut short or another format: copy or export it again in "
                   "full (edge run, eval and calibrate take the .onnx that `edge convert` or "
                   "`edge calibrate` wrote)")
#: What a 0-byte model file is, for the messages of every command that reads one.
EMPTY_FILE = "is empty (0 bytes): the export or copy did not finish; export or copy it again"


class SourceError(EdgeError):
    """A frame source URI is malformed, names an unknown scheme, or cannot be opened."""


class InputError(EdgeError):
    """Some other input (a frame, a dataset, an argument) is not usable."""


class OutputError(EdgeError):
    """An output cannot be written where the user asked: a folder without write permission, a
    read-only file system, a full disk."""


class MissingDependencyError(EdgeError):
    """An optional library is not installed; the message names the extra that provides it."""

    def __init__(self, module: str, extra: str, purpose: str, alone: str | None = None) -> None:
        """`alone`: the pip requirements that suffice for `purpose` where the extra brings
        much more (a device user's `edge inspect` needs onnx, not torch's gigabytes)."""
        install = (f"for {purpose} alone, install it with: {install_packages(alone)}; for "
                   f"every command of the '{extra}' extra: " if alone else "install it with: ")
        super().__init__(
            f"{purpose} needs the Python module '{module}', which is not installed; "
            f"{install}{install_command(extra)}")
        self.module = module
        self.extra = extra
