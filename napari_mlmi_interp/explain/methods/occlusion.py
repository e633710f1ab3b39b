"""Occlusion: exact incremental (default), Captum's full :class:`~captum.attr.Occlusion`, coarse-to-fine.

- ``strategy="auto"`` (the default): ``incremental`` on a CPU; on a CUDA GPU, whichever of
  ``incremental`` and ``full`` scored one batch of windows faster (timed once, after a warm-up):
  there batched full forwards can beat the incremental pass's many small operations (H200,
  fp32: ResNet18-3D at 96³ incremental 4.5 s against 10.0 s full, DenseNet121-3D 9.4 s
  against 3.4 s). Both give the same map.
- ``strategy="incremental"``: the same windows and the same map as Captum's Occlusion, each
  window's score computed by recomputing only what it changes (:mod:`.incremental`); a model
  that cannot be traced runs the full occlusion instead, with a one-line note.
- ``strategy="full"``: Captum slides the windows.
- ``strategy="coarse_to_fine"``: an approximation (fewer windows), see :func:`occlusion`.

Over a region, only the windows over its bounding box grown by one window run. A module with
a ``total`` attribute (the engine's progress counter) is told the exact number of samples once
the plan is known; one with ``count`` (:func:`~napari_mlmi_interp.explain.observe.observed`)
hears of every window the incremental strategy scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...errors import InputError
from .incremental import IncrementalOcclusion, NotIncremental, window_starts

__all__ = [
    "STRATEGIES",
    "check_occlusion_params",
    "coarse_to_fine_note",
    "occlusion",
    "occlusion_windows",
    "strategy_note",
]

#: ``incremental`` and ``full`` give the same map; ``coarse_to_fine`` approximates it.
STRATEGIES = ("auto", "incremental", "full", "coarse_to_fine")

Box = tuple[slice, ...]

#: Coarse-to-fine against the exact map, as ``benchmarks/run.py`` measured it (docs/benchmarks.md;
#: coarse_factor 2, refine_fraction 0.05): the demo network at 64³ (window 8, stride 4) and a
#: seeded DenseNet121-3D at 64³ (window 16, stride 8). A test keeps these equal to the
#: benchmark's JSON, so the line a reader sees is the measured one.
COARSE_TO_FINE_FIDELITY = (
    {"model": "demo", "size": 64, "spearman": 0.797, "dice_top": 1.0, "percent": 1.0},
    {"model": "densenet121", "size": 64, "spearman": 0.710, "dice_top": 0.0, "percent": 1.0},
)


def strategy_note(strategy: str) -> str:
    """What a strategy computes, in one line (the Explain panel shows it when one is chosen)."""
    if strategy == "coarse_to_fine":
        return coarse_to_fine_note()
    return {
        "auto": "exact: incremental on a CPU, on a GPU the faster of incremental and full",
        "incremental": "exact: Captum's map, each window recomputing only what it changes",
        "full": "exact: Captum's map, every window a full forward pass",
    }.get(strategy, "")


def coarse_to_fine_note() -> str:
    """The line shown with every coarse-to-fine map: what it approximates, and how well."""
    measured = "; ".join(
        f"{f['model']} {f['size']}³: Spearman ρ {f['spearman']:.2f} over voxels, Dice {f['dice_top']:.2f} "
        f"of the top {f['percent']:g} %"
        for f in COARSE_TO_FINE_FIDELITY
    )
    return (
        f"coarse-to-fine approximates the exact occlusion map; against it on the benchmark: {measured}. "
        "Strategy 'incremental' gives the exact map"
    )


class _Pasted(torch.nn.Module):
    """``module`` seen through a crop: the crop is pasted back into the full input first.

    Captum's Occlusion then slides its windows over the crop only, while the model still
    sees the whole volume, so a window's score drop is exactly the one it has in the full run.
    """

    def __init__(self, inner: torch.nn.Module, x: torch.Tensor, box: Box) -> None:
        super().__init__()
        self.inner, self.x, self.box = inner, x, box

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        full = self.x.expand(crop.shape[0], *self.x.shape[1:]).clone()
        full[(slice(None), slice(None), *self.box)] = crop
        return self.inner(full)


def _aligned_box(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...], w: int, s: int) -> Box:
    """``[lo, hi)`` grown to the stride lattice (so windows coincide with a full run's) and >= w."""
    out = []
    for a, b, n in zip(lo, hi, shape, strict=True):
        a = max(0, (int(a) // s) * s)
        b = min(n, max(int(b), a + w))
        a = max(0, min(a, b - w))
        out.append(slice(a, b))
    return tuple(out)


def _occlude(
    module: torch.nn.Module, x: torch.Tensor, target: int, box: Box | None, w: int, s: int, p: dict
) -> torch.Tensor:
    """Captum Occlusion with cubic windows ``w`` and strides ``s``, over ``box`` (all when None)."""
    import captum.attr as ca

    if p.get("strategy") == "incremental" and "_incremental" in p:
        return _occlude_incremental(p["_incremental"], module, x, target, box, w, s, p)

    c = x.shape[1]
    kwargs = {
        "sliding_window_shapes": (c, *[min(w, n) for n in x.shape[2:]]),
        "strides": (c, s, s, s),
        "baselines": float(p["baseline"]),
        "target": target,
        "perturbations_per_eval": p["perturbations_per_eval"],
    }
    if box is None:
        return ca.Occlusion(module).attribute(x, **kwargs)
    crop = x[(slice(None), slice(None), *box)].contiguous()
    kwargs["sliding_window_shapes"] = (c, *[min(w, b.stop - b.start) for b in box])
    return ca.Occlusion(_Pasted(module, x, box)).attribute(crop, **kwargs)


def occlusion_windows(shape: tuple[int, ...], w: int, s: int) -> int:
    """How many windows Captum's Occlusion evaluates over ``shape`` (the last ones cut at the border)."""
    return int(np.prod([len(window_starts(n, min(w, n), s)) for n in shape]))


def _occlude_incremental(
    inc: Any, module: torch.nn.Module, x: torch.Tensor, target: int, box: Box | None, w: int, s: int, p: dict
) -> torch.Tensor:
    """Captum's Occlusion map over ``box``, each window scored by :class:`.incremental.IncrementalOcclusion`.

    The same windows as Captum's (``window_starts`` on the box), the same score drop
    ``F(x) - F(x with the window at the baseline)`` for the target, and the same average over
    the windows covering a voxel.
    """
    import itertools

    shape = tuple(int(n) for n in x.shape[2:])
    box = box or tuple(slice(0, n) for n in shape)
    lo = np.array([b.start for b in box])
    span = tuple(b.stop - b.start for b in box)
    window = tuple(min(w, n) for n in span)
    axes = [[a + k for k in window_starts(n, wa, s)] for a, n, wa in zip(lo, span, window, strict=True)]
    starts = np.array(list(itertools.product(*axes)), dtype=int)
    base = _target_scores(inc.output, target)[0]
    total = torch.zeros(span, dtype=torch.float32)
    weight = torch.zeros(span, dtype=torch.float32)
    batch = max(1, int(p["perturbations_per_eval"]))
    stop = tuple(b.stop for b in box)  # windows cut at the box's end, as Captum cuts them at the crop's
    # a window whose voxels all equal the baseline already (air in a windowed CT, the zero
    # background of a min-max MR) leaves the input as it is: its score drop is exactly 0
    changes = _changes_input(x, starts, window, stop, float(p["baseline"]))
    inc.unchanged_windows = getattr(inc, "unchanged_windows", 0) + int((~changes).sum())
    for st in starts[~changes] - lo:
        weight[tuple(slice(a, min(a + wa, n)) for a, wa, n in zip(st, window, span, strict=True))] += 1.0
    if hasattr(module, "count") and (~changes).any():
        module.count(int((~changes).sum()))
    starts = starts[changes]
    for i in range(0, len(starts), batch):
        if hasattr(module, "check"):
            module.check()  # Cancel
        chunk = starts[i : i + batch]
        drops = base - _target_scores(inc.outputs(chunk, window, float(p["baseline"]), stop), target)
        for st, drop in zip(chunk - lo, drops.tolist(), strict=True):
            sl = tuple(slice(a, min(a + wa, n)) for a, wa, n in zip(st, window, span, strict=True))
            total[sl] += drop
            weight[sl] += 1.0
        if hasattr(module, "count"):
            module.count(len(chunk))
    out = (total / weight).to(x.dtype)
    return out.expand(1, x.shape[1], *span).clone()


def _changes_input(
    x: torch.Tensor, starts: np.ndarray, window: tuple[int, ...], stop: tuple[int, ...], baseline: float
) -> np.ndarray:
    """Per window: whether setting it to ``baseline`` changes any value of ``x`` (any channel)."""
    differs = (x[0] != baseline).any(dim=0).cpu()
    end = [min(a, n) for a, n in zip(stop, differs.shape, strict=True)]
    return np.array(
        [
            bool(
                differs[
                    tuple(slice(a, min(a + wa, e)) for a, wa, e in zip(st, window, end, strict=True))
                ].any()
            )
            for st in starts
        ],
        dtype=bool,
    ).reshape(len(starts))


def _target_scores(output: Any, target: int | None) -> torch.Tensor:
    """The target's score per sample, as Captum selects it from the model's output."""
    out = output[0] if isinstance(output, tuple) else output
    out = out.reshape(out.shape[0], -1)
    return out[:, 0 if target is None else int(target)].float()


def check_occlusion_params(p: dict[str, Any]) -> None:
    """Raise :class:`InputError` for a strategy, window, stride or refinement that cannot run."""
    w, s = int(p["window"]), int(p["stride"])
    strategy = p.get("strategy", "full")
    if strategy not in STRATEGIES:
        raise InputError(f"occlusion strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if w < 1 or s < 1:
        raise InputError(f"occlusion window and stride must be at least 1 voxel, got {w} and {s}")
    if strategy == "coarse_to_fine" and (
        int(p["coarse_factor"]) < 2 or not 0 < float(p["refine_fraction"]) <= 1
    ):
        raise InputError(
            "coarse_to_fine needs coarse_factor >= 2 and 0 < refine_fraction <= 1, got "
            f"{p['coarse_factor']} and {p['refine_fraction']}"
        )


def _outer_box(region: np.ndarray | None, shape: tuple[int, ...], w: int, s: int) -> Box | None:
    """The region's bounding box grown by one window, on the stride lattice (None: everywhere)."""
    if region is None:
        return None
    if not np.any(region):
        raise InputError("the occlusion region is empty on the model grid")
    idx = np.argwhere(region)
    return _aligned_box(idx.min(0) - w, idx.max(0) + 1 + w, shape, w, s)


def occlusion(
    module: torch.nn.Module,
    x: torch.Tensor,
    target: int,
    p: dict[str, Any],
    region: np.ndarray | None = None,
    info: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Occlusion maps: Captum's :class:`~captum.attr.Occlusion`, computed three ways.

    - ``strategy="auto"`` (the default): ``incremental`` on a CPU, the faster of the two
      exact strategies on a GPU (one batch timed each way, in ``info["auto"]``);
    - ``strategy="incremental"``: Captum's windows and map, each window's
      score recomputing only what the window changes (:mod:`.incremental`); falls back to
      ``full`` for a model ``torch.fx`` cannot trace, saying so in ``info["note"]``;
    - ``strategy="full"``: every window over the volume (exactly Captum's call);
    - with ``region``: only the windows over the region's bounding box grown by one window
      (aligned to the stride lattice, so each window and its score drop are those of the
      full run); the map is 0 elsewhere;
    - ``strategy="coarse_to_fine"``: a first pass with windows and strides ``coarse_factor``
      times larger, then full-resolution windows only around the ``refine_fraction`` of
      voxels with the largest coarse ``|attribution|`` (grown by one window, one box per
      connected component). Outside the refined boxes the coarse map is kept, scaled by the
      least-squares factor that matches it to the fine map where both exist. When refining
      would cost more windows than a full run, the full run is done instead.

    If ``module`` has a ``total`` attribute (the engine's progress counter), it is set to
    the exact number of samples once the plan is known. ``info`` (a dict) receives the
    strategy actually run, a fallback's ``note`` and, for the incremental strategy, the
    layers where the windows' changes stopped being local (``full_from``) and the windows
    already at the baseline, scored 0 without a pass (``unchanged_windows``).
    """
    check_occlusion_params(p)
    w, s = int(p["window"]), int(p["stride"])
    shape = tuple(int(n) for n in x.shape[2:])
    outer = _outer_box(region, shape, w, s)
    p = dict(p)
    inner = module.inner if getattr(module, "counts_samples", False) else module  # behind the counter
    if p.get("strategy") == "auto":
        p["strategy"] = _timed_choice(inner, x, w, p, info) if x.is_cuda else "incremental"
    if p.get("strategy") == "incremental":
        try:
            p.setdefault("_incremental", IncrementalOcclusion(inner, x.detach()))
        except NotIncremental as exc:
            p["strategy"] = "full"
            if info is not None:
                info["note"] = f"{exc}: ran Captum's full occlusion instead (the same map, slower)"
        else:
            if getattr(module, "wants_reference", False) and module.reference_output is None:
                module.reference_output = p["_incremental"].output.detach().cpu().clone()
            if hasattr(module, "count"):
                module.count(1)  # the unoccluded pass
    if info is not None:
        info["strategy"] = p.get("strategy", "full")
    if p.get("strategy", "full") in ("full", "incremental"):
        span = shape if outer is None else tuple(b.stop - b.start for b in outer)
        if hasattr(module, "total"):
            module.total = 1 + occlusion_windows(span, w, s)
        out = torch.zeros_like(x)
        out[(slice(None), slice(None), *(outer or ()))] = _occlude(module, x, target, outer, w, s, p)
        if info is not None and "_incremental" in p:
            info["full_from"] = dict(p["_incremental"].full_from)
            # windows already at the baseline: scored 0 without a pass (exact)
            info["unchanged_windows"] = int(getattr(p["_incremental"], "unchanged_windows", 0))
        return out
    if info is not None:
        info["note"] = coarse_to_fine_note()
    return _coarse_to_fine(module, x, target, p, region, outer)


def _timed_choice(inner: torch.nn.Module, x: torch.Tensor, w: int, p: dict, info: dict | None) -> str:
    """On a GPU: ``incremental`` or ``full``, whichever scores one batch of central windows faster.

    Each is run once to warm up (cuDNN's plans, the allocator), then timed once; the
    incremental state built here is kept in ``p`` for the run.
    """
    import time

    try:
        inc = IncrementalOcclusion(inner, x.detach())
    except NotIncremental as exc:
        if info is not None:
            info["note"] = f"{exc}: ran Captum's full occlusion (the same map)"
        return "full"
    batch = max(1, int(p["perturbations_per_eval"]))
    shape = tuple(int(n) for n in x.shape[2:])
    window = tuple(min(w, n) for n in shape)
    starts = np.array([[(n - a) // 2 for n, a in zip(shape, window, strict=True)]] * batch)
    xb = x.detach().expand(batch, *x.shape[1:]).clone()

    def timed(fn: Any) -> float:
        with torch.no_grad():
            fn()
            torch.cuda.synchronize(x.device)
            t = time.perf_counter()
            fn()
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - t

    t_inc = timed(lambda: inc.outputs(starts, window, float(p["baseline"])))
    t_full = timed(lambda: inner(xb))
    if info is not None:
        info["auto"] = {"incremental_s_per_batch": t_inc, "full_s_per_batch": t_full, "batch": batch}
    if t_inc < t_full:
        p["_incremental"] = inc
        return "incremental"
    return "full"


def _coarse_to_fine(
    module: torch.nn.Module,
    x: torch.Tensor,
    target: int,
    p: dict[str, Any],
    region: np.ndarray | None,
    outer: Box | None,
) -> torch.Tensor:
    """A coarse pass, fine windows where it found signal, and the two blended (see :func:`occlusion`)."""
    w, s, f = int(p["window"]), int(p["stride"]), int(p["coarse_factor"])
    shape = tuple(int(n) for n in x.shape[2:])
    span = shape if outer is None else tuple(b.stop - b.start for b in outer)
    if hasattr(module, "total"):  # coarse pass, and a guess for the fine one until it is planned
        module.total = 1 + occlusion_windows(span, w * f, s * f) + 1
    coarse = torch.zeros_like(x)
    coarse[(slice(None), slice(None), *(outer or ()))] = _occlude(module, x, target, outer, w * f, s * f, p)
    boxes = _refine_boxes(coarse, region, outer, shape, w, s, float(p["refine_fraction"]))
    planned = sum(1 + occlusion_windows(tuple(b.stop - b.start for b in box), w, s) for box in boxes)
    if planned >= 1 + occlusion_windows(span, w, s):  # refining would cost more than one full run
        boxes = [outer or tuple(slice(0, n) for n in shape)]
        planned = 1 + occlusion_windows(span, w, s)
    if hasattr(module, "total"):
        module.total = getattr(module, "done", 0) + planned
    fine = torch.zeros_like(x)
    refined = torch.zeros(shape, dtype=torch.bool, device=x.device)
    for box in boxes:
        fine[(slice(None), slice(None), *box)] = _occlude(module, x, target, box, w, s, p)
        refined[box] = True
    return _blend(coarse, fine, refined)


def _refine_boxes(
    coarse: torch.Tensor,
    region: np.ndarray | None,
    outer: Box | None,
    shape: tuple[int, ...],
    w: int,
    s: int,
    fraction: float,
) -> list[Box]:
    """Boxes around the ``fraction`` of voxels with the largest coarse ``|attribution|``.

    Grown by half a window, one box per connected component, aligned to the stride lattice.
    """
    from scipy import ndimage

    score = coarse[0].abs().sum(0).cpu().numpy()
    if region is not None:
        inside = np.zeros(shape, bool)
        inside[outer] = True
        score = np.where(inside, score, 0.0)
    level = np.quantile(score[score > 0], 1 - fraction) if np.any(score > 0) else np.inf
    selected = ndimage.binary_dilation(score >= level, np.ones((3, 3, 3), bool), iterations=max(1, w // 2))
    labels, _ = ndimage.label(selected)
    return [
        _aligned_box(np.array([b.start for b in sl]), np.array([b.stop for b in sl]), shape, w, s)
        for sl in ndimage.find_objects(labels)
        if sl is not None
    ]


def _blend(coarse: torch.Tensor, fine: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
    """The fine map where refined; elsewhere the coarse map, least-squares scaled to the fine one."""
    c, fm = coarse[..., refined], fine[..., refined]
    denom = float((c * c).sum())
    scale = float((c * fm).sum()) / denom if denom > 0 else 1.0
    return torch.where(refined, fine, coarse * scale)
