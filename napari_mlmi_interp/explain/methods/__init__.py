"""The attribution methods: what each is, what it serves, what it costs, and how Captum runs it.

One class per algorithm (Captum's shape), grouped by family: :mod:`.gradients`,
:mod:`.paths`, :mod:`.cam` and :mod:`.perturbation` (occlusion's planning in
:mod:`.occlusion`). Every method is Captum's own class doing the work (nothing here
re-implements it), except Grad-CAM++ which Captum lacks: it is built on Captum's
layer-gradient hooks. The registry :data:`METHODS` is built from :data:`METHOD_CLASSES`;
adding a method is adding its class there.
"""

from __future__ import annotations

from ...errors import InputError
from ...vocabulary import ELEMENTS  # re-exported: the registry's public names include it
from .base import Attribution, Method
from .cam import GradCam, GradCamPlusPlus, GuidedGradCam
from .gradients import Deconvolution, DeepLift, GuidedBackprop, InputXGradient, Saliency, SmoothGrad
from .paths import GradientShap, IntegratedGradients
from .perturbation import FeatureAblation, Occlusion

__all__ = [
    "ELEMENTS",
    "METHODS",
    "METHOD_CLASSES",
    "Attribution",
    "Method",
    "get_method",
    "list_methods",
]

#: Every method class, in the order the registry lists them (cheap and simple first).
METHOD_CLASSES: tuple[type[Method], ...] = (
    Saliency,
    InputXGradient,
    IntegratedGradients,
    SmoothGrad,
    GradientShap,
    DeepLift,
    GuidedBackprop,
    Deconvolution,
    GradCam,
    GuidedGradCam,
    GradCamPlusPlus,
    Occlusion,
    FeatureAblation,
)

#: One instance of each method class, by name.
METHODS: dict[str, Method] = {cls.name: cls() for cls in METHOD_CLASSES}


def get_method(name: str) -> Method:
    """The method called ``name``; a clear error listing the others otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {name!r}") from None


def list_methods(*, elements: tuple[str, ...] | None = None) -> list[Method]:
    """All methods, or those serving any of ``elements``."""
    if elements:
        unknown = set(elements) - set(ELEMENTS)
        if unknown:
            raise InputError(f"elements must be among {', '.join(ELEMENTS)}, got {sorted(unknown)}")
        return [m for m in METHODS.values() if set(m.elements) & set(elements)]
    return list(METHODS.values())
