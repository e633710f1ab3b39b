"""Where a method runs: the CPU, or a CUDA GPU when present (``device="auto"``).

The user's model is never moved: a run on a GPU gets a copy of the scored model on that
device (made per run: the scored model wraps the target, which changes between runs), and
the map comes back to the CPU. Inputs and outputs of the engine stay NumPy / CPU tensors.

On a GPU the method runs in true fp32 (:func:`full_precision`): PyTorch lets cuDNN use TF32
for convolutions by default, which moved the occlusion maps of ResNet18-3D and DenseNet121-3D
by 0.6 % of their range on an H200 (the incremental and the full run rounding differently);
in fp32 the maps agree with the CPU's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import InputError

__all__ = ["DEVICES_HELP", "full_precision", "on_device", "resolve_device"]

DEVICES_HELP = "auto (a CUDA GPU when present, else the CPU), cpu, cuda or cuda:N"


def resolve_device(device: str | None) -> Any:
    """The :class:`torch.device` for ``device``: ``"auto"`` (or None), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Raises
    ------
    InputError
        An unknown name, or a CUDA device this machine does not have.
    """
    import torch

    wanted = "auto" if device is None else str(device).strip().lower()
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(wanted)
    except RuntimeError:
        raise InputError(f"device must be one of {DEVICES_HELP}; got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device must be one of {DEVICES_HELP}; got {device!r}")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {device!r}: this machine has no CUDA GPU that PyTorch can use")
        if dev.index is not None and dev.index >= count:
            raise InputError(
                f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    return dev


def on_device(module: Any, dev: Any) -> Any:
    """``module`` itself on the CPU; elsewhere a copy of it on ``dev`` (the user's model stays put)."""
    if dev.type == "cpu":
        return module
    try:
        return copy.deepcopy(module).to(dev)
    except Exception as exc:  # TorchScript archives and exotic modules
        raise InputError(f"the model cannot be copied to {dev}: {type(exc).__name__}: {exc}") from None


@contextmanager
def full_precision(dev: Any) -> Iterator[None]:
    """On a CUDA device: convolutions and matrix products in fp32, not TF32 (restored afterwards)."""
    import torch

    if getattr(dev, "type", "cpu") != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:  # only the TF32 switches: the user's cuDNN settings (deterministic, benchmark) stay
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
