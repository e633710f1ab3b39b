"""The shape every attribution method has: its metadata, its cost, and how Captum runs it.

One algorithm, one class (Captum's shape). A method class declares what it is (family,
the framework elements it serves, whether its map is signed, its parameters with their
defaults) and implements :meth:`Method.attribute` (the Captum call) and :meth:`Method.cost`
(forward and backward samples, for progress and for the Methods step). The registry in
:mod:`napari_mlmi_interp.explain.methods` holds one instance of each class.

Progress and cancel reach a method through ``module``: the engine hands it the model
wrapped in a counter that reports every batch and raises at the next one once cancelled
(:mod:`napari_mlmi_interp.explain.observe`), so no method needs to know about either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["Attribution", "Method"]


@dataclass(frozen=True)
class Attribution:
    """What one method's run gives back.

    Attributes
    ----------
    map : torch.Tensor
        ``(1, C, *spatial)`` on the input grid (class-activation maps have ``C = 1``,
        upsampled trilinearly to the input grid); detached.
    delta : float, optional
        The convergence delta where Captum defines one.
    endpoints : (float, float), optional
        For methods promising completeness (Integrated Gradients, DeepLIFT), the target
        score ``(F(x), F(baseline))`` at the input and at the baseline.
    notes : list of str
        What the user should know about how the map was computed (one line each), e.g. that
        incremental occlusion fell back to the full one.
    details : dict
        How it was computed, for the provenance (e.g. the occlusion strategy actually run).
    """

    map: Any
    delta: float | None = None
    endpoints: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """One attribution method (subclass it; the registry holds one instance per class).

    Attributes
    ----------
    name : str
        Registry key (``"integrated_gradients"``).
    title : str
        What a reader sees (``"Integrated Gradients"``).
    family : str
        ``gradient``, ``path`` (integrated along a path), ``class_activation`` or ``perturbation``.
    elements : tuple of str
        The framework elements it provides evidence for.
    signed : bool
        Whether the map has meaningful signs (diverging colormap) or is non-negative.
    params : dict
        Parameters and their defaults (voxel units on the model grid). Internal batch
        sizes default to ``"auto"``: the largest batch within the memory budget, from a
        measured forward pass (see :mod:`napari_mlmi_interp.explain.budget`).
    needs_layer : bool
        Uses the model's ``cam_layers[0]``.
    description : str
        One line: what the map is, and the reference.
    batch_param : str or None
        The parameter that is an internal batch size (``"auto"`` resolves under the budget).
    accepts_region : bool
        Whether a region (a mask on the model grid) can restrict the run.
    completeness : bool
        Whether the map promises to sum to ``F(x) - F(baseline)`` (checked after the run,
        :mod:`napari_mlmi_interp.explain.convergence`).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[str]
    elements: ClassVar[tuple[str, ...]]
    signed: ClassVar[bool]
    params: ClassVar[dict[str, Any]] = {}
    needs_layer: ClassVar[bool] = False
    description: ClassVar[str] = ""
    batch_param: ClassVar[str | None] = None
    #: Only autograd, no module hooks: the run may use :func:`..tuning.gradient_copy` of the model
    plain_gradients: ClassVar[bool] = False
    accepts_region: ClassVar[bool] = False
    completeness: ClassVar[bool] = False
    #: Replaces the backward pass of the model's nonlinear *modules* (``nn.ReLU``, ...): on a
    #: graph whose nonlinearities are plain functions (a ``torch.export`` program) the override
    #: would not apply and the map would be another method's
    overrides_nonlinearities: ClassVar[bool] = False
    #: Parameters that count something (steps, samples, segments): whole numbers >= 1.
    counts: ClassVar[tuple[str, ...]] = ()
    #: Parameters that are spreads (noise standard deviations): numbers >= 0.
    spreads: ClassVar[tuple[str, ...]] = ()

    def cost(self, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int]:
        """``(forward samples, backward samples)`` of one run on a model grid of ``shape`` voxels."""
        return 1, 1

    def check(self, params: dict[str, Any]) -> None:
        """Raise :class:`~napari_mlmi_interp.errors.InputError` for parameter values that cannot run.

        The base checks :attr:`counts` (and the batch parameter unless ``"auto"``) are whole
        numbers >= 1 and :attr:`spreads` are numbers >= 0; a subclass adds its own rules and
        calls ``super().check(params)``.
        """
        batch = (self.batch_param,) if self.batch_param and params.get(self.batch_param) != "auto" else ()
        for key in (*self.counts, *batch):
            value = params.get(key)
            if value is not None and not _is_count(value):
                raise InputError(f"{self.name} {key} must be a whole number >= 1, got {value!r}")
        for key in self.spreads:
            value = params.get(key)
            if value is not None and not (_is_number(value) and float(value) >= 0):
                raise InputError(f"{self.name} {key} must be a number >= 0, got {value!r}")

    def batch_cap(self, params: dict[str, Any]) -> int:
        """The most samples one internal batch can usefully hold."""
        return 64

    @abstractmethod
    def attribute(
        self,
        module: torch.nn.Module,
        x: torch.Tensor,
        target: int,
        params: dict[str, Any],
        *,
        layer: torch.nn.Module | None = None,
        region: np.ndarray | None = None,
    ) -> Attribution:
        """Attribution of ``module``'s output ``target`` to ``x`` (``(1, C, *spatial)``).

        Parameters
        ----------
        module : torch.nn.Module
            The (observed) model: every forward reports progress and may raise ``Cancelled``.
        params : dict
            The method's parameters, resolved (no ``"auto"`` left).
        layer : torch.nn.Module, optional
            The model's ``cam_layers[0]``, for methods that need a layer.
        region : numpy.ndarray, optional
            A boolean mask on the input grid, for methods that accept one.
        """

    def run(
        self,
        module: torch.nn.Module,
        x: torch.Tensor,
        target: int,
        params: dict[str, Any],
        *,
        layer: torch.nn.Module | None = None,
        region: np.ndarray | None = None,
    ) -> Attribution:
        """:meth:`attribute`, seeded when the parameters have a ``seed``, with a detached map.

        Stochastic methods are reproducible that way, and the caller's RNG state is untouched.
        """
        if "seed" not in params:
            out = self.attribute(module, x, target, params, layer=layer, region=region)
        else:
            from .._captum import seeded

            with seeded(int(params["seed"])):
                out = self.attribute(module, x, target, params, layer=layer, region=region)
        return Attribution(out.map.detach(), out.delta, out.endpoints, list(out.notes), dict(out.details))

    def completeness_miss(
        self, params: dict[str, Any], delta: float, share: str, relative: float, **context: Any
    ) -> str:
        """The sentence for a map missing completeness by ``share`` (methods with ``completeness``)."""
        raise NotImplementedError(f"{self.name} promises no completeness")

    def unavailable_for(self, model: Any) -> str | None:
        """Why this method cannot explain ``model`` (a :class:`LoadedModel`), or None when it can."""
        if self.needs_layer and not model.spec.cam_layers:
            return f"needs a layer: the spec of '{model.spec.name}' lists no cam_layers"
        if self.overrides_nonlinearities and getattr(model.module, "functional_nonlinearities", False):
            return (
                f"replaces the backward pass of the model's nonlinear modules (nn.ReLU), which "
                f"'{model.spec.name}' ({model.spec.format}) runs as functions: load the eager model "
                "(state_dict + architecture) for it"
            )
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "family": self.family,
            "elements": list(self.elements),
            "signed": self.signed,
            "params": dict(self.params),
            "needs_layer": self.needs_layer,
            "description": self.description,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} method {self.name!r}>"


def _is_number(value: Any) -> bool:
    """A real number (not a bool, not a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _is_count(value: Any) -> bool:
    """A whole number >= 1 (``3`` or ``3.0``; not ``True``, ``2.5`` or ``0``)."""
    return _is_number(value) and float(value).is_integer() and value >= 1
