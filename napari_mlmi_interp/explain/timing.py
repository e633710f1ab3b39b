"""How long a method will take on this scan on this machine, estimated from one measured pass.

A method's cost is counted in samples (:meth:`~napari_mlmi_interp.explain.methods.Method.cost`:
forward samples and backward samples on the model grid). One measured pass of the model on
that grid gives the seconds of one forward (no gradients, as perturbation methods run it)
and of one backward (a forward with the graph plus its backward, less the forward), so

    estimate = forward samples x forward seconds + backward samples x backward seconds.

The pass is measured once per (model sha256, grid shape) and kept in memory for the process
(:func:`pass_timing`); a known timing can be given instead (tests, or a figure measured
elsewhere: :func:`remember_timing`). On a small grid the pass is also measured in a batch of
:data:`BATCH` (a small model runs several times faster per sample in a batch on a CPU), and
a method with more than one forward sample (Captum batches them) is estimated at that rate.
It is an estimate from one pass: preprocessing, mapping back and the layers are not counted.
``benchmarks/timing.py`` compares it with measured runs.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from ..io.volume import Geometry
    from .methods import Method

__all__ = [
    "Estimate",
    "PassTiming",
    "cost_label",
    "estimate",
    "forget_timings",
    "known_timing",
    "measure_pass",
    "minutes_text",
    "need_limit",
    "pass_timing",
    "region_box_on_grid",
    "remember_timing",
]

#: A measurement keeps the fastest of up to :data:`_MAX_REPEATS` passes: a pass is repeated
#: at least once unless it took :data:`_ONCE_OVER_S` seconds or more (a first pass includes
#: one-time set-up, most of a small model's time; a 256³ pass is measured once), and again
#: while all of them took less than :data:`_REPEAT_UNDER_S` (the fastest of several is the
#: least disturbed by other work on a shared machine).
_REPEAT_UNDER_S = 1.0
_ONCE_OVER_S = 5.0
_MAX_REPEATS = 5
#: Grids up to this many voxels are also timed in a batch of :data:`BATCH` samples: a small
#: model runs several times faster per sample in a batch on a CPU, and methods with many
#: samples run them in batches. A larger grid's batch would cost memory and gain little.
BATCH_UP_TO_VOXELS = 96**3
BATCH = 4


@dataclass(frozen=True)
class PassTiming:
    """Seconds of one forward and one backward of one sample on a model grid.

    Attributes
    ----------
    forward_s : float
        One forward pass of one sample without gradients, seconds.
    backward_s : float
        The backward pass of one sample (forward with the graph plus backward, less
        ``forward_s``; measured: at least half of ``forward_s``), seconds.
    shape : tuple of int
        The model grid it was measured on, voxels (z, y, x).
    measured : bool
        True when measured here; False when given (a known timing).
    batch : int
        The batch ``batch_forward_s`` and ``batch_backward_s`` were measured in (1: none).
    batch_forward_s, batch_backward_s : float or None
        Seconds per sample of a forward and a backward in that batch.
    sample_bytes : int or None
        Memory one sample's forward and backward needs (:mod:`.budget`'s estimate).
    backward_fits : bool
        False when one backward sample would exceed the memory budget: it was not run (a
        256³ segmenter's backward can need more than the machine has), ``backward_s`` is 0
        and methods with backward passes get no estimate.
    """

    forward_s: float
    backward_s: float
    shape: tuple[int, ...]
    measured: bool = True
    batch: int = 1
    batch_forward_s: float | None = None
    batch_backward_s: float | None = None
    sample_bytes: int | None = None
    backward_fits: bool = True

    def __post_init__(self) -> None:
        if not (self.forward_s >= 0 and self.backward_s >= 0):
            raise InputError(f"pass times must be >= 0 seconds, got {self.forward_s} and {self.backward_s}")

    def seconds(self, forwards: int, backwards: int, *, batched: bool = False) -> float:
        """Seconds of ``forwards`` forward samples and ``backwards`` backward samples.

        ``batched``: the samples run in batches (at the per-sample times in a batch, when
        those were measured).
        """
        if batched and self.batch > 1 and self.batch_forward_s is not None:
            return forwards * self.batch_forward_s + backwards * (self.batch_backward_s or 0.0)
        return forwards * self.forward_s + backwards * self.backward_s


_CACHE: dict[tuple[str, tuple[int, ...]], PassTiming] = {}
_LOCK = threading.Lock()


def _key(key: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    return str(key), tuple(int(n) for n in shape)


def remember_timing(key: str, shape: tuple[int, ...], timing: PassTiming) -> PassTiming:
    """Keep ``timing`` for the model ``key`` (its sha256) on a grid of ``shape`` voxels."""
    with _LOCK:
        _CACHE[_key(key, shape)] = timing
    return timing


def known_timing(key: str | None, shape: tuple[int, ...] | None) -> PassTiming | None:
    """The timing kept for (model ``key``, ``shape``), or None when not measured yet."""
    if key is None or shape is None:
        return None
    with _LOCK:
        return _CACHE.get(_key(key, shape))


def forget_timings() -> None:
    """Forget every kept timing (tests; a machine whose load changed)."""
    with _LOCK:
        _CACHE.clear()


def measure_pass(
    module: Any,
    shape: tuple[int, ...],
    *,
    channels: int = 1,
    batch: int | None = None,
    budget_mb: float | None = None,
) -> PassTiming:
    """Measure one forward and one forward+backward of ``module`` on a ``(1, channels, *shape)`` input.

    The input is reproducible noise on the module's device; the module is not changed
    (its parameters' gradients are left as they were). Each pass is timed two to five times
    (the fastest is kept: the first includes one-time set-up, and a busy machine slows some),
    once when it takes 5 s or more.
    The same is measured in a batch of ``batch`` samples (default :data:`BATCH` for grids up
    to :data:`BATCH_UP_TO_VOXELS` voxels, else none). The backward is run only when one
    sample fits in ``budget_mb`` (default: the free memory, as the methods themselves judge
    one sample), judged without allocating it (:func:`.budget.per_sample_bytes`).
    """
    import torch

    shape = tuple(int(n) for n in shape)
    if batch is None:
        batch = BATCH if math.prod(shape) <= BATCH_UP_TO_VOXELS else 1
    try:
        device = next(iter(module.parameters())).device
    except (StopIteration, AttributeError, TypeError):
        device = torch.device("cpu")
    x = torch.randn((batch, int(channels), *shape), generator=torch.Generator().manual_seed(0)).to(device)
    need = _sample_bytes(module, x[:1], budget_mb)
    if need is not None and need > need_limit(budget_mb):
        forward_s = _fastest(lambda: _forward(module, x[:1]), device)
        return PassTiming(forward_s, 0.0, shape, True, sample_bytes=need, backward_fits=False)
    forward_s, backward_s = _pass(module, x[:1], device)
    if batch <= 1:
        return PassTiming(forward_s, backward_s, shape)
    batch_f, batch_b = _pass(module, x, device)
    return PassTiming(forward_s, backward_s, shape, True, batch, batch_f / batch, batch_b / batch, need)


def need_limit(budget_mb: float | None) -> float:
    """Bytes one backward sample may need: ``budget_mb``, by default the free memory.

    The same rule as a run (:func:`.budget.resolve_batch_params`): a budget sizes batches,
    one sample only has to fit in the memory the machine has free.
    """
    from .budget import _available_bytes

    return float(budget_mb) * 1024**2 if budget_mb is not None else float(_available_bytes())


def _sample_bytes(module: Any, x: Any, budget_mb: float | None) -> int | None:
    """One sample's forward and backward memory, estimated without allocating over the budget."""
    from .budget import per_sample_bytes

    try:
        return int(per_sample_bytes(module, x, limit=need_limit(budget_mb)))
    except Exception:  # no estimate (an unusual model): measure as before
        return None


def _pass(module: Any, x: Any, device: Any) -> tuple[float, float]:
    """Seconds of a forward and of a backward (forward with the graph and backward, less the forward)."""
    forward_s = _fastest(lambda: _forward(module, x), device)
    both_s = _fastest(lambda: _forward_backward(module, x), device)
    # a backward to the input costs about a forward; on a busy machine the difference of two
    # timings can come out near zero, so it is kept at half a forward at least
    return forward_s, max(0.5 * forward_s, both_s - forward_s)


def _fastest(step: Any, device: Any) -> float:
    """The fastest of up to :data:`_MAX_REPEATS` timed runs of ``step`` (see :data:`_ONCE_OVER_S`)."""
    import torch

    best, spent = math.inf, 0.0
    for i in range(_MAX_REPEATS):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if spent >= _REPEAT_UNDER_S and (i >= 1 or took >= _ONCE_OVER_S):
            break
    return best


def _forward(module: Any, x: Any) -> None:
    import torch

    with torch.no_grad():
        module(x)


def _forward_backward(module: Any, x: Any) -> None:
    import torch

    inp = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = module(inp)
        out = out[0] if isinstance(out, (tuple, list)) else out
        # gradients with respect to the input only, as attribution methods take them
        torch.autograd.grad(out.float().sum(), inp)


def pass_timing(model: Any, shape: tuple[int, ...], *, timing: PassTiming | None = None) -> PassTiming:
    """The timing of ``model`` (a LoadedModel) on a grid of ``shape`` voxels: kept, given or measured.

    Measured at most once per (model sha256, shape) in this process; a given ``timing`` is
    kept instead of measuring.
    """
    if timing is not None:
        return remember_timing(model.sha256, shape, timing)
    kept = known_timing(model.sha256, shape)
    if kept is not None:
        return kept
    measured = measure_pass(model.module, shape, channels=int(model.spec.input.channels))
    return remember_timing(model.sha256, shape, measured)


@dataclass(frozen=True)
class Estimate:
    """A method's samples on a grid and, with a timing, its estimated seconds.

    Attributes
    ----------
    forwards, backwards : int
        Forward and backward samples (:meth:`Method.cost`; restricted to the region when
        the method accepts one and one was given).
    seconds : float or None
        Estimated seconds; None without a timing.
    in_region : bool
        Whether the count is for the region only.
    """

    forwards: int
    backwards: int
    seconds: float | None = None
    in_region: bool = False

    @property
    def minutes(self) -> float | None:
        return None if self.seconds is None else self.seconds / 60.0

    @property
    def text(self) -> str:
        """``"~3 min"`` (see :func:`minutes_text`); ``"time not measured"`` without a timing."""
        return "time not measured" if self.seconds is None else minutes_text(self.seconds)

    @property
    def passes_text(self) -> str:
        """``"52 forward + 50 backward passes"``."""
        return f"{self.forwards:,} forward + {self.backwards:,} backward passes"


def estimate(
    method: Method,
    shape: tuple[int, ...],
    timing: PassTiming | None = None,
    *,
    params: dict[str, Any] | None = None,
    region: np.ndarray | None = None,
) -> Estimate:
    """The samples and estimated seconds of ``method`` on a model grid of ``shape`` voxels.

    Parameters
    ----------
    method : Method
    shape : tuple of int
        The model grid, voxels (z, y, x).
    timing : PassTiming, optional
        One pass on that grid; without it the estimate has no seconds.
    params : dict, optional
        The method's parameters over its defaults.
    region : numpy.ndarray, optional
        A boolean mask on the model grid; counted only for methods that accept a region.
    """
    p = {**method.params, **(params or {})}
    shape = tuple(int(n) for n in shape)
    in_region = region is not None and method.accepts_region
    if in_region:
        forwards, backwards = method.cost(p, shape, region=region)  # type: ignore[call-arg]
    else:
        forwards, backwards = method.cost(p, shape)
    # Captum batches a run's samples (path steps, noise samples, windows, baselines)
    batched = forwards > 1
    seconds = timing.seconds(forwards, backwards, batched=batched) if timing is not None else None
    if timing is not None and backwards and not timing.backward_fits:
        seconds = None  # the backward was not run: it does not fit in memory here
    return Estimate(int(forwards), int(backwards), seconds, in_region)


def cost_label(
    method: Method,
    shape: tuple[int, ...],
    timing: PassTiming | None = None,
    *,
    params: dict[str, Any] | None = None,
) -> str:
    """``"Integrated Gradients — 34 forward + 32 backward passes, ~3 min"`` (minutes once timed)."""
    est = estimate(method, shape, timing, params=params)
    return f"{method.title} — {est.passes_text}" + (f", {est.text}" if est.seconds is not None else "")


def minutes_text(seconds: float) -> str:
    """An estimated duration in minutes: ``"<1 min"``, ``"~7 min"``; from two hours on ``"~58 h"``.

    Minutes and hours are rounded half up to whole numbers, thousands separated
    (``"~1,389 h"``).
    """
    if not seconds >= 0:
        raise InputError(f"seconds must be a number >= 0, got {seconds!r}")
    minutes = seconds / 60.0
    if minutes < 1:
        return "<1 min"
    if minutes < 119.5:
        return f"~{math.floor(minutes + 0.5):,} min"
    return f"~{math.floor(minutes / 60 + 0.5):,} h"


def region_box_on_grid(mask: np.ndarray, geometry: Geometry, grid: Geometry) -> np.ndarray | None:
    """The bounding box of ``mask`` (on ``geometry``'s grid) as a boolean mask on ``grid``.

    The box's eight corners go through patient space (LPS mm) onto ``grid``'s indices, so a
    region drawn on the scan counts on the model grid however the preprocessing resampled,
    cropped or reoriented it. None for an empty mask or a box outside ``grid``.
    """
    import itertools

    import numpy as np

    idx = np.argwhere(np.asarray(mask) > 0)
    if not len(idx):
        return None
    lo, hi = idx.min(0) - 0.5, idx.max(0) + 0.5
    corners = np.array(list(itertools.product(*zip(lo, hi, strict=True))), dtype=float)
    on_grid = np.asarray(grid.to_index(geometry.to_lps(corners)), dtype=float)
    shape = np.array(grid.shape)
    # voxel j spans [j - 0.5, j + 0.5): the first and one-past-the-last voxels the box touches
    a = np.clip(np.floor(on_grid.min(0) + 0.5 + 1e-6), 0, shape).astype(int)
    b = np.clip(np.ceil(on_grid.max(0) + 0.5 - 1e-6), 0, shape).astype(int)
    if np.any(b <= a):
        return None
    out = np.zeros(tuple(int(n) for n in shape), bool)
    out[tuple(slice(int(i), int(j)) for i, j in zip(a, b, strict=True))] = True
    return out
