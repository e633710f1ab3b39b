"""What several attribution methods share around Captum: seeding, baselines, completeness scores.

Pure torch + Captum, no geometry and nothing method-specific.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["baseline_like", "completeness_delta", "endpoint_scores", "seeded"]


def baseline_like(x: torch.Tensor, value: float) -> torch.Tensor:
    """A constant baseline of the input's shape, dtype and device."""
    return torch.full_like(x, float(value))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch and numpy's global RNG (Captum draws from both), restoring both afterwards."""
    # Captum's GradientShap draws from numpy's *global* RNG, so that is the one to seed
    state = np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        try:
            yield
        finally:
            np.random.set_state(state)  # noqa: NPY002


def endpoint_scores(
    module: torch.nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: int
) -> tuple[float, float]:
    """``(F(x), F(baseline))``: the target score at the input and at the baseline.

    These are the two forward passes Captum makes for its convergence delta, made here (one
    sample each, input first, so the engine can take the prediction from the first) to keep
    the scores: the delta alone cannot say how large it is relative to the score change.
    """
    from captum._utils.common import _run_forward

    with torch.no_grad():
        fx = _run_forward(module, x, target=target)
        fb = _run_forward(module, baseline, target=target)
    return float(fx.reshape(-1)[0]), float(fb.reshape(-1)[0])


def completeness_delta(attributions: torch.Tensor, endpoints: tuple[float, float]) -> float:
    """Captum's convergence delta, ``|sum(map) - (F(x) - F(baseline))|``, for one sample."""
    total = float(attributions.detach().double().sum())
    return abs(total - (endpoints[0] - endpoints[1]))
