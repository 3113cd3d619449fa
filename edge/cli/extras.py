"""Which extra each command needs beyond the plain install.

A plain `pip install` is the MQTT client: paho-mqtt and pydantic, enough for `edge monitor`
and `edge.client` on a laptop or a dashboard host. Every other command runs cameras, models or
images and needs the runtime's libraries (NumPy, OpenCV, SciPy, Pillow), which the `cpu`,
`jetson` and `convert` extras bring; a missing one is an exit-2 error with the command that
installs the extra, never a ModuleNotFoundError traceback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection

from edge.errors import MissingDependencyError
from edge.install_hint import DEMO_ALONE

#: Commands the plain install runs.
CLIENT_COMMANDS = frozenset({"monitor"})
#: The runtime's modules (the `runtime` extra, which the others include), by import name.
RUNTIME_MODULES = ("numpy", "cv2", "scipy", "PIL")
#: Commands whose extras are not `cpu`: the workstation's (`edge eval` is not one: it scores
#: with ONNX Runtime and OpenCV alone, so a device with the `cpu` extra runs it), the Jetson's
#: TensorRT ones, the demo (its embedded broker and tracking metrics), and those that run no
#: model (`runtime` alone: a laptop collecting a fleet's frames needs no ONNX Runtime).
COMMAND_EXTRAS = {"convert": "convert", "inspect": "convert", "calibrate": "convert",
                  "build-engine": "jetson", "selftest": "jetson", "demo": "cpu,demo",
                  "collect": "runtime", "probe": "runtime"}


def command_extra(command: str) -> str | None:
    """The extra `command` needs (None: the plain install runs it)."""
    if command in CLIENT_COMMANDS:
        return None
    return COMMAND_EXTRAS.get(command, "cpu")


#: Modules of an extra beyond the runtime's, by import name (what a command's --help checks).
EXTRA_OWN_MODULES = {"convert": ("onnx",), "cpu,demo": ("amqtt", "motmetrics")}
#: Extras whose own modules are checked before the command starts anything, as the runtime's
#: are: the demo's (it had started its broker and printed how to watch it when the missing
#: metrics module stopped it). The workstation's commands check theirs themselves, with advice
#: of their own (a device's `edge calibrate` needs ONNX alone, not PyTorch).
CHECKED_AT_START = frozenset({"cpu,demo"})


def extra_modules(extra: str) -> tuple[str, ...]:
    """Modules that tell whether `extra` is installed here: the runtime's, then its own."""
    return (*RUNTIME_MODULES, *EXTRA_OWN_MODULES.get(extra, ()))


def require_runtime(command: str, unneeded: Collection[str] = ()) -> None:
    """MissingDependencyError naming the extra when `command` needs a module of it that is
    not installed: the runtime's libraries, and the extra's own where `CHECKED_AT_START`, but
    those its options make `unneeded` (`modules_unneeded`)."""
    extra = command_extra(command)
    if extra is None:
        return
    needed = extra_modules(extra) if extra in CHECKED_AT_START else RUNTIME_MODULES
    module = next((name for name in needed
                   if name not in unneeded and importlib.util.find_spec(name) is None), None)
    if module is not None:
        raise MissingDependencyError(module, extra, f"edge {command}",
                                     DEMO_ALONE.get(module) if extra == "cpu,demo" else None)


def modules_unneeded(command: str, mqtt: str | None) -> frozenset[str]:
    """Modules of a command's extra that its options leave unused: the demo's embedded
    broker (amqtt) where --mqtt names a broker (a user check: `edge demo --mqtt URL` was
    refused for want of amqtt)."""
    return frozenset({"amqtt"}) if command == "demo" and mqtt else frozenset()
