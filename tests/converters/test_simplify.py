"""onnxsim's native per-node warnings go to the debug log; anything else it prints stays."""

from __future__ import annotations

import logging
import os

from converters.simplify import _unfolded_nodes_to_debug_log


def test_unfolded_node_lines_go_to_the_debug_log_and_the_rest_to_stderr(capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="converters.simplify")
    with _unfolded_nodes_to_debug_log():
        # what onnxsim's C++ side writes, straight to file descriptor 2
        os.write(2, b'WARNING: failed to run "Concat" op (name is "/model.22/Concat_10"), '
                    b"skip... no initializer x\n")
        os.write(2, b"something else went wrong\n")
    err = capfd.readouterr().err
    assert "failed to run" not in err and "something else went wrong\n" in err
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug == ['onnxsim: WARNING: failed to run "Concat" op (name is '
                     '"/model.22/Concat_10"), skip... no initializer x']
