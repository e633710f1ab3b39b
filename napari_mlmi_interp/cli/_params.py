"""``--param NAME=VALUE``: parsed as JSON where it can be, checked against the method's defaults."""

from __future__ import annotations

import json
from typing import Any

from ._common import CliError


def parse_params(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings as a dict; a VALUE that is not JSON stays a string."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--param must be NAME=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def check_params(method: Any, params: dict[str, Any]) -> None:
    """Each value of the type of the method's default for it, or an error naming it."""
    for key, value in params.items():
        if key not in method.params:
            continue  # unknown names: the engine's error lists the method's parameters
        default = method.params[key]
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif default == "auto":
            ok = value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
            kind = "a positive integer or 'auto'"
        else:
            continue
        if not ok:
            raise CliError(
                f"--param {key} ({method.name}) must be {kind} (default {json.dumps(default)}), "
                f"got {json.dumps(value)}"
            )
