"""Batch sizes under a memory budget, from a measured forward and backward pass.

The memory one sample needs is its real peak over one forward and one input-gradient
backward (on Linux the resident-set high-water mark, reset through ``/proc/self/clear_refs``
after the C heap's free pages are returned with ``malloc_trim``; on CUDA the allocator's
peak), measured on a *probe* and scaled by the voxel ratio. Saved tensors alone are not
enough: the backward also holds the output's dense gradient and, per layer, the incoming and
outgoing gradients and the convolution's buffers. On model18cls (a 21-channel MeshNet) the
saved tensors are 18.1 activations' worth and the peak 22.8. Without handing the heap back
first, a step reuses pages the process freed earlier and its peak reads low (mindgrab at 64^3:
246 MB read for 1,161 MB allocated).

The probes, so that nothing of full size is allocated to learn that it does not fit:

* :func:`rough_sample_bytes`: a strided copy with 1/8, 1/4 or 1/2 of the voxels an axis (the
  smallest with at least :data:`ROUGH_MIN_AXIS`), cheap and on the safe side (PyTorch's CPU
  convolutions need up to twice as much per voxel at such sizes). Above the limit: refused
  (:class:`MemoryBudgetError`, with the sizes) before the run starts.
* :func:`refined_rough_bytes`: over the limit, the rough figure refined by probes of 1/64 and
  1/8 of the voxels while their own predicted cost is affordable (the smallest probe of a
  dilated network is mostly padding and can err ten times high).
* :func:`per_sample_bytes`: the coarsest strided copy with at least :data:`PROBE_MIN_AXIS`
  voxels an axis, else the sample itself; a probe whose own predicted cost exceeds the limit
  is skipped. Measured (``benchmarks/memory.py``, docs/tfjs.md): within 10 % of the peak of one
  Integrated Gradients sample for the brainchop MeshNets and the demo zoo.

Methods of one sample (saliency, Grad-CAM, Input x Gradient, ...) have no batch for the
budget to size, but their one backward is judged before it runs (from
:data:`ONE_SAMPLE_CHECK_FROM` input values on) against the free memory, the same rule as a
batched method without an explicit budget and as the time estimates' "does a backward fit":
a sample that does not fit is refused with the sizes, not killed by the system half-way.

A segmentation target (a class's score in a full-size mask) does not take a smaller input;
its probe runs the model inside it (``inner``) and sums one output channel, whose backward
materialises the logits' gradient as the target's does. A batch of ``b`` samples needs about
``b`` times one; the batch size is the largest ``b`` within the budget.

On a CPU a batch also holds at most :data:`CPU_MAX_BATCH` samples whose activations
(:func:`activation_bytes`, the tensors autograd keeps, counted exactly on a half-size copy)
fit in :data:`CPU_MAX_BATCH_MB`, or two where two fit in :data:`CPU_PAIR_MB`
(:func:`cpu_batch_cap`): bigger batches do not run faster there, they run slower, since their
activations no longer stay in cache and fresh memory must be faulted in. Measured with
Integrated Gradients, 32 steps, 2 threads: demo classifier at 64³ (64 MB of activations a
sample), 2.3 s in batches of 4, 3.0 s of 8, 3.6 s of 16, 5.9 s of 32; DenseNet121 at 64³
(167 MB), 5.1 s in batches of 4, 5.3 s of 8, 6.4 s of 16, 10.4 s of 32; demo classifier at
128³ (514 MB), 27.4 s in batches of 1, 40.4 s of 4, 44.4 s of 8. Two samples still pay off
where a single one sends convolutions to PyTorch's reference kernel (:mod:`.onednn_conv`) and
two stay within 1.5 GB: the gradient methods' tuned copy, Integrated Gradients with 8 steps,
DenseNet121 at 96³ (560 MB) 3.90 s in batches of 1, 3.46 s of 2, 3.72 s of 3, 3.94 s of 4
(SmoothGrad, 4 samples: 1.83, 1.57, 1.73, 1.80 s); at 112³ (860 MB) 4.81 s in batches of 1,
5.26 s of 2; the demo classifier at 128³ 0.73 s a sample alone, 0.71 s in twos.

The speed rule reads the activations, not the peak: the peak is the process's resident
memory, which also holds what the process ran before. DenseNet121 at 96³ read 491 MB in a
fresh process and 741 MB after an Integrated Gradients batch of 8, enough to move it across
the 1.5 GB line between two runs of the same benchmark. The budget itself keeps the peak
(it errs high, the safe side for "does it fit").
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from ..errors import MlmiError
from .methods import METHODS, Method, get_method

__all__ = [
    "BATCH_PARAMS",
    "CPU_MAX_BATCH",
    "CPU_MAX_BATCH_MB",
    "CPU_PAIR_MB",
    "PROBE_MIN_AXIS",
    "ROUGH_MIN_AXIS",
    "MemoryBudgetError",
    "activation_bytes",
    "batch_size_for",
    "cpu_batch_cap",
    "default_budget_mb",
    "per_sample_bytes",
    "resolve_batch_params",
    "rough_sample_bytes",
]

#: Parameters that are internal batch sizes, per method (each method's ``batch_param``);
#: "auto" resolves them under the budget.
BATCH_PARAMS = {m.name: m.batch_param for m in METHODS.values() if m.batch_param}


#: Most samples per batch on a CPU; see the module notes.
CPU_MAX_BATCH = 4
#: Most megabytes of activations per batch on a CPU (at least one sample; two up to
#: :data:`CPU_PAIR_MB`).
CPU_MAX_BATCH_MB = 1024
#: Most megabytes of activations of a batch of two samples on a CPU; see the module notes.
CPU_PAIR_MB = 1536
#: Smallest probe, voxels an axis, for the rough figure.
ROUGH_MIN_AXIS = 16
#: Shortest last axis of the probe the batch size is chosen from (the other axes stay whole);
#: an input with a shorter one is measured whole. 48 covers a dilation-16 3x3x3 kernel (33).
PROBE_MIN_AXIS = 48
#: A probe that peaks below this (bytes) is run twice and the second step counts.
STEADY_BELOW = 512 * 1024**2
#: A method of one sample is judged from this many input values on (64³: even mindgrab,
#: 4.6 kB a voxel, needs 1.2 GB a sample below it).
ONE_SAMPLE_CHECK_FROM = 64**3
#: Peak over saved-tensor bytes, where the peak cannot be read (measured 1.25 on model18cls).
SAVED_TO_PEAK = 1.3


class MemoryBudgetError(MlmiError, ValueError):
    """Not even one sample of this method fits in the memory budget."""


def _available_bytes() -> int:
    """Memory available now (MemAvailable; free pages where /proc/meminfo is missing)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 1024**3


