"""The model's view of the data, as numbers the page draws: a class grid under 2-D points, a 1-D curve, a confusion matrix.

:func:`describe` is sent once per build (the points, the network's shape); :func:`model_view` with
every frame (the predictions on fixed inputs, and for narrow nets on 2-D data each unit's output
over the input plane and the weights, as TensorFlow Playground draws them).
"""

from __future__ import annotations

import base64
from typing import Any

import torch

from deepwell.run import RunParts

__all__ = ["describe", "view_inputs", "model_view", "rounded", "packed", "GRID"]

GRID = 48                 # heat-map cells per side (48^2 = 2304 points: one forward pass of a small MLP)
UNIT_STRIDE = 4           # per-unit maps are the grid every 4th cell: 12 x 12
NARROW = 12               # layers up to this many units are drawn unit by unit (as in Playground)
MAX_POINTS = 600          # points drawn per split: enough to see the data, small to send
SIGNALS = 4               # example signals shown with their predicted and true labels (MNIST-1D)


def rounded(values: list[float], digits: int = 4) -> list[float | None]:
    """Numbers rounded for the page (short JSON); NaN becomes None."""
    return [None if v is None or v != v else round(v, digits) for v in values]


def packed(values: torch.Tensor) -> str:
    """A uint8 / int8 tensor as base64 text (the page reads it as a typed array).

    Why: a heat map is 2 x 2304 small numbers a frame; as a JSON list each costs a Python object and
    ~3 characters to encode (milliseconds, holding the GIL the training thread needs), as bytes nothing.

    Example: ``packed(torch.tensor([1, 2], dtype=torch.uint8)) == "AQI="``
    """
    return base64.b64encode(values.contiguous().cpu().numpy().tobytes()).decode("ascii")


def _points(x: torch.Tensor, y: torch.Tensor) -> list[list[float]]:
    """[x1, x2, label] of 2-D points, or [x, y, y] of a 1-D regression, at most MAX_POINTS."""
    flat, target = x[:MAX_POINTS].reshape(min(len(x), MAX_POINTS), -1), y[:MAX_POINTS].reshape(min(len(y), MAX_POINTS), -1)[:, 0]
    coordinates = flat[:, :2] if flat.shape[1] >= 2 else torch.stack([flat[:, 0], target.float()], 1)
    return [[round(a, 3), round(b, 3), label if isinstance(label, int) else round(label, 3)]
            for (a, b), label in zip(coordinates.tolist(), target.tolist())]


def describe(parts: RunParts, view: dict[str, Any]) -> dict[str, Any]:
    """What the page needs once per build: the view kind, the points, the classes and the network's layers."""
    splits, spec = parts.splits, parts.spec
    hidden = [block.transform.weight.shape[0] for name, block in parts.model.named_modules() if type(block).__name__ == "Block"]
    described: dict[str, Any] = {
        "kind": view["kind"], "task": splits.task, "classes": splits.num_classes, "class_names": splits.class_names,
        "dataset": splits.name, "input_shape": list(splits.input_shape), "n_train": len(splits.x_train),
        "network": {"inputs": int(torch.tensor(splits.input_shape).prod()), "hidden": hidden, "outputs": splits.output_size,
                    "activation": str(spec.model.activation), "arch": spec.model.arch},
        "spec": spec.to_dict(),
    }
    if view["kind"] == "boundary":
        described |= {"extent": [round(v, 4) for v in view["extent"]], "grid": GRID,
                      "train": _points(splits.x_train, splits.y_train), "test": _points(splits.x_test, splits.y_test)}
    elif view["kind"] == "confusion" and "signals" in view:
        described["signals"] = {"x": [rounded(row, 3) for row in view["signals"].reshape(len(view["signals"]), -1).tolist()],
                                "y": view["signal_labels"].tolist()}
    elif view["kind"] == "curve":
        described |= {"x": rounded(view["inputs"][:, 0].tolist()), "train": _points(splits.x_train, splits.y_train),
                      "test": _points(splits.x_test, splits.y_test)}
    return described


