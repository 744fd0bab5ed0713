"""The set of backends, keyed by address."""

from __future__ import annotations

from collections.abc import Iterator

from warden.config.schema import Settings
from warden.fleet.backend import Backend


class BackendRegistry:
    def __init__(self, settings: Settings):
        self._by_address = {spec.address: Backend(spec, settings.timeouts)
                            for spec in settings.backends}

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._by_address.values())

    def __len__(self) -> int:
        return len(self._by_address)

    def serving(self, model: str) -> list[Backend]:
        return [b for b in self._by_address.values() if b.serves(model)]

    def models(self) -> set[str]:
        return {m for b in self._by_address.values() for m in b.models}

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