def default_budget_mb() -> float:
    """A quarter of the memory available now (at least 256 MB)."""
    return max(256.0, _available_bytes() / 4 / 1024**2)


_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ROUGH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ACTIVATIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remembered(memo: weakref.WeakKeyDictionary, module: Any, x: Any, compute: Any) -> Any:
    """``compute(module, x)``, once per module, input shape and dtype (while the module lives)."""
    key = (tuple(x.shape[1:]), str(x.dtype))
    try:
        known = memo.setdefault(module, {})
    except TypeError:  # pragma: no cover - a module that cannot be weakly referenced
        known = {}
    if key not in known:
        known[key] = compute(module, x)
    return known[key]


def per_sample_bytes(module: Any, x: Any, *, limit: float | None = None) -> int:
    """Bytes one sample needs for a forward and an input-gradient backward through ``module``.

    Measured on the largest probe the rules in the module notes allow (the whole sample for
    small inputs, else a strided copy ``x[..., ::f, ::f, ::f]`` of at least
    :data:`PROBE_MIN_AXIS` voxels an axis) and scaled by the voxel ratio. With ``limit``
    (bytes), a probe whose own cost, predicted from :func:`rough_sample_bytes`, exceeds it is
    not run: nothing over the limit is allocated to find out that a sample does not fit.
    Remembered per module, input shape and dtype while the module lives, once measured: the
    rough figure a ``limit`` fell back on is not remembered (a later call with more room
    measures).
    """
    key = (tuple(x.shape[1:]), str(x.dtype))
    try:
        known = _MEASURED.setdefault(module, {})
    except TypeError:  # pragma: no cover - a module that cannot be weakly referenced
        known = {}
    if key in known:
        return known[key]
    nbytes, measured = _measure(module, x, limit)
    if measured:
        known[key] = nbytes
    return nbytes


