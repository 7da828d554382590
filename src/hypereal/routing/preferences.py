"""A caller's provider preferences, as OpenRouter's users know them.

    "provider": {
        "order": ["anthropic", "openai"],   providers to try first, in this order
        "only": ["anthropic"],              no other provider
        "ignore": ["openai"],               never this one
        "allow_fallbacks": false,           no provider beyond those in `order` (without an
                                            `order`: beyond the first one planned)
        "sort": "price" | "latency"         cheapest first, or fastest to answer lately
    }

Names are the catalog's provider entries (`GET /api/v1/models/{id}` lists a model's). A
request may carry them in its body (every generation and chat body, as the top-level key
`provider`, which is never forwarded upstream), and a key may carry a default that a
request's own preferences replace. Anything malformed, or a name the catalog does not
know, is a 400 naming the field.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from hypereal.errors import ValidationFailed

FIELD = "provider"
Sort = Literal["price", "latency"]
LISTS = ("order", "only", "ignore")
MAX_NAMES = 32


@dataclass(frozen=True, slots=True)
class Preferences:
    order: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    sort: Sort | None = None

    @classmethod
    def stored(cls, value: dict[str, Any] | None) -> Preferences | None:
        """Preferences written by `public`, checked when they were stored."""
        if not value:
            return None
        lists = {name: tuple(value.get(name) or ()) for name in LISTS}
        return cls(**lists, allow_fallbacks=value.get("allow_fallbacks", True), sort=value.get("sort"))

    def public(self) -> dict[str, Any]:
        """As a caller would write them, leaving out what is at its default."""
        shown: dict[str, Any] = {name: list(getattr(self, name)) for name in LISTS if getattr(self, name)}
        if not self.allow_fallbacks:
            shown["allow_fallbacks"] = False
        if self.sort is not None:
            shown["sort"] = self.sort
        return shown


def take(body: dict[str, Any], known: Collection[str], default: Preferences | None = None) -> Preferences | None:
    """The preferences `body` carries, taken out of it so that no upstream ever sees them;
    `default` (the key's) when it carries none."""
    if FIELD not in body:
        return default
    return parse(body.pop(FIELD), known) or default


def parse(value: Any, known: Collection[str], where: str = FIELD) -> Preferences | None:
    """`value` (the body's `provider`) checked against the catalog's provider names `known`;
    None when it is absent or null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationFailed(
            f"{where} must be an object with order, only, ignore, allow_fallbacks or sort", field=where
        )
    unknown = sorted(set(value) - {*LISTS, "allow_fallbacks", "sort"})
    if unknown:
        raise ValidationFailed(
            f"{where}.{unknown[0]} is not a preference; use order, only, ignore, allow_fallbacks or sort",
            field=f"{where}.{unknown[0]}",
        )
    lists = {name: _names(value.get(name), known, f"{where}.{name}") for name in LISTS}
    allow = value.get("allow_fallbacks", True)
    if not isinstance(allow, bool):
        raise ValidationFailed(f"{where}.allow_fallbacks must be true or false", field=f"{where}.allow_fallbacks")
    sort = value.get("sort")
    if sort is not None and sort not in ("price", "latency"):
        raise ValidationFailed(f"{where}.sort must be 'price' or 'latency'", field=f"{where}.sort")
    return Preferences(lists["order"], lists["only"], lists["ignore"], allow, sort)


def _names(value: Any, known: Collection[str], where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_NAMES or not all(isinstance(item, str) for item in value):
        raise ValidationFailed(f"{where} must be a list of at most {MAX_NAMES} provider names", field=where)
    for index, name in enumerate(value):
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            guess = f"; did you mean '{close[0]}'?" if close else ""
            raise ValidationFailed(f"{where}[{index}]: unknown provider '{name[:60]}'{guess}", field=where)
    return tuple(dict.fromkeys(value))
