"""Batch sizes under a memory budget, from a measured forward pass.

The memory one sample needs is measured, not guessed: during a one-sample forward with
gradients, every tensor autograd saves for the backward pass is counted
(``torch.autograd.graph.saved_tensors_hooks``), plus the input and its gradient. A batch
of ``b`` samples needs about ``b`` times that; the batch size is the largest ``b`` within
the budget (at least 1). Tensors that share storage are counted twice, so the estimate
errs on the safe side.

On a CPU a batch also holds at most :data:`CPU_MAX_BATCH` samples: bigger batches do not
run faster there, they run slower, since their activations no longer stay in cache and
fresh memory must be faulted in. Measured with Integrated Gradients, 32 steps, 2 threads:
demo classifier at 64³, 2.3 s in batches of 4, 3.0 s of 8, 3.6 s of 16, 5.9 s of 32;
DenseNet121 at 64³, 5.1 s in batches of 4, 5.3 s of 8, 6.4 s of 16, 10.4 s of 32.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

__all__ = [
    "BATCH_PARAMS",
    "CPU_MAX_BATCH",
    "batch_size_for",
    "default_budget_mb",
    "per_sample_bytes",
    "resolve_batch_params",
]

#: Parameters that are internal batch sizes, per method; "auto" resolves them under the budget.
BATCH_PARAMS = {
    "integrated_gradients": "internal_batch_size",
    "smoothgrad": "nt_samples_batch_size",
    "occlusion": "perturbations_per_eval",
    "feature_ablation": "perturbations_per_eval",
}


#: Most samples per batch on a CPU; see the module notes.
CPU_MAX_BATCH = 4


def default_budget_mb() -> float:
    """A quarter of the memory available now (at least 256 MB)."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        free = 8 * 1024**3
    return max(256.0, free / 4 / 1024**2)


_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def per_sample_bytes(module: Any, x: Any) -> int:
    """Bytes one sample needs for a forward and backward pass through ``module``.

    Measured once per module, input shape and dtype (remembered while the module lives).
    """

    key = (tuple(x.shape[1:]), str(x.dtype))
    try:
        known = _MEASURED.setdefault(module, {})
    except TypeError:  # pragma: no cover - a module that cannot be weakly referenced
        known = {}
    if key not in known:
        known[key] = _measure(module, x)
    return known[key]


def _measure(module: Any, x: Any) -> int:
    import torch

    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    sample = x[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(sample)
    del out
    return int(saved + 2 * sample.numel() * sample.element_size())


def batch_size_for(budget_bytes: float, sample_bytes: int, *, cap: int) -> int:
    """The largest batch within the budget, between 1 and ``cap``."""
    return int(max(1, min(cap, budget_bytes // max(1, sample_bytes))))


def resolve_batch_params(
    method: str, params: dict[str, Any], module: Any, x: Any, budget_mb: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replace an ``"auto"`` batch parameter by a size under the budget.

    Returns
    -------
    (params, info)
        The resolved parameters, and what was measured (for provenance).
    """
    key = BATCH_PARAMS.get(method)
    if key is None or params.get(key) != "auto":
        return params, {}
    budget = (budget_mb if budget_mb is not None else default_budget_mb()) * 1024**2
    sample = per_sample_bytes(module, x)
    cap = {
        "integrated_gradients": params.get("n_steps", 1),
        "smoothgrad": params.get("nt_samples", 1),
    }.get(method, 64)
    if not getattr(x, "is_cuda", False):
        cap = min(int(cap), CPU_MAX_BATCH)
    size = batch_size_for(budget, sample, cap=int(cap))
    return {**params, key: size}, {
        "budget_mb": round(budget / 1024**2, 1),
        "per_sample_mb": round(sample / 1024**2, 3),
        key: size,
    }