def rough_sample_bytes(module: Any, x: Any) -> int | None:
    """Bytes one sample needs, from the smallest probe (1/512, 1/64 or 1/8 of the voxels).

    Cheap enough to run before anything of full size is allocated, and at these small sizes
    PyTorch's CPU convolutions tend to need more per voxel, not less (up to 2x), so the figure
    errs on the safe side. None when the input is too small to shrink (fewer than
    2 x :data:`ROUGH_MIN_AXIS` voxels on an axis) or the model accepts no smaller input.
    """
    return _remembered(_ROUGH, module, x, _rough)


def activation_bytes(module: Any, x: Any) -> int | None:
    """Bytes of the tensors autograd keeps for one sample's backward (its activations).

    Counted on a copy strided by 2 on every axis (the sample itself below
    2 x :data:`ROUGH_MIN_AXIS` voxels an axis) and scaled by the voxel ratio. This is what a
    CPU batch's size is chosen from (:func:`cpu_batch_cap`): unlike the peak of
    :func:`per_sample_bytes`, which reads the process's resident memory and so what the
    process ran before (DenseNet121 at 96³ read 491 MB in a fresh process, 741 MB after an
    Integrated Gradients batch of 8), it is the same on every call. None when the model
    accepts no probe.
    """
    return _remembered(_ACTIVATIONS, module, x, _activations)


def _activations(module: Any, x: Any) -> int | None:
    import torch

    full = x[:1]
    factors = [2, 1] if min(int(a) for a in x.shape[2:]) >= 2 * ROUGH_MIN_AXIS else [1]
    for f in factors:
        probe = full[(slice(None), slice(None), *[slice(None, None, f)] * (full.ndim - 2))]
        probe = probe.detach().clone().requires_grad_(True)
        candidates = [module]
        if isinstance(getattr(module, "inner", None), torch.nn.Module):
            candidates.append(module.inner)
        for candidate in candidates:
            try:
                return int(_saved_bytes(candidate, probe, weights=False) * full.numel() / probe.numel())
            except Exception:  # the model wants another input size
                continue
    return None


