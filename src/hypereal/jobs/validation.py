"""Checking a media request's input against the catalog, and pricing it.

Clients written for Hypereal send one body shape to many models, including fields a given
model does not take (a `resolution` to a model without one); those are dropped rather than
refused. Declared fields are checked strictly, and named in the error with the path the
client used (`input.duration`). A number the catalog gives no bounds (a `seed`) is still
bounded: within ±`bounds.MAX_JSON_INTEGER`, the integers every JSON reader and both
databases hold exactly.
"""

from __future__ import annotations

import math
from typing import Any

from hypereal.bounds import MAX_JSON_INTEGER
from hypereal.catalog.schema import ModelSpec, ParamSpec, Pricing
from hypereal.errors import ValidationFailed
from hypereal.units import MILLI

MAX_INPUT_MINUTES = 30


def _label(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def _sentence(label: str) -> str:
    """ "Model is required", but "input.prompt is required": a path is quoted as the client wrote it."""
    if "." in label or "[" in label:
        return label
    return label[:1].upper() + label[1:]


def _check_url(value: Any, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{_sentence(label)} must be a URL", field=label)
    url: str = value.strip()
    if not url.startswith(("http://", "https://", "data:")):
        raise ValidationFailed(f"{_sentence(label)} must be an http(s) URL or a data: URI", field=label)
    return url


def _number(value: Any, spec: ParamSpec, label: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValidationFailed(f"{_sentence(label)} must be a number", field=label) from None
        else:
            raise ValidationFailed(f"{_sentence(label)} must be a number", field=label)
    if not math.isfinite(value):
        raise ValidationFailed(f"{_sentence(label)} must be a finite number", field=label)
    if spec.type == "integer":
        if value != int(value):
            raise ValidationFailed(f"{_sentence(label)} must be an integer", field=label)
        value = int(value)
    number: int | float = value
    minimum = -MAX_JSON_INTEGER if spec.minimum is None else spec.minimum
    maximum = MAX_JSON_INTEGER if spec.maximum is None else spec.maximum
    if value < minimum:
        raise ValidationFailed(f"{_sentence(label)} must be at least {_figure(minimum)}", field=label)
    if value > maximum:
        raise ValidationFailed(f"{_sentence(label)} must be at most {_figure(maximum)}", field=label)
    return number


def _figure(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _value(value: Any, spec: ParamSpec, label: str) -> Any:
    kind = spec.type
    if kind in ("integer", "number"):
        value = _number(value, spec, label)
    elif kind == "string":
        if not isinstance(value, str):
            if isinstance(value, int | float) and not isinstance(value, bool) and spec.enum is not None:
                value = str(value)  # "aspect_ratio": 1 style mistakes are rare; numbers as enum text are not
            else:
                raise ValidationFailed(f"{_sentence(label)} must be a string", field=label)
        if spec.max_length is not None and len(value) > spec.max_length:
            raise ValidationFailed(f"{_sentence(label)} is longer than {spec.max_length} characters", field=label)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ValidationFailed(f"{_sentence(label)} must be true or false", field=label)
    elif kind in ("image", "audio"):
        value = _check_url(value, label)
    elif kind == "images":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValidationFailed(f"{_sentence(label)} must be a non-empty list of URLs", field=label)
        if spec.max_items is not None and len(value) > spec.max_items:
            raise ValidationFailed(f"{_sentence(label)} takes at most {spec.max_items} items", field=label)
        value = [_check_url(item, f"{label}[{i}]") for i, item in enumerate(value)]
    elif kind == "array":
        if not isinstance(value, list):
            raise ValidationFailed(f"{_sentence(label)} must be a list", field=label)
        if spec.max_items is not None and len(value) > spec.max_items:
            raise ValidationFailed(f"{_sentence(label)} takes at most {spec.max_items} items", field=label)
    elif kind == "object" and not isinstance(value, dict):
        raise ValidationFailed(f"{_sentence(label)} must be an object", field=label)
    if spec.enum is not None and value not in spec.enum:
        allowed = ", ".join(str(v) for v in spec.enum)
        raise ValidationFailed(f"{_sentence(label)} must be one of: {allowed}", field=label, allowed=spec.enum)
    return value


def validate_params(spec: ModelSpec, given: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The declared parameters, checked and with defaults filled in; undeclared ones dropped."""
    params: dict[str, Any] = {}
    for name, param in spec.params.items():
        label = _label(prefix, name)
        value = given.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if param.required:
                raise ValidationFailed(f"{_sentence(label)} is required", field=label)
            if param.default is not None:
                params[name] = param.default
            continue
        params[name] = _value(value, param, label)
    return params


def stand_in_params(requested: ModelSpec, stand_in: ModelSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters (checked against `requested`) as a local stand-in takes them.

    A value carries over where the stand-in accepts it; one it cannot take (a 1080p
    resolution) gives way to the stand-in's default. So does the requested model's default
    for a free-form setting such as a voice name, which means nothing to another engine.
    """
    carried: dict[str, Any] = {}
    for name, value in params.items():
        target = stand_in.params.get(name)
        if target is None:
            continue
        declared = requested.params.get(name)
        free_form = target.type == "string" and target.enum is None
        if free_form and declared is not None and declared.default is not None and value == declared.default:
            continue
        try:
            carried[name] = _value(value, target, name)
        except ValidationFailed:
            continue
    return validate_params(stand_in, carried)


def input_urls(spec: ModelSpec, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(url, kind) of every input file the request names, for checks before charging."""
    found: list[tuple[str, str]] = []
    for name, param in spec.params.items():
        value = params.get(name)
        if value is None:
            continue
        if param.type == "images":
            found.extend((url, "image") for url in value)
        elif param.type in ("image", "audio"):
            found.append((value, param.type))
    return found


def _credits(pricing: Pricing, params: dict[str, Any], fast: bool, input_minutes: int) -> int:
    credits = pricing.per_call + pricing.per_input_minute * input_minutes
    if pricing.per_second:
        duration = params.get("duration")
        seconds = float(duration) if isinstance(duration, int | float) else 5.0
        credits += math.ceil(pricing.per_second * seconds)
    if fast and pricing.fast_surcharge_percent:
        credits = math.ceil(credits * (100 + pricing.fast_surcharge_percent) / 100)
    return credits * MILLI


def price(pricing: Pricing, params: dict[str, Any], fast: bool) -> int:
    """What to reserve, in millicredits, at a route's `pricing`.

    Per-second prices use the requested duration; per-input-minute prices (transcription)
    reserve the longest accepted input and are settled to the real length afterwards.
    """
    return _credits(pricing, params, fast, MAX_INPUT_MINUTES)


def settled_price(pricing: Pricing, params: dict[str, Any], fast: bool, extra: dict[str, Any] | None) -> int:
    """The final cost once the output is known (only input-length pricing changes)."""
    duration = (extra or {}).get("duration")
    if not pricing.per_input_minute or not isinstance(duration, int | float):
        return price(pricing, params, fast)
    return _credits(pricing, params, fast, max(1, math.ceil(duration / 60)))
