"""The framework's words, at the bottom of the house: elements and reader actions.

Every layer may import this module (it imports nothing of the package): the method registry
declares which elements a method serves, the study store checks the elements and actions it
saves, the framework builds its evidence on them, without any of those importing another
for a tuple of names.
"""

from __future__ import annotations

__all__ = ["ACTIONS", "ELEMENTS"]

#: The five elements of interpretability for medical imaging (Wang et al., IEEE Access 2024),
#: in the order the sidebar, exports and reports list them.
ELEMENTS = (
    "localization",
    "visual_recognizability",
    "physical_attribution",
    "model_transparency",
    "actionability",
)

#: What a reader can do with an explanation (the actionability element's recorded outcome).
ACTIONS = ("accept", "override", "refer", "flag_shortcut")