def _factors(size: int, min_axis: int) -> list[int]:
    return [f for f in (8, 4, 2) if size // f >= min_axis]


def _rough(module: Any, x: Any) -> int | None:
    for f in _factors(min(x.shape[2:]), ROUGH_MIN_AXIS):
        peak = _probe(module, x, f, last_axis_only=False)
        if peak is not None:
            return peak
    return None


def refined_rough_bytes(module: Any, x: Any, limit: float) -> int | None:
    """:func:`rough_sample_bytes`, refined by larger probes while it is over ``limit``.

    The smallest probe can err far high on dilated networks: a 17-voxel axis padded by 16 on
    each side holds three times its voxels (``brainchop-aparc50`` on its 137 x 146 x 181 crop:
    89 GB from 1/512 of the voxels, about 9 GB measured). A probe of 1/64, then 1/8 of the
    voxels is run while its own cost, predicted from the figure so far (which errs high),
    stays under the limit; each brings the figure nearer the true one.
    """
    rough = rough_sample_bytes(module, x)
    if rough is None or rough <= limit:
        return rough
    n = min(int(a) for a in x.shape[2:])
    for f in (4, 2):
        if n // f < ROUGH_MIN_AXIS or rough / f**3 > limit:
            continue
        finer = _probe(module, x, f, last_axis_only=False)
        if finer is not None:
            rough = min(rough, finer)
        if rough <= limit:
            break
    return rough


def _measure(module: Any, x: Any, limit: float | None) -> tuple[int, bool]:
    """The cheapest accurate probe: the last axis shortened 8, 4 or 2 times, else the sample.

    Returns the bytes and whether they were measured (False: the rough figure, every accurate
    probe being over ``limit``).
    """
    rough = refined_rough_bytes(module, x, limit) if limit is not None else None
    for f in [*_factors(int(x.shape[-1]), PROBE_MIN_AXIS), 1]:
        if rough is not None and limit is not None and rough / f > limit:
            continue  # this probe alone would not fit: try a smaller one
        peak = _probe(module, x, f, last_axis_only=True)
        if peak is not None:
            return peak, True
    if rough is not None:
        return rough, False
    return _probe(module, x, 1, last_axis_only=True) or 0, True


def _probe(module: Any, x: Any, factor: int, *, last_axis_only: bool) -> int | None:
    """Peak bytes of one forward + backward on ``x[:1]`` strided by ``factor``, scaled to full size.

    ``last_axis_only`` keeps every other axis whole: PyTorch picks each CPU convolution's
    algorithm from the product of the input's leading sizes (batch x channels x first two
    spatial axes, ``> 20480`` for oneDNN), and the per-voxel memory differs between them
    (a 4-channel MeshNet: 34 activations' worth at 64^3, im2col; 15 at 96^3, oneDNN), so
    only a probe that keeps those sizes measures what the full input will use.

    The module is run as given; when it refuses the smaller input (a segmentation target holds a
    full-size mask), its ``inner`` module is run and one output channel summed, whose backward
    materialises the logits' gradient as the target's does. None when neither accepts the input.
    """
    import torch

    full = x[:1]
    if last_axis_only:
        index = (*[slice(None)] * (full.ndim - 1), slice(None, None, factor))
    else:
        index = (slice(None), slice(None), *[slice(None, None, factor)] * (full.ndim - 2))
    sample = full[index].detach().clone().requires_grad_(True)
    scale = full.numel() / sample.numel()
    candidates = [module]
    if factor > 1 and isinstance(getattr(module, "inner", None), torch.nn.Module):
        candidates.append(module.inner)
    for candidate in candidates:
        try:
            peak = _peak_of_one_step(candidate, sample)
            if peak is not None and peak < STEADY_BELOW:
                # a first step at a new shape also builds the convolution kernels for it, once
                # per process (about 20-50 MB): the second step is what each sample costs
                peak = min(peak, _peak_of_one_step(candidate, sample) or peak)
        except Exception:  # the model wants another input size
            continue
        if peak is None:  # the peak cannot be read here: count what autograd saves
            peak = int(_saved_bytes(candidate, sample) * SAVED_TO_PEAK)
        return int(peak * scale)
    return None


def _saved_bytes(module: Any, sample: Any, *, weights: bool = True) -> int:
    """Bytes of the tensors autograd saves for the backward pass during one forward
    (``weights=False``: not counting the module's parameters and buffers, which do not grow
    with the input)."""
    import torch

    saved = 0
    own = set() if weights else {t.data_ptr() for t in (*module.parameters(), *module.buffers())}

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        if t.data_ptr() not in own:
            saved += t.numel() * t.element_size()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(sample)
    del out
    return saved


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc), so that they are counted again."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _peak_of_one_step(module: Any, sample: Any) -> int | None:
    """Real peak bytes of one forward + input-gradient backward (None when it cannot be read).

    On CUDA the allocator's peak. On Linux the resident-set high-water mark above the resident
    set before the step, after the C heap's free pages are given back (``malloc_trim``): without
    that, the step reuses pages freed earlier in the process and its peak reads low (in a
    process that had run the model before, mindgrab at 64^3 read 246 MB for a 1,161 MB step).
    """
    import torch

    def step() -> None:
        with torch.enable_grad():
            out = module(sample)
            # a map (a segmenter's logits) is scored as a target scores it: one channel summed,
            # the logits freed, their gradient made dense by the backward (select's zeros)
            score = out[:, 0].sum() if out.ndim > 2 else out.sum()
            del out
            torch.autograd.grad(score, sample)

    if sample.is_cuda:
        torch.cuda.synchronize(sample.device)
        base = torch.cuda.memory_allocated(sample.device)
        torch.cuda.reset_peak_memory_stats(sample.device)
        step()
        return int(torch.cuda.max_memory_allocated(sample.device) - base)
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:  # VmHWM := VmRSS (Linux >= 4.0)
            f.write("5")
    except OSError:
        return None
    base = _status_bytes("VmRSS")
    step()
    peak = _status_bytes("VmHWM")
    if base is None or peak is None:
        return None
    return max(0, peak - base)


