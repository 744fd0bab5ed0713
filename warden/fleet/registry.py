"""The set of backends, keyed by address."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from warden.config.schema import Settings
from warden.fleet.backend import Backend, pool_limits

if TYPE_CHECKING:
    from warden.exchange import Exchange


class BackendRegistry:
    """Backends by address, and an index model → backends serving it.

    The index is read per request and rebuilt only when a backend's model set changes
    (`reindex`, called by discovery)."""

    def __init__(self, settings: Settings, previous: BackendRegistry | None = None,
                 recent_of: Callable[[str], deque[Exchange]] | None = None):
        """`previous`: the registry a config reload replaces. A backend it holds under the
        same name and URL is the same engine: kept, with its live state, and reconfigured.
        `recent_of(name)`: where a new backend keeps the exchanges last sent to it (the
        incident detector's, which outlive a backend's removal; fleet.recent)."""
        kept = {(b.name, b.address): b for b in previous} if previous is not None else {}
        now = time.monotonic()
        self._by_address: dict[str, Backend] = {}
        # What can fail (a CA bundle that no longer loads) is made first, before any kept
        # backend takes a new setting: a reload that raises leaves the running fleet whole.
        contexts: dict = {}   # (one TLS context per CA bundle: pool_limits)
        limits = [pool_limits(spec, settings.timeouts, contexts) for spec in settings.backends]
        for spec, its_limits in zip(settings.backends, limits, strict=True):
            backend = kept.get((spec.name, spec.address))
            if backend is None:
                backend = Backend(spec, settings.timeouts, settings.health,
                                  recent_of(spec.name) if recent_of is not None else None,
                                  its_limits)
            else:
                backend.reconfigure(spec, settings.timeouts, settings.health, now, its_limits)
            self._by_address[spec.address] = backend
        # model -> the backends serving it (read per request: a plain dict, not a method;
        # its lists are shared, never modified in place)
        self.serving: dict[str, list[Backend]] = {}
        self.reindex()

    def added_since(self, previous: BackendRegistry) -> list[Backend]:
        """Its backends that `previous` did not hold (new engines, not yet discovered)."""
        old = set(map(id, previous))
        return [b for b in self if id(b) not in old]

    def removed_since(self, previous: BackendRegistry) -> list[Backend]:
        """The backends of `previous` it no longer holds."""
        new = set(map(id, self))
        return [b for b in previous if id(b) not in new]

    def reindex(self) -> None:
        serving: dict[str, list[Backend]] = {}
        for backend in self._by_address.values():
            for model in backend.models:
                serving.setdefault(model, []).append(backend)
        self.serving = serving

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._by_address.values())

    def named(self, name: str) -> Backend | None:
        return next((b for b in self._by_address.values() if b.name == name), None)

    def __len__(self) -> int:
        return len(self._by_address)

    def models(self) -> set[str]:
        return set(self.serving)

    def model_cards(self) -> list[dict]:
        """The union of the fleet's models, one card per id (the first backend's card wins)."""
        cards: dict[str, dict] = {}
        for backend in self._by_address.values():
            for card in backend.model_cards:
                if card.get("id") in backend.models:
                    cards.setdefault(card["id"], card)
            for model in sorted(backend.models):
                cards.setdefault(model, {"id": model, "object": "model", "created": 0,
                                         "owned_by": "vllm"})
        return list(cards.values())

    def close(self) -> None:
        for backend in self._by_address.values():
            backend.pool.close()
