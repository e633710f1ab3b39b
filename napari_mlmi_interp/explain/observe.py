"""Progress and cancel for any method, without touching Captum.

The model is wrapped in a module that counts the samples passing through ``forward``
(Captum batches them), reports ``progress(done, total)`` with the total from the method's
cost model, and raises :class:`Cancelled` at the next batch once the token is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..errors import Cancelled  # raised inside the model's forward when the run is cancelled

__all__ = ["CancelToken", "Cancelled", "ProgressCallback", "observed"]

ProgressCallback = Callable[[int, int], None]


class CancelToken:
    """Thread-safe cancel flag: ``token.cancel()`` from the GUI thread stops the run."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def observed(
    module: Any,
    total: int,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    reference: Any = None,
) -> Any:
    """``module`` counting the samples through it, reporting progress and honouring ``cancel``."""
    import torch

    class Observed(torch.nn.Module):
        """The model, counting samples; numerically identical to it.

        ``total`` may be raised by a method once it knows its plan (coarse-to-fine occlusion);
        progress never goes backwards. When ``reference`` is given, the output for the first
        one-sample batch equal to it is kept (``reference_output``): the prediction comes
        free with the attribution's own forward pass.
        """

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.done = 0
            self.total = total
            self.reported = 0
            self.reference_output = None

        #: whether the output on the unperturbed input is wanted (``reference_output``)
        wants_reference = reference is not None
        #: marks the engine's counter: a method running the model its own way takes ``inner``
        counts_samples = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.check()
            out = self.inner(x)
            if (
                reference is not None
                and self.reference_output is None
                and x.shape == reference.shape
                and torch.equal(x.detach(), reference)
            ):
                self.reference_output = out.detach().cpu().clone()
            self.count(int(x.shape[0]))
            return out

        def check(self) -> None:
            """Raise :class:`Cancelled` once the token is set."""
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled")

        def count(self, n: int) -> None:
            """``n`` samples went through (by ``forward``, or by a method running the model its own
            way, e.g. incremental occlusion): report the progress."""
            self.done += int(n)
            if progress is not None:
                self.total = max(self.total, self.done)
                self.reported = max(self.reported, min(self.done, self.total))
                progress(self.reported, self.total)

    return Observed(module)
