"""The set of backends, keyed by address."""

from __future__ import annotations

from collections.abc import Iterator

from warden.config.schema import Settings
from warden.fleet.backend import Backend


class BackendRegistry:
    """Backends by address, and an index model → backends serving it.

    The index is read per request and rebuilt only when a backend's model set changes
    (`reindex`, called by discovery)."""

    def __init__(self, settings: Settings):
        self._by_address = {spec.address: Backend(spec, settings.timeouts, settings.health)
                            for spec in settings.backends}
        # model -> the backends serving it (read per request: a plain dict, not a method;
        # its lists are shared, never modified in place)
        self.serving: dict[str, list[Backend]] = {}
        self.reindex()

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
