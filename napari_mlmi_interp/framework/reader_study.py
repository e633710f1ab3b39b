"""A reader study for one reader: progress, the next item, and its explanation prepared.

Plain Python (no napari, no Qt). The sidebar shows what :meth:`ReaderStudySession.prepare`
returns; ``prepare`` reads the scan, loads the model and runs the explanation, so the caller
runs it off the GUI thread. Items are blinded ("Explanation <n>") and come in the reader's own
order (:meth:`~.study.ReaderStudy.order`); what is done lives in the study file, so a reader
who comes back resumes at the first item not yet finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..io.volume import Volume
from ..models.held import held_models
from .session import AssessmentSession
from .study import ReaderStudy, StudyItem

__all__ = ["PreparedCase", "ReaderStudySession"]

#: The scan's name in a reader study (the method is never named).
CASE_NAME = "Case"


@dataclass(frozen=True)
class PreparedCase:
    """Everything needed to show one study item.

    Attributes
    ----------
    position : int
        0-based place in the reader's order.
    item : StudyItem
    label : str
        The blinded name ("Explanation 3").
    scan : Volume
        The case's scan, named ``"Case"``.
    roi : Volume or None
        The reference region of the case, if the study gives one.
    explanation : Explanation
        The item's method run on the scan (its ``native`` map on the scan's grid).
    model : LoadedModel
        The model that made it.
    model_key : str
        Its key in :func:`~napari_mlmi_interp.models.held.held_models` (sha256).
    """

    position: int
    item: StudyItem
    label: str
    scan: Volume
    roi: Volume | None
    explanation: Any
    model: Any
    model_key: str


class ReaderStudySession:
    """One reader's run through a :class:`~.study.ReaderStudy`, recorded in the session's store.

    Parameters
    ----------
    study : ReaderStudy
    assessment : AssessmentSession
        Gives the study file (``assessment.store``) and the reader (``assessment.reader``),
        read at each call so that a new study file or reader name takes effect at once.
    """

    def __init__(self, study: ReaderStudy, assessment: AssessmentSession) -> None:
        self.study = study
        self.assessment = assessment
        self.current: tuple[int, StudyItem] | None = None

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], assessment: AssessmentSession, *, reader: str | None = None
    ) -> ReaderStudySession:
        """Read the study file; InputError (a ValueError) when it or the reader's name is unusable."""
        study = ReaderStudy.load(path)
        study.order(assessment.reader if reader is None else reader)  # checks the reader's name
        return cls(study, assessment)

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def show_evidence(self) -> bool:
        return self.study.show_evidence

    def done(self) -> set[str]:
        """Ids of the items this reader finished (empty without a study file)."""
        store = self.assessment.store
        return store.done_items(self.study.name, reader=self.assessment.reader) if store else set()

    def progress(self) -> tuple[int, int]:
        """``(n done, n total)``."""
        return len(self.done()), len(self.study.items)

    def finish(self, run_id: int | None) -> None:
        """Mark the item being shown done (with the run it was rated on)."""
        store = self.assessment.store
        if self.current is not None and store is not None:
            store.mark_done(self.study.name, self.current[1].id, run_id=run_id, reader=self.assessment.reader)

    def next_item(self) -> tuple[int, StudyItem] | None:
        """``(position, item)`` of the first item not yet done, or None (and none is shown)."""
        nxt = self.study.next(self.assessment.reader, self.done())
        if nxt is None:
            self.current = None
        return nxt

    def shown(self, case: PreparedCase) -> None:
        """``case`` is on screen now (finished by the next :meth:`finish`)."""
        self.current = (case.position, case.item)

    def status(self) -> str:
        """One line for the study's progress ("pilot: 1 of 4 done")."""
        done, total = self.progress()
        return f"{self.study.name}: {done} of {total} done"

    @staticmethod
    def prepare(
        position: int,
        item: StudyItem,
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: Any = None,
    ) -> PreparedCase:
        """Read the scan (and reference region), load the model, run the item's method.

        Pure but slow (seconds to minutes): run it off the GUI thread. The model is loaded once per
        process and held in :func:`~napari_mlmi_interp.models.held.held_models`, so that
        layers refer to it by key. Errors: LoadError / ModelError / InputError for a
        file or model that cannot be used; ``Cancelled`` when ``cancel`` is set.
        """
        from ..explain import explain
        from ..io import load

        scan = load(item.scan)[0]
        roi = load(item.roi)[0] if item.roi else None
        model = held_models().resolve(item.model)  # read once per process, then shared
        key = held_models().hold(model)
        scan.name = CASE_NAME
        result = explain(
            scan, model, item.method, target=item.target, params=item.params, progress=progress, cancel=cancel
        )
        return PreparedCase(position, item, ReaderStudy.label(position), scan, roi, result, model, key)
