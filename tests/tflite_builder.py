"""Build small synthetic TFLite flatbuffers for tests: shapes and graphs real model files cannot show."""

from __future__ import annotations

import flatbuffers
import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.TensorType import TensorType


def build_tflite(tensors, operators, inputs, outputs, description="synthetic") -> bytes:
    """Serialise a one-subgraph model.

    ``tensors``: list of ``(name, shape, data)`` with ``data`` a float32/int32 numpy array or None;
    ``operators``: list of ``(BUILTIN_NAME, input indices, output indices)``.
    """
    b = flatbuffers.Builder(1024)
    # Buffer 0 is the empty sentinel, as converters write it.
    buffer_offsets = []
    for data in [None] + [t[2] for t in tensors]:
        if data is None:
            tflite.BufferStart(b)
        else:
            raw = np.ascontiguousarray(data).tobytes()
            vec = b.CreateByteVector(raw)
            tflite.BufferStart(b)
            tflite.BufferAddData(b, vec)
        buffer_offsets.append(tflite.BufferEnd(b))

    tensor_offsets = []
    for i, (name, shape, data) in enumerate(tensors):
        name_off = b.CreateString(name)
        shape_off = b.CreateNumpyVector(np.asarray(shape, dtype=np.int32))
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_off)
        dtype = TensorType.INT32 if data is not None and data.dtype == np.int32 else TensorType.FLOAT32
        tflite.TensorAddType(b, dtype)
        tflite.TensorAddBuffer(b, i + 1 if data is not None else 0)
        tflite.TensorAddName(b, name_off)
        tensor_offsets.append(tflite.TensorEnd(b))

    kinds = sorted({op[0] for op in operators})
    code_offsets = []
    for kind in kinds:
        code = getattr(BuiltinOperator, kind)
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, 1)
        code_offsets.append(tflite.OperatorCodeEnd(b))

    op_offsets = []
    for kind, op_inputs, op_outputs in operators:
        in_off = b.CreateNumpyVector(np.asarray(op_inputs, dtype=np.int32))
        out_off = b.CreateNumpyVector(np.asarray(op_outputs, dtype=np.int32))
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, kinds.index(kind))
        tflite.OperatorAddInputs(b, in_off)
        tflite.OperatorAddOutputs(b, out_off)
        op_offsets.append(tflite.OperatorEnd(b))

    def vector(start, offsets):
        start(b, len(offsets))
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    tensors_vec = vector(tflite.SubGraphStartTensorsVector, tensor_offsets)
    ops_vec = vector(tflite.SubGraphStartOperatorsVector, op_offsets)
    inputs_vec = b.CreateNumpyVector(np.asarray(inputs, dtype=np.int32))
    outputs_vec = b.CreateNumpyVector(np.asarray(outputs, dtype=np.int32))
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors_vec)
    tflite.SubGraphAddOperators(b, ops_vec)
    tflite.SubGraphAddInputs(b, inputs_vec)
    tflite.SubGraphAddOutputs(b, outputs_vec)
    subgraph = tflite.SubGraphEnd(b)

    subgraphs_vec = vector(tflite.ModelStartSubgraphsVector, [subgraph])
    codes_vec = vector(tflite.ModelStartOperatorCodesVector, code_offsets)
    buffers_vec = vector(tflite.ModelStartBuffersVector, buffer_offsets)
    desc = b.CreateString(description)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buffers_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def palm_like_model(size: int = 192, anchors: int = 2016) -> bytes:
    """A detector shaped like MediaPipe's palm detector: outputs [1, 2016, 18] and [1, 2016, 1]."""
    rng = np.random.default_rng(0)
    tensors = [
        ("input_1", (1, size, size, 3), None),
        ("conv/Kernel", (8, 3, 3, 3), rng.normal(size=(8, 3, 3, 3)).astype(np.float32)),
        ("conv/Bias", (8,), np.zeros(8, np.float32)),
        ("conv", (1, size // 2, size // 2, 8), None),
        ("regressors", (1, anchors, 18), None),
        ("classificators", (1, anchors, 1), None),
    ]
    operators = [
        ("CONV_2D", [0, 1, 2], [3]),
        ("RESHAPE", [3], [4]),
        ("RESHAPE", [3], [5]),
    ]
    return build_tflite(tensors, operators, inputs=[0], outputs=[4, 5], description="palm-like test model")
