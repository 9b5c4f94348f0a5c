"""A torch.compile backend for tests: counts the graphs dynamo hands it and runs each as captured (no codegen).

Example::

    counting = CountingBackend()
    torch.compile(model, backend=counting)(x)
    assert counting.graphs == 1
"""

from __future__ import annotations

import torch


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given and runs them as captured."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs):
        self.graphs += 1
        return graph.forward