def view_inputs(parts: RunParts) -> dict[str, Any]:
    """Which view the data gets, and its fixed inputs (the 2-D grid, the 1-D axis, the evaluation split)."""
    splits = parts.splits
    x = splits.x_train
    device = parts.data.x_train.device
    if tuple(splits.input_shape) == (2,):
        both = torch.cat([x, splits.x_test])
        low, high = both.min(0).values, both.max(0).values
        margin = 0.1 * (high - low)
        low, high = (low - margin).tolist(), (high + margin).tolist()
        axes = [torch.linspace(low[i], high[i], GRID) for i in range(2)]
        # row-major, y from top (high) to bottom (low), as the canvas draws
        gy, gx = torch.meshgrid(axes[1].flip(0), axes[0], indexing="ij")
        return {"kind": "boundary", "extent": [low[0], high[0], low[1], high[1]],
                "inputs": torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).to(device)}
    if tuple(splits.input_shape) == (1,) and splits.task == "regression":
        both = torch.cat([x, splits.x_test])
        low, high = both.min().item(), both.max().item()
        return {"kind": "curve", "inputs": torch.linspace(low, high, 200).reshape(-1, 1).to(device)}
    if splits.task == "classification":
        x_eval, y_eval = (splits.x_val, splits.y_val) if splits.x_val is not None else (splits.x_test, splits.y_test)
        view = {"kind": "confusion", "inputs": x_eval[:2000].to(device), "labels": y_eval[:2000].to(device)}
        if len(splits.input_shape) == 2 and splits.input_shape[0] == 1:  # 1-D signals (MNIST-1D): show a few, predicted
            view |= {"signals": x_eval[:SIGNALS], "signal_labels": y_eval[:SIGNALS]}
        return view
    return {"kind": "none"}


@torch.inference_mode()
def model_view(parts: RunParts, view: dict[str, Any], blocks: list) -> dict[str, Any]:
    """The model's predictions on the view's fixed inputs (eval mode; the mode is restored).

    Boundary: ``cls`` and ``conf`` (confidence x 255) per grid cell, row-major from the top, as
    :func:`packed` uint8; narrow nets add ``units`` (per layer: ``scale`` and ``maps``, int8 of
    (units, 144) packed) and ``weights``. Curve: ``y``. Confusion: ``matrix`` (true x predicted).
    """
    if view["kind"] == "none":
        return {}
    model = parts.model
    narrow = view["kind"] == "boundary" and blocks and all(b.transform.weight.shape[0] <= NARROW for _, b in blocks)
    captured: dict[str, torch.Tensor] = {}
    handles = [block.activation.register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
               for name, block in blocks] if narrow else []
    was_training = model.training
    model.eval()  # the view of the model as it predicts (dropout off, BatchNorm running statistics)
    try:
        out = model(view["inputs"])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if view["kind"] == "curve":
        out = parts.target.inverse(out)  # the model fits standardised targets: back to the points' units
        return {"view": {"kind": "curve", "y": rounded(out[:, 0].tolist())}}
    probabilities = out.softmax(1)
    confidence, predicted = probabilities.max(1)
    if view["kind"] == "confusion":
        classes = probabilities.shape[1]
        matrix = torch.bincount(view["labels"] * classes + predicted, minlength=classes * classes).reshape(classes, classes)
        shown = {"predicted": predicted[:SIGNALS].tolist()} if "signals" in view else {}
        return {"view": {"kind": "confusion", "matrix": matrix.tolist(), **shown}}
    result: dict[str, Any] = {"view": {"kind": "boundary", "cls": packed(predicted.to(torch.uint8)),
                                       "conf": packed((confidence * 255).round().to(torch.uint8))}}
    if narrow:
        result["units"] = [_unit_maps(captured[name]) for name, _ in blocks]
        weights = [block.transform.weight for _, block in blocks] + [model.head.weight]  # (out, in) per layer
        result["weights"] = [[rounded(row, 3) for row in weight.tolist()] for weight in weights]
    return result


def _unit_maps(activations: torch.Tensor) -> dict[str, Any]:
    """Each unit's output over the input plane, every UNIT_STRIDE-th grid cell, scaled to [-100, 100] by its largest |value|.

    ``maps`` is the (units, 144) int8 matrix, :func:`packed` row by row.
    """
    maps = activations.reshape(GRID, GRID, -1)[::UNIT_STRIDE, ::UNIT_STRIDE]  # (12, 12, units)
    flat = maps.reshape(-1, maps.shape[-1]).T  # (units, 144)
    scale = flat.abs().amax(1).clamp_min(1e-12)
    return {"scale": rounded(scale.tolist()), "maps": packed((flat / scale[:, None] * 100).round().to(torch.int8))}
