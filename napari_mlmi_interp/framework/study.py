"""Reader studies: cases x (model, method) shown blinded, in a per-reader random order.

A study file (JSON) lists the cases and the conditions::

    {
      "study": "lesion-xai-pilot",
      "cases": [{"scan": "scans/a.nii.gz", "roi": "masks/a.nii.gz"}, {"scan": "scans/b"}],
      "conditions": [
        {"model": "lesion-classifier", "method": "gradcam", "target": "lesion"},
        {"model": "lesion-classifier", "method": "integrated_gradients", "target": "lesion",
         "params": {"n_steps": 16}}
      ],
      "show_evidence": true,
      "goal": {"task": "classification", "reader": "clinician", "purpose": "verify"},
      "readers": ["ana", "ben", "cho"]
    }

Paths are relative to the study file. Every (case, condition) pair is one item; each reader
sees all items in an order drawn from a seed derived from (study, reader), so the order is
random across readers yet the same every time one reader comes back. Items are labelled
"Explanation <n>" (method names hidden); progress lives in the study database, so a reader
resumes at the first item not yet done. ``readers`` (optional) names who is to read: the study
is complete when each of them has finished every item. Item ids (``c<case>-k<condition>``) never contain a
path or a patient identifier.

A study file that cannot be used raises :class:`~napari_mlmi_interp.errors.InputError` (a
``ValueError``) naming the file and the problem. :mod:`.reader_study` runs a study for one
reader (progress, the next item, preparing its explanation).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .guide import Goal

__all__ = ["ReaderStudy", "StudyItem"]


@dataclass(frozen=True)
class StudyItem:
    id: str
    case_index: int
    condition_index: int
    scan: Path
    roi: Path | None
    model: str
    method: str
    target: str | int | None
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class ReaderStudy:
    name: str
    items: list[StudyItem]
    show_evidence: bool = True
    goal: Goal = field(default_factory=Goal)
    path: Path | None = None
    readers: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReaderStudy:
        """Read and check a study file; errors name the file and the problem."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the study file ({exc})") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: a study file is a JSON object with 'study', 'cases', 'conditions'")
        for key in ("study", "cases", "conditions"):
            if key not in data:
                raise InputError(f"{path}: missing '{key}'")
        cases, conditions = data["cases"], data["conditions"]
        if not isinstance(cases, list) or not cases:
            raise InputError(f"{path}: 'cases' must be a non-empty list")
        if not isinstance(conditions, list) or not conditions:
            raise InputError(f"{path}: 'conditions' must be a non-empty list")
        base = path.parent
        items = []
        for ci, case in enumerate(cases):
            if isinstance(case, str):
                case = {"scan": case}
            if not isinstance(case, dict) or "scan" not in case:
                raise InputError(f"{path}: case {ci + 1} needs a 'scan'")
            scan = (base / case["scan"]).resolve()
            roi = (base / case["roi"]).resolve() if case.get("roi") else None
            for p in (scan, roi):
                if p is not None and not p.exists():
                    raise InputError(f"{path}: case {ci + 1}: {p} does not exist")
            for ki, cond in enumerate(conditions):
                if not isinstance(cond, dict) or "model" not in cond or "method" not in cond:
                    raise InputError(f"{path}: condition {ki + 1} needs a 'model' and a 'method'")
                items.append(
                    StudyItem(
                        id=f"c{ci + 1}-k{ki + 1}",
                        case_index=ci,
                        condition_index=ki,
                        scan=scan,
                        roi=roi,
                        model=str(cond["model"]),
                        method=str(cond["method"]),
                        target=cond.get("target", case.get("target")),
                        params=dict(cond.get("params", {})),
                    )
                )
        goal = Goal(**data["goal"]) if isinstance(data.get("goal"), dict) else Goal()
        readers = data.get("readers", [])
        if not isinstance(readers, list) or not all(isinstance(r, str) and r.strip() for r in readers):
            raise InputError(f"{path}: 'readers' must be a list of reader names")
        show = bool(data.get("show_evidence", True))
        return cls(str(data["study"]), items, show, goal, path, tuple(r.strip() for r in readers))

    def order(self, reader: str) -> list[StudyItem]:
        """All items in this reader's order (stable for one reader, different across readers)."""
        if not reader.strip():
            raise InputError("a reader study needs a reader name")
        seed = int(hashlib.sha256(f"{self.name}\x1f{reader}".encode()).hexdigest()[:16], 16)
        items = list(self.items)
        random.Random(seed).shuffle(items)
        return items

    def next(self, reader: str, done: set[str]) -> tuple[int, StudyItem] | None:
        """``(position, item)`` of the first item this reader has not finished, or None."""
        for position, item in enumerate(self.order(reader)):
            if item.id not in done:
                return position, item
        return None

    @staticmethod
    def label(position: int) -> str:
        """The blinded name shown for the item at ``position`` (0-based)."""
        return f"Explanation {position + 1}"
