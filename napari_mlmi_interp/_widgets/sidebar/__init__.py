"""The framework sidebar: rate an explanation on the five elements of interpretability.

Top: the goal (task, reader, purpose) and the elements it needs, with recommended methods
(:mod:`.goal`). Then the explanation to judge (any heatmap layer made by the Explain panel or
the reader study) and the study file (:mod:`.study`). Then one card per element
(:mod:`.cards`): the automatic evidence (value, a pass/warn/fail chip, the definition on
hover), a 1-5 rating or N/A and a note; under localization the true region (:mod:`.region`:
pick a Labels layer or *Annotate* to draw one: the figures recompute as you paint, and the
region is saved); under model transparency the deletion, insertion and randomisation curves
(*Compute model evidence*, off the GUI thread, with progress and cancel); under actionability
the reader's action. :mod:`.panel` composes them.

The panel is a view: what it shows lives in the evented sessions of
:mod:`napari_mlmi_interp.framework.session` and :mod:`napari_mlmi_interp.framework.reader_study`.
Every rating, note, action and annotation is committed to the study file the moment it is
made (:class:`~napari_mlmi_interp.store.StudyStore`). In a reader study the items come
blinded ("Explanation <n>"), in the reader's own random order, resuming where they stopped.
"""

from __future__ import annotations

from .cards import ElementCard
from .panel import FrameworkSidebar
from .study import STUDY_ENV, default_study_path

__all__ = ["STUDY_ENV", "ElementCard", "FrameworkSidebar", "default_study_path"]
