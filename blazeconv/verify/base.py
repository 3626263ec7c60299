"""What the Core ML evaluator's op families share: its error types and the registry of implementations.

``registry(kind)`` gives a ``name -> function`` table and a decorator that fills it; the decorator refuses a name
registered twice, so two implementations of one operation cannot silently replace each other. The ML program ops
(``mil``) and the neural network layers (``nn``) each keep one such table.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UnsupportedModelError


class UnsupportedOperationError(UnsupportedModelError):
    """The model holds an operation, layer, model type or parameter the evaluator does not interpret."""


class EvaluationError(UnsupportedModelError):
    """The model is malformed as evaluated: an operation's result contradicts the type the model declares."""


def registry(kind: str):
    """A name -> function registry whose decorator refuses a name registered twice."""
    table: dict[str, Callable] = {}

    def register(*names: str):
        def add(function):
            for name in names:
                if name in table:
                    raise RuntimeError(f"{kind} '{name}' registered twice")
                table[name] = function
            return function

        return add

    return table, register
