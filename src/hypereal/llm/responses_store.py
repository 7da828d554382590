"""Responses kept for `previous_response_id`: the conversation each response ended.

Held in process memory, bounded and expiring, and scoped to the account that created it
(another account's id is simply not found). A deployment with several API processes needs
sticky sessions for `previous_response_id`, or clients that resend the whole input, as
Codex CLI does by default.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from hypereal.errors import NotFound
from hypereal.llm.types import Message

MAX_STORED = 10_000
TTL_SECONDS = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class Stored:
    account_id: str
    messages: list[Message]
    expires: float


class ResponseStore:
    def __init__(self, capacity: int = MAX_STORED, ttl_seconds: float = TTL_SECONDS) -> None:
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self._items: OrderedDict[str, Stored] = OrderedDict()

    def put(self, response_id: str, account_id: str, messages: list[Message]) -> None:
        self._items[response_id] = Stored(account_id, messages, time.monotonic() + self.ttl_seconds)
        self._items.move_to_end(response_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, response_id: str, account_id: str) -> list[Message]:
        stored = self._items.get(response_id)
        if stored is None or stored.account_id != account_id or stored.expires < time.monotonic():
            raise NotFound(f"Previous response '{response_id}' not found", field="previous_response_id")
        return list(stored.messages)

    def known(self, response_id: str) -> bool:
        return response_id in self._items
