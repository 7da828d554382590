"""Identifiers that sort by the time they were made.

A chat call's reference and a job's id are keys of unique indexes written on every call (the
ledger's (account, reference, kind), the jobs' primary key). Random keys land anywhere in
those B-trees: each commit dirtied a page per row, written to the log and copied back by
the next checkpoint, and with 150,000 rows in the ledger a charge cost twice as much as with
keys that arrive in order (32 µs against 16). Keys that begin with the time land at the end of
the index, where the rows of one commit share their pages.

The time comes first in fixed-width hex, so the text sorts as the time does; 64 random bits
follow, so keys made in the same millisecond, in any number of processes, do not collide
and cannot be guessed.
"""

from __future__ import annotations

import secrets
import time

TIME_DIGITS = 12
"""Milliseconds since 1970 in hex: 12 digits last until the year 10889."""


def sortable_id(prefix: str) -> str:
    """`prefix`, the time in milliseconds (12 hex digits), then 16 random hex digits."""
    return f"{prefix}{time.time_ns() // 1_000_000:0{TIME_DIGITS}x}{secrets.token_hex(8)}"