def batch_size_for(budget_bytes: float, sample_bytes: int, *, cap: int) -> int:
    """The largest batch within the budget, between 1 and ``cap``."""
    return int(max(1, min(cap, budget_bytes // max(1, sample_bytes))))


def cpu_batch_cap(sample_bytes: int) -> int:
    """Most samples a CPU batch holds, each with ``sample_bytes`` of activations
    (:func:`activation_bytes`): as many as fit in :data:`CPU_MAX_BATCH_MB`, two where two fit
    in :data:`CPU_PAIR_MB`, at least one, at most :data:`CPU_MAX_BATCH`."""
    sample = max(1, int(sample_bytes))
    many = int(CPU_MAX_BATCH_MB * 1024**2 // sample)
    pair = 2 if 2 * sample <= CPU_PAIR_MB * 1024**2 else 1
    return min(CPU_MAX_BATCH, max(1, many, pair))


def resolve_batch_params(
    method: str | Method, params: dict[str, Any], module: Any, x: Any, budget_mb: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replace an ``"auto"`` batch parameter (the method's ``batch_param``) by a size under the budget.

    Returns
    -------
    (params, info)
        The resolved parameters, and what was measured (for provenance).
    """
    method = get_method(method) if isinstance(method, str) else method
    key = method.batch_param
    auto = key is not None and params.get(key) == "auto"
    budget = (budget_mb if budget_mb is not None else default_budget_mb()) * 1024**2
    # an explicit budget is a promise; without one, refuse only what the machine cannot hold
    limit = budget if budget_mb is not None else _available_bytes()
    if not auto:
        # a method of one sample (saliency, Grad-CAM, ...) or a batch the caller fixed: no
        # batch for the budget to size, but its backward is still judged against the free
        # memory first, so a 256³ segmenter that cannot fit is refused with the sizes instead
        # of being killed by the system half-way through
        if x[0].numel() > ONE_SAMPLE_CHECK_FROM and method.cost(params, tuple(x.shape[2:]))[1] > 0:
            free = _available_bytes()
            rough = refined_rough_bytes(module, x, free)
            # the rough figure errs high: within the free memory it settles the question with
            # probes of 1/512 to 1/8 of the voxels; only above it is the accurate (costlier)
            # probe run before refusing
            if rough is None or rough > free:
                _refuse_unless_fits(method, module, x, free, free, None)
        return params, {}
    sample = _refuse_unless_fits(method, module, x, limit, budget, budget_mb)
    cap = int(method.batch_cap(params))
    info: dict[str, Any] = {
        "budget_mb": round(budget / 1024**2, 1),
        "per_sample_mb": round(sample / 1024**2, 3),
    }
    if not getattr(x, "is_cuda", False) and batch_size_for(budget, sample, cap=cap) > 1:
        # the speed rule reads the activations (the same on every call), the budget the peak
        active = activation_bytes(module, x)
        cap = min(cap, cpu_batch_cap(active if active is not None else sample))
        if active is not None:
            info["activations_mb"] = round(active / 1024**2, 3)
    size = batch_size_for(budget, sample, cap=cap)
    return {**params, key: size}, {**info, key: size}


def _refuse_unless_fits(
    method: Method, module: Any, x: Any, limit: float, budget: float, budget_mb: float | None
) -> int:
    """One sample's bytes; :class:`MemoryBudgetError` with the sizes when it exceeds ``limit``."""
    # small probes first: a sample that cannot fit is refused before it is ever allocated
    rough = refined_rough_bytes(module, x, limit)
    sample = rough if rough is not None and rough > limit else per_sample_bytes(module, x, limit=limit)
    if sample > limit:
        shape = "x".join(str(int(s)) for s in x.shape[2:])
        raise MemoryBudgetError(
            f"{method.name.replace('_', ' ')} on this {shape} input needs about {_mb(sample)} per sample "
            "(forward and backward), more than the "
            + (
                f"memory budget of {_mb(budget)}; raise the budget or use a model grid with fewer voxels"
                if budget_mb is not None
                else f"{_mb(limit)} of free memory; free memory, use a machine with more, "
                "or a model grid with fewer voxels"
            )
        )
    return sample


def _mb(nbytes: float) -> str:
    mb = nbytes / 1024**2
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.2g} MB"
