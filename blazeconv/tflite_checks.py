"""What TFLite's kernels require of the operators blazeconv meets, checked when a graph is read: each operator's
arity, operands and ranks (``check_operator``), and the dataflow (``check_dataflow``: every tensor written before it
is read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ModelFileError

# The reader's ``Operator`` and ``Tensor`` (``tflite_reader``, which imports this module), by their attributes.
Operator = Tensor = Any

# What TFLite's kernels require of the operators blazeconv meets (tensorflow/lite/kernels/*.cc ``Prepare``):
# (fewest inputs, most inputs or None, outputs, rank of each input or None, output rank). Output rank "same":
# the rank of input 0; "broadcast": the largest input rank; "inputs": every input has the output's rank.
# Inputs beyond the fewest are optional and may be -1. A graph breaking these is malformed, not just unsupported;
# checking them here lets later stages index shapes and operands without guarding every access.
_OPERATOR_SIGNATURES: dict[str, tuple[int, int | None, int, tuple[int | None, ...], int | str | None]] = {
    "CONV_2D": (2, 3, 1, (4, 4, 1), 4),
    "DEPTHWISE_CONV_2D": (2, 3, 1, (4, 4, 1), 4),
    "MAX_POOL_2D": (1, 1, 1, (4,), 4),
    "AVERAGE_POOL_2D": (1, 1, 1, (4,), 4),
    "ADD": (2, 2, 1, (), "broadcast"),
    "MUL": (2, 2, 1, (), "broadcast"),
    "RELU": (1, 1, 1, (), "same"),
    "RELU6": (1, 1, 1, (), "same"),
    "LOGISTIC": (1, 1, 1, (), "same"),
    "PAD": (2, 2, 1, (None, 2), "same"),
    "PADV2": (2, 3, 1, (None, 2), "same"),
    "RESHAPE": (1, 2, 1, (), None),
    "CONCATENATION": (1, None, 1, (), "inputs"),
    "DEQUANTIZE": (1, 1, 1, (), "same"),
    "DENSIFY": (1, 1, 1, (), "same"),
    "DEPTH_TO_SPACE": (1, 1, 1, (4,), 4),
    "RESIZE_BILINEAR": (2, 2, 1, (4, 1), 4),
    "RESIZE_NEAREST_NEIGHBOR": (2, 2, 1, (4, 1), 4),
}



def check_operator(path: Path, op: Operator, tensors: list[Tensor]) -> None:
    """Arity, required operands and ranks of an operator TFLite's kernels would otherwise refuse to prepare."""
    signature = _OPERATOR_SIGNATURES.get(op.kind)
    if signature is None:
        return
    fewest, most, num_outputs, input_ranks, output_rank = signature
    where = f"{path}: operator {op.index} ({op.kind})"
    if len(op.inputs) < fewest or (most is not None and len(op.inputs) > most):
        expected = f"{fewest}" if most == fewest else f"{fewest} to {most if most is not None else 'any number'}"
        raise ModelFileError(f"{where} has {len(op.inputs)} inputs, expected {expected}")
    if len(op.outputs) != num_outputs:
        raise ModelFileError(f"{where} has {len(op.outputs)} outputs, expected {num_outputs}")
    if any(t < 0 for t in op.inputs[:fewest] + op.outputs):
        raise ModelFileError(f"{where} leaves a required operand out (tensor -1)")
    present = [tensors[t] for t in op.inputs if t >= 0]
    for position, (t, rank) in enumerate(zip(op.inputs, input_ranks)):
        if t >= 0 and rank is not None and len(tensors[t].shape) != rank:
            raise ModelFileError(
                f"{where}: input {position} '{tensors[t].name}' has shape {list(tensors[t].shape)}, expected {rank} dimensions"
            )
    out = tensors[op.outputs[0]]
    if output_rank == "same":
        expected_rank = len(present[0].shape)
    elif output_rank == "broadcast":
        expected_rank = max(len(t.shape) for t in present)
    elif output_rank == "inputs":
        expected_rank = len(out.shape)
        for t in present:
            if len(t.shape) != expected_rank:
                raise ModelFileError(
                    f"{where}: input '{t.name}' has shape {list(t.shape)}, the output {list(out.shape)}"
                )
    else:
        expected_rank = output_rank
    if expected_rank is not None and len(out.shape) != expected_rank:
        raise ModelFileError(
            f"{where}: output '{out.name}' has shape {list(out.shape)}, expected {expected_rank} dimensions"
        )


def check_dataflow(path: Path, tensors: list[Tensor], operators: list[Operator], graph_inputs: tuple[int, ...]) -> None:
    """Each tensor has at most one writer, which runs before every reader; constants and inputs are never written.

    TFLite runs operators in file order, so this is what a well-formed graph is; it also means the graph has no
    cycle, so walking it from the input always ends.
    """
    writer: dict[int, int] = {}
    for op in operators:
        for t in op.outputs:
            name = tensors[t].name
            if t in writer:
                raise ModelFileError(
                    f"{path}: tensor '{name}' is written by operators {writer[t]} and {op.index} ({op.kind})"
                )
            if tensors[t].data is not None or t in graph_inputs:
                what = "a constant" if tensors[t].data is not None else "a graph input"
                raise ModelFileError(f"{path}: operator {op.index} ({op.kind}) writes '{name}', {what}")
            writer[t] = op.index
    for op in operators:
        for t in op.inputs:
            if t >= 0 and writer.get(t, -1) >= op.index:
                raise ModelFileError(
                    f"{path}: operator {op.index} ({op.kind}) reads '{tensors[t].name}' before operator {writer[t]} "
                    f"writes it (operators out of order, or a cycle)"
                )

