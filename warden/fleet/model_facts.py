"""A served model's facts as the guard's rules see them (`ModelFacts`): what each backend's
API server told of it (fleet/fact_learner), merged across the backends serving the model,
with what the config sets by hand (`guard.models.<model>`) winning field by field.

Merging is conservative: two backends that disagree give the smaller vocabulary and the
smaller context length (a rule acting on a bound a little too tight errs on the side of the
engine), and the union of their special tokens. A backend that knows nothing of a fact adds
nothing to it; a fact no backend knows and the config does not set stays unknown, and the
rules that need it do not act on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from warden.config.schema import ModelFacts
from warden.fleet.backend import Backend

# The facts, in the order operators see them.
FACT_NAMES = tuple(ModelFacts.model_fields)
CARDS = "GET /v1/models"


@dataclass(frozen=True)
class Learned:
    """One fact as a backend told it, and the endpoint that told it."""

    value: int | tuple[str, ...]
    source: str  # e.g. "POST /detokenize"


@dataclass(frozen=True)
class LearnedModel:
    """What one backend's API server told of one model it serves (its /v1/models card's
    context length is read from the card itself: see `card_length`). `problems`: why a fact
    stayed unknown, per fact name."""

    vocab_size: Learned | None = None
    max_model_len: Learned | None = None
    special_tokens: Learned | None = None
    problems: tuple[tuple[str, str], ...] = ()


def card_length(backend: Backend, model: str) -> int | None:
    """The context length the backend's /v1/models card gives the model, if any."""
    for card in backend.model_cards:
        length = card.get("max_model_len")
        if card.get("id") == model and type(length) is int and length > 0:
            return length
    return None


def backend_facts(backend: Backend, model: str) -> dict[str, Learned]:
    """Each fact one backend knows of the model, with its source."""
    learned = backend.learned_facts.get(model)
    known: dict[str, Learned] = {}
    length = card_length(backend, model)
    if length is not None:
        known["max_model_len"] = Learned(length, CARDS)
    if learned is not None:
        for name in ("vocab_size", "max_model_len", "special_tokens"):
            fact = getattr(learned, name)
            if fact is not None and name not in known:
                known[name] = fact
    return known


def merged_facts(model: str, configured: ModelFacts | None,
                 backends: Sequence[Backend]) -> ModelFacts:
    """The model's facts: the configured fields, else the backends' merged conservatively."""
    vocab: list[int] = []
    lengths: list[int] = []
    specials: set[str] = set()
    for backend in backends:
        known = backend_facts(backend, model)
        for name, values in (("vocab_size", vocab), ("max_model_len", lengths)):
            fact = known.get(name)
            if fact is not None and isinstance(fact.value, int):
                values.append(fact.value)
        special = known.get("special_tokens")
        if special is not None and isinstance(special.value, tuple):
            specials.update(special.value)
    values: dict[str, object] = {"vocab_size": min(vocab, default=None),
                                 "max_model_len": min(lengths, default=None),
                                 "special_tokens": sorted(specials)}
    if configured is not None:
        for name in configured.model_fields_set:  # set by hand: it wins
            values[name] = getattr(configured, name)
    return ModelFacts.model_validate(values)


def describe(model: str, configured: ModelFacts | None, backend: Backend) -> dict[str, dict]:
    """Each fact of the model on one backend, for operators: its value and where it came
    from (`configured`, `learned` with the endpoint, or `unknown` with why, when known)."""
    known = backend_facts(backend, model)
    learned = backend.learned_facts.get(model)
    problems = dict(learned.problems) if learned is not None else {}
    chosen = configured.model_fields_set if configured is not None else set()
    described: dict[str, dict] = {}
    for name in FACT_NAMES:
        fact = known.get(name)
        entry: dict[str, object]
        if configured is not None and name in chosen:
            entry = {"value": _shown(getattr(configured, name)), "source": "configured"}
            if fact is not None:
                entry["learned"] = _shown(fact.value)
                entry["from"] = fact.source
        elif fact is not None:
            entry = {"value": _shown(fact.value), "source": "learned", "from": fact.source}
        else:
            entry = {"value": None, "source": "unknown"}
            if name in problems:
                entry["problem"] = problems[name]
        described[name] = entry
    return described


def _shown(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value
