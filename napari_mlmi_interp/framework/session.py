"""The assessment session: what the framework sidebar judges, and where its ratings go.

Plain Python with events (:mod:`psygnal`), no napari and no Qt, so it is tested without a
viewer; the sidebar only renders it and forwards the reader's clicks. The session holds

- the goal (task, reader, purpose, elements);
- the explanation being judged (:class:`Current`: the Explanation, its model or None, the
  scan Volume, the blinded label of a reader-study item);
- the true region (a boolean mask on the map's grid), and whether the reader drew it;
- the top-k % of the figures;
- an evidence *generation*: every new request for the map's figures bumps it, and a result
  of an older generation is dropped when it arrives;
- the store binding: a study file and a reader. Ratings, notes, actions and drawn regions are
  committed the moment they are made; selecting an explanation reloads the reader's ratings.

Long work (the map's figures, the model's) is cut in three so that the caller can run the
middle off the GUI thread: :meth:`AssessmentSession.map_request` (a snapshot of the state),
:meth:`MapRequest.compute` (pure), :meth:`AssessmentSession.deliver` (back on the caller's
thread; drops stale results, records the figures, emits :attr:`~AssessmentSession.evidence_changed`).

The framework does not import :mod:`napari_mlmi_interp.store` (the layers contract keeps the
two independent): the session opens study files through the ``opener`` it is given
(:class:`~napari_mlmi_interp.store.StudyStore` in the sidebar) and uses it through
:class:`RatingStore`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from psygnal import Signal

from ..errors import InputError, MlmiError
from ..io.volume import Volume
from .evidence import Assessment, map_evidence, model_evidence
from .evidence.effort import Effort, effort_for
from .evidence.from_map import against_explained_roi
from .files import on_grid_of
from .guide import DEFAULT_TIME_LIMIT_MIN, ELEMENT_INFO, Goal, recommended_methods, scan_context
from .settings import DEFAULT_TOPK_PERCENT

__all__ = ["AssessmentSession", "Current", "MapRequest", "ModelRequest", "RatingStore"]

#: The elements whose figures need the model (kept when the map's figures are recomputed).
MODEL_ELEMENTS = ("model_transparency", "actionability")


class RatingStore(Protocol):
    """What the session needs of a study file (:class:`~napari_mlmi_interp.store.StudyStore`)."""

    reader: str
    path: Any

    def close(self) -> None: ...
    def add_explanation(self, explanation: Any, *, blinded_label: str | None = None) -> int: ...
    def record_evidence(self, run_id: int, assessment: Any) -> None: ...
    def rate(self, run_id: int, element: str, rating: int | None, note: str = "", *, reader: str) -> Any: ...
    def ratings(self, run_id: int, *, reader: str | None = None) -> dict[str, dict[str, Any]]: ...
    def set_action(self, run_id: int, action: str, note: str = "", *, reader: str | None = None) -> int: ...
    def action(self, run_id: int, *, reader: str | None = None) -> dict[str, Any] | None: ...
    def save_annotation(self, case_id: str, mask: np.ndarray, geometry: Any, *, reader: str) -> Any: ...
    def annotation(self, case_id: str, *, reader: str | None = None) -> Any: ...


@dataclass(frozen=True)
class Current:
    """The explanation being judged.

    Attributes
    ----------
    explanation : Explanation
        Its ``native`` map (z, y, x, on the scan's grid) is what the figures score.
    model : LoadedModel or None
        The model that made it; None when unknown (the model evidence then cannot run).
    scan : Volume or None
        The scan it explains (intensity statistics in HU for CT).
    blinded : str or None
        The label shown instead of the method in a reader study ("Explanation 3").
    source : object
        Whatever the view identifies it by (the sidebar: the heatmap layer); opaque here.
    """

    explanation: Any
    model: Any = None
    scan: Volume | None = None
    blinded: str | None = None
    source: Any = None


@dataclass(frozen=True)
class MapRequest:
    """A snapshot for the map's figures (localization, recognizability, physical attribution).

    :meth:`compute` is pure and may run on any thread; hand its result to
    :meth:`AssessmentSession.deliver`.
    """

    generation: int
    current: Current
    mask: np.ndarray | None
    percent: float

    def compute(self) -> Assessment:
        explanation = self.current.explanation
        figures = map_evidence(
            explanation.native, roi=self.mask, scan=self.current.scan, percent=self.percent
        )
        return against_explained_roi(figures, self.mask, getattr(explanation, "roi", None))


@dataclass(frozen=True)
class ModelRequest:
    """A snapshot for the model's figures (deletion/insertion, randomisation, TTA, ...)."""

    current: Current
    percent: float
    generation: int = field(default=-1)
    limit_minutes: float = DEFAULT_TIME_LIMIT_MIN

    @property
    def effort(self) -> Effort:
        """The largest effort whose estimate fits the time limit (:func:`.evidence.effort.effort_for`)."""
        return effort_for(self.current.explanation, self.current.model, limit_minutes=self.limit_minutes)

    def compute(self, progress: Callable[[int, int], None] | None = None, cancel: Any = None) -> Assessment:
        """Run the model (minutes on a CPU); ``progress(done, total)``, ``cancel`` a CancelToken.

        The effort (curve steps, randomisation stages, ...) is the largest that fits the time
        limit; it is stored in the figures' settings.
        """
        effort = self.effort
        assessment = model_evidence(
            self.current.explanation,
            self.current.model,
            percent=self.percent,
            progress=progress,
            cancel=cancel,
            **effort.options,
        )
        assessment.settings.update(effort.to_dict())
        return assessment


class AssessmentSession:
    """An evented assessment of one explanation at a time, bound to a study file.

    Parameters
    ----------
    reader : str
        The reader's name (ratings are per reader).
    opener : callable, optional
        ``opener(path, reader=...)`` returns a :class:`RatingStore`
        (:class:`~napari_mlmi_interp.store.StudyStore`); without one, :meth:`open_store`
        cannot be used (bind an open store with :meth:`bind_store`).

    Signals
    -------
    explanation_changed(object)
        A :class:`Current`, or None after :meth:`clear`.
    evidence_changed(object)
        The :class:`~napari_mlmi_interp.framework.Assessment` now shown.
    ratings_loaded(dict)
        ``{element: {"rating": ..., "note": ...}}`` of this reader for the current explanation.
    action_loaded(object)
        The reader's recorded action (str) or None.
    goal_changed(object)
        The :class:`~napari_mlmi_interp.framework.Goal`.
    store_changed(object)
        The study file's path.
    saved(str)
        A rating, note or action was committed ("Saved localization: 4 (10:12:03).").
    error(str)
        Something the reader can act on went wrong (the session stays usable).
    """

    explanation_changed = Signal(object)
    evidence_changed = Signal(object)
    ratings_loaded = Signal(dict)
    action_loaded = Signal(object)
    goal_changed = Signal(object)
    store_changed = Signal(object)
    saved = Signal(str)
    error = Signal(str)

    def __init__(self, reader: str = "reader", *, opener: Callable[..., RatingStore] | None = None) -> None:
        self._reader = reader.strip() or "reader"
        self._opener = opener
        self.store: RatingStore | None = None
        self.goal = Goal()
        self.current: Current | None = None
        self.run_id: int | None = None
        self.assessment: Assessment | None = None
        self.region: np.ndarray | None = None
        self.region_source: str | None = None
        self.region_drawn = False
        self.percent = DEFAULT_TOPK_PERCENT
        #: methods estimated to take longer (minutes) on the current scan are not recommended
        self.time_limit_min = DEFAULT_TIME_LIMIT_MIN
        self.generation = 0
        self._saved_region: int | None = None

    # -- reader and study file ---------------------------------------------------------------
    @property
    def reader(self) -> str:
        return self._reader

    def set_reader(self, name: str) -> None:
        """Rate as ``name`` from now on (this reader's ratings are reloaded)."""
        self._reader = name.strip() or "reader"
        if self.store is not None:
            self.store.reader = self._reader
        if self.current is not None:
            self._load_ratings()

    def open_store(self, path: str | os.PathLike[str]) -> bool:
        """Use ``path`` as the study file (created when missing); False (and ``error``) if not."""
        if self._opener is None:
            raise RuntimeError("this session was made without a store opener")
        try:
            store = self._opener(path, reader=self._reader)
        except (MlmiError, OSError) as exc:
            self.error.emit(str(exc))
            return False
        self.bind_store(store)
        return True

    def bind_store(self, store: RatingStore) -> None:
        """Use an open study file (the previous one is closed); re-binds the current explanation."""
        if self.store is not None and self.store is not store:
            self.store.close()
        self.store = store
        self.store_changed.emit(store.path)
        if self.current is not None:
            self._bind_run()

    def close(self) -> None:
        """Close the study file."""
        if self.store is not None:
            self.store.close()
            self.store = None

    # -- goal --------------------------------------------------------------------------------
    def set_goal(self, goal: Goal) -> None:
        self.goal = goal
        self.goal_changed.emit(goal)

    def recommended(self, elements: tuple[str, ...] | list[str] | None = None, limit: int = 4) -> list:
        """:class:`~.guide.Recommendation` rows for ``elements`` (default: the goal's).

        The ``limit`` fastest recommended methods on the current explanation's model grid
        (with their minutes once :meth:`timing_request` has measured a pass; occlusion on the
        region when one is set), then every method too slow here. Class-activation methods
        count only when the current model names a layer for them.
        """
        chosen = list(self.goal.elements if elements is None else elements)
        if not chosen:
            return []
        model = self.current.model if self.current is not None else None
        has_layer = bool(model.spec.cam_layers) if model is not None else True
        explanation = self.current.explanation if self.current is not None else None
        shape, timing, region = scan_context(explanation, model, self.region)
        recs = recommended_methods(
            chosen,
            has_layer=has_layer,
            shape=shape,
            timing=timing,
            region=region,
            limit_minutes=self.time_limit_min,
        )
        return [r for r in recs if r.recommended][:limit] + [r for r in recs if not r.recommended]

    def timing_request(self, *, max_voxels: int | None = None) -> Callable[..., Any] | None:
        """A job measuring one pass of the current model on its grid (kept for the process).

        None when there is no model, the pass is already known, or the grid has more than
        ``max_voxels`` voxels. The job takes any arguments (a job runner's token and
        progress) and returns the :class:`~napari_mlmi_interp.explain.timing.PassTiming`.
        """
        from ..explain.timing import pass_timing

        model = self.current.model if self.current is not None else None
        if model is None:
            return None
        shape, timing, _region = scan_context(self.current.explanation, model)
        if timing is not None or (max_voxels is not None and int(np.prod(shape)) > max_voxels):
            return None
        return lambda *_: pass_timing(model, shape)

    # -- the explanation ---------------------------------------------------------------------
    def select(
        self,
        explanation: Any,
        *,
        model: Any = None,
        scan: Volume | None = None,
        blinded: str | None = None,
        source: Any = None,
    ) -> Current:
        """Judge ``explanation`` from now on: bind it to the study file, load the ratings.

        Results of earlier requests become stale. The region is kept (the view decides).
        """
        self.current = Current(explanation, model, scan, blinded, source)
        self.assessment = None
        self.generation += 1
        self.explanation_changed.emit(self.current)
        self._bind_run()
        return self.current

    def clear(self) -> None:
        """Judge nothing (no explanation, no run); pending results become stale."""
        self.current = None
        self.run_id = None
        self.assessment = None
        self.generation += 1
        self.explanation_changed.emit(None)

    def _bind_run(self) -> None:
        if self.store is None or self.current is None:
            return
        try:
            self.run_id = self.store.add_explanation(
                self.current.explanation, blinded_label=self.current.blinded
            )
        except (MlmiError, OSError) as exc:
            self.run_id = None
            self.error.emit(str(exc))
            return
        self._load_ratings()

    def _load_ratings(self) -> None:
        if self.store is None or self.run_id is None:
            return
        ratings = self.store.ratings(self.run_id, reader=self._reader)
        self.ratings_loaded.emit({e: {"rating": r["rating"], "note": r["note"]} for e, r in ratings.items()})
        action = self.store.action(self.run_id, reader=self._reader)
        self.action_loaded.emit(action["action"] if action else None)

    # -- the true region ---------------------------------------------------------------------
    def set_region(
        self, region: Volume | np.ndarray | None, source_name: str | None = None, *, drawn: bool = False
    ) -> np.ndarray | None:
        """The true region: a Volume (resampled onto the map's grid by position) or a mask on it.

        A region the reader drew (``drawn``) is saved to the study file the first time each
        new drawing is seen. Returns the boolean mask (z, y, x) on the map's grid, or None;
        a region that cannot be put on the map's grid is reported through ``error`` and
        dropped.
        """
        self.region_source, self.region_drawn = source_name, drawn
        self.region = None
        if region is None or self.current is None:
            return None
        native = self.current.explanation.native
        try:
            mask = self._on_map_grid(region, native)
        except ValueError as exc:
            self.error.emit(str(exc))
            return None
        self.region = mask
        if drawn:
            self._save_drawing(mask)
        return mask

    @staticmethod
    def _on_map_grid(region: Volume | np.ndarray, native: Volume) -> np.ndarray:
        if isinstance(region, Volume):
            return np.asarray(on_grid_of(region, native, labels=True, what="region", notes=[])) > 0
        mask = np.asarray(region) > 0
        if mask.shape != native.shape:
            raise InputError(f"the region must be on the map's grid {native.shape}, got {mask.shape}")
        return mask

    def _save_drawing(self, mask: np.ndarray) -> None:
        native = self.current.explanation.native
        digest = hash((native.case_id, mask.tobytes()))
        if not mask.any() or self.store is None or digest == self._saved_region:
            return
        self._saved_region = digest  # each new drawing once, not again at every recompute
        self.store.save_annotation(native.case_id, mask, native.geometry, reader=self._reader)

    def saved_region(self) -> Volume | None:
        """This reader's saved region for the current case, on the map's grid (uint8), or None."""
        if self.store is None or self.current is None:
            return None
        native = self.current.explanation.native
        saved = self.store.annotation(native.case_id, reader=self._reader)
        if saved is None or saved[0].shape != native.shape:
            return None
        return native.with_array(saved[0].astype(np.uint8), name="true region (saved)")

    # -- evidence ----------------------------------------------------------------------------
    def map_request(self) -> MapRequest | None:
        """Snapshot for the map's figures; earlier requests become stale. None: nothing to judge."""
        if self.current is None:
            return None
        self.generation += 1
        return MapRequest(self.generation, self.current, self.region, self.percent)

    def model_request(self) -> ModelRequest | None:
        """Snapshot for the model's figures, or None (and ``error``) when there is no model."""
        if self.current is None:
            return None
        if self.current.model is None:
            self.error.emit("this heatmap does not carry its model; run it from the Explain panel")
            return None
        return ModelRequest(self.current, self.percent, self.generation, self.time_limit_min)

    def map_assessment(self) -> Assessment | None:
        """The map's figures now, on the calling thread (not shown)."""
        request = self.map_request()
        return request.compute() if request is not None else None

    def model_assessment(
        self, progress: Callable[[int, int], None] | None = None, cancel: Any = None
    ) -> Assessment | None:
        """The model's figures now, on the calling thread (not shown)."""
        request = self.model_request()
        return request.compute(progress, cancel) if request is not None else None

    def deliver(self, request: MapRequest | ModelRequest, assessment: Assessment) -> bool:
        """Show a computed request's figures; False when it is stale (dropped).

        The map's figures keep the model's figures of the same explanation, and the model's
        are merged into what is shown.
        """
        if isinstance(request, MapRequest):
            if request.generation != self.generation or self.current is None:
                return False  # a newer request superseded this one
            assessment = self._with_model_part(assessment)
        else:
            if request.current is not self.current:
                return False
            assessment = (self.assessment or Assessment()).merged(assessment)
        self.show(assessment)
        return True

    def _with_model_part(self, assessment: Assessment) -> Assessment:
        if self.assessment is None:
            return assessment
        model_part = {k: f for k, f in self.assessment.figures.items() if f.element in MODEL_ELEMENTS}
        return Assessment(
            {**assessment.figures, **model_part},
            dict(self.assessment.curves),
            {**self.assessment.settings, **assessment.settings},
        )

    def assess_now(self, *, with_model: bool = True) -> Assessment | None:
        """Compute and show the evidence on the calling thread (headless demo, scripts)."""
        assessment = self.map_assessment()  # results of earlier requests are stale now
        if assessment is None:
            return None
        if with_model and self.current.model is not None:
            request = ModelRequest(self.current, self.percent, self.generation, self.time_limit_min)
            assessment = assessment.merged(request.compute())
        self.show(assessment)
        return assessment

    def show(self, assessment: Assessment) -> None:
        """Make ``assessment`` the one shown (stored with the run), and emit it."""
        self.assessment = assessment
        if self.store is not None and self.run_id is not None:
            self.store.record_evidence(self.run_id, assessment)
        self.evidence_changed.emit(assessment)

    # -- ratings and action ------------------------------------------------------------------
    def rate(self, element: str, rating: int | None, note: str = "") -> bool:
        """Commit a rating now (1-5, None = N/A) of the current explanation; False if not saved."""
        if self.store is None or self.run_id is None:
            self.error.emit("pick an explanation (and a study file) before rating")
            return False
        try:
            self.store.rate(self.run_id, element, rating, note, reader=self._reader)
        except (MlmiError, OSError) as exc:
            self.error.emit(str(exc))
            return False
        said = "N/A" if rating is None else str(rating)
        self.saved.emit(f"Saved {ELEMENT_INFO[element].title}: {said} ({time.strftime('%H:%M:%S')}).")
        return True

    def set_action(self, action: str | None) -> bool:
        """Commit the reader's action (accept, override, refer, ...); None records nothing."""
        if action is None or self.store is None or self.run_id is None:
            return False
        self.store.set_action(self.run_id, action, reader=self._reader)
        self.saved.emit(f"Saved action: {action.replace('_', ' ')} ({time.strftime('%H:%M:%S')}).")
        return True
