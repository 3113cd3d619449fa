from __future__ import annotations

import pytest

from edge.errors import ModelError
from edge.tensorrt.buffers import IoTensor, plan_buffers

DETECTOR = [IoTensor("images", True, (-1, 320, 320, 3), "uint8"),
            IoTensor("output0", False, (-1, 8, 2100), "float32")]


@pytest.mark.parametrize(("integrated", "device_bytes"), [(True, 0),
                                                          (False, 2 * (307200 + 67200))])
def test_plan_for_jetson_and_discrete(integrated, device_bytes):
    plan = plan_buffers(DETECTOR, batch=1, integrated=integrated, slots=2)
    assert plan.input.shape == (1, 320, 320, 3) and plan.input.nbytes == 307200
    assert plan.outputs[0].shape == (1, 8, 2100) and plan.outputs[0].nbytes == 67200
    assert all(b.mapped is integrated for b in plan.buffers)
    assert plan.host_bytes == 2 * (307200 + 67200)
    assert plan.device_bytes == device_bytes


def test_dynamic_batch_and_half_precision_outputs():
    tensors = [DETECTOR[0], IoTensor("output0", False, (-1, 8, 2100), "float16")]
    plan = plan_buffers(tensors, batch=4, integrated=False, slots=1)
    assert plan.input.shape == (4, 320, 320, 3)
    assert plan.outputs[0].nbytes == 4 * 8 * 2100 * 2


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ([IoTensor("images", True, (1, 3, 320, 320), "float32"), DETECTOR[1]], "not uint8"),
        ([DETECTOR[0], IoTensor("mask", True, (1, 320, 320, 3), "uint8"), DETECTOR[1]],
         "2 inputs"),
        ([DETECTOR[0], IoTensor("output0", False, (1, -1, 8), "float32")], "dynamic dimensions"),
    ],
)
def test_unusable_engines(tensors, message):
    with pytest.raises(ModelError, match=message):
        plan_buffers(tensors, batch=1, integrated=True)
