"""Reading fields of a client's JSON body, with errors that name the field.

Numbers are read within the ranges of `hypereal.bounds`: an integer without a narrower
range is a count (tokens, choices) of at most `MAX_CHAT_INTEGER`; a number is finite, and
within its range in `CHAT_NUMBER_RANGES` when it has one.
"""

from __future__ import annotations

import math
from typing import Any

from hypereal.bounds import CHAT_NUMBER_RANGES, MAX_CHAT_INTEGER
from hypereal.errors import ValidationFailed


def missing(name: str) -> ValidationFailed:
    return ValidationFailed(f"{name[:1].upper()}{name[1:]} is required", field=name)


def invalid(name: str, expected: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid value for '{name}': expected {expected}", field=name)


def string(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str) or (required and not value):
        raise invalid(name, "a non-empty string" if required else "a string")
    return value


def integer(
    body: dict[str, Any], name: str, *, minimum: int | None = None, maximum: int = MAX_CHAT_INTEGER
) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, "an integer")
    if minimum is not None and value < minimum:
        raise invalid(name, f"an integer >= {minimum}")
    if value > maximum:
        raise invalid(name, f"an integer <= {maximum}")
    return value


def number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(name, "a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(name, "a finite number")
    low, high = CHAT_NUMBER_RANGES.get(name, (-math.inf, math.inf))
    if not low <= value <= high:
        raise invalid(name, f"a number from {low:g} to {high:g}")
    return float(value)


def boolean(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(name, "true or false")
    return value


def array(body: dict[str, Any], name: str, *, required: bool = False) -> list[Any]:
    value = body.get(name)
    if value is None:
        if required:
            raise missing(name)
        return []
    if not isinstance(value, list):
        raise invalid(name, "an array")
    if required and not value:
        raise ValidationFailed(f"'{name}' must not be empty", field=name)
    return value


def mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(name, "an object")
    return value


def stop_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item for item in value if item]
    raise invalid(name, "a string or an array of strings")
