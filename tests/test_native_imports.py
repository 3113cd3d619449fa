"""Extension modules load with SIGINT and SIGTERM held (`edge.native_imports`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: Ctrl-C that arrives while `_csv` (an extension module of the standard library) initialises,
#: sent from inside the standard loader's `create_module`, where the module's C code runs.
CTRL_C_DURING_AN_EXTENSIONS_INIT = """
    import importlib.machinery as machinery, os, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job ignores it
    events = []
    original = machinery.ExtensionFileLoader.create_module
    def create_module(self, spec):
        if spec.name == "_csv":
            os.kill(os.getpid(), signal.SIGINT)
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
            events.append(f"held {signal.SIGINT in blocked and signal.SIGTERM in blocked}")
            module = original(self, spec)
            events.append("initialised")
            return module
        return original(self, spec)
    machinery.ExtensionFileLoader.create_module = create_module
    assert "_csv" not in sys.modules
    try:
        import _csv
    except KeyboardInterrupt:
        events.append("interrupted")
    events.append(f"mask after {signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])}")
"""

HOLDING = """
    from edge.native_imports import hold_signals_while_extensions_load
    hold_signals_while_extensions_load()
    hold_signals_while_extensions_load()  # once is enough
"""

KEPT = """
    from edge.native_imports import _INTERRUPTED
    events.append(f"kept {[m.__name__ for m in _INTERRUPTED]}")
"""


def _run(*parts: str) -> str:
    script = "".join(textwrap.dedent(part) for part in parts)
    script += "print(' / '.join(events))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_signal_during_an_extensions_initialisation_waits_until_it_has_loaded():
    # and the module the import machinery then drops is kept from being freed (freeing ONNX's
    # pybind11 module that way crashed the process)
    assert _run(HOLDING, CTRL_C_DURING_AN_EXTENSIONS_INIT, KEPT) == (
        "held True / initialised / interrupted / mask after False / kept ['_csv']")


def test_without_it_the_signal_lands_inside_the_initialisation():
    assert _run(CTRL_C_DURING_AN_EXTENSIONS_INIT) == "interrupted / mask after False"
