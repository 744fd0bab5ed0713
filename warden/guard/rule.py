"""What a guard rule is: an id, where it comes from, the vLLM versions it applies to, what it
looks at, and what it does (pure data; the rules themselves live in rules_*.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from warden.config.schema import GuardLimitsSpec, ModelFacts
from warden.fleet.deployment import Deployment
from warden.fleet.versions import parse_version

NORMALIZE, REJECT, ROUTE = "normalize", "reject", "route"


@dataclass(frozen=True)
class Finding:
    message: str
    param: str | None


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know besides the body: the endpoint, the model's facts (vocabulary
    size, context length; either may be unknown) and the configured bounds. `memo` is one
    request's scratch space, where rules that read the same thing (a parsed and checked JSON
    schema, the inline media's headers) keep it for the next: a context lives for one request
    only."""

    path: str
    facts: ModelFacts
    limits: GuardLimitsSpec
    memo: dict[str, object] = field(default_factory=dict)


Find = Callable[[dict, RuleContext], "Finding | None"]
FixInContext = Callable[[dict, RuleContext], None]


@dataclass(frozen=True)
class Rule:
    id: str
    description: str                 # what it catches (the README's rule table; Markdown)
    source: str                      # the vLLM issue, PR, advisory or measurement
    before: tuple[int, int, int] | None  # applies to vLLM versions below this (None: all)
    action: str                      # NORMALIZE | REJECT | ROUTE
    keys: frozenset[str]             # top-level body keys that can trigger it
    find: Find
    fix: Callable[[dict], None] | None = None  # NORMALIZE: rewrites the body in place
    # What triggers it in what nests (media parts, message text), as well as `keys`: names
    # (`input_audio`), suffixes (`*_url`) and characters (`<`), see guard/triggers.py.
    nested: tuple[str, ...] = ()
    needs_vocab: bool = False        # acts only for models whose vocabulary size is known
    always: bool = False             # can match a body without any of `keys` (custom rules)
    harm: str = "this request is known to crash vLLM engines"  # told to the client
    remedy: str = ""                 # NORMALIZE: what the rewrite does, for the rule table
    # NORMALIZE when the rewrite depends on the model's facts or the bounds (the vocabulary
    # size, the special tokens): used instead of `fix`.
    fix_in_context: FixInContext | None = None
    # Also triggered by a raw body of at least this many bytes (0: never), for what every
    # request carries but only a large one can get wrong (the prompt's length).
    min_body: int = 0
    # The schema validation refuses what this finds (strictly typed): built only without it.
    covered_by_validation: bool = False
    # The backends it applies to by what they are (fleet/deployment), besides their version:
    # None, every backend. A deployment fact that is unknown does not make a backend
    # affected, so such a rule acts only where a backend is known (declared or learned) to be.
    affects: Callable[[Deployment], bool] | None = None
    # The first vLLM version it applies to (None: every version below `before`): a bug that
    # came with a feature (a parser, a parameter) spares the versions before it.
    since: tuple[int, int, int] | None = None

    @property
    def can_fix(self) -> bool:
        return self.fix is not None or self.fix_in_context is not None

    def apply_fix(self, body: dict, ctx: RuleContext) -> None:
        if self.fix_in_context is not None:
            self.fix_in_context(body, ctx)
        elif self.fix is not None:
            self.fix(body)

    def applies_to(self, version: str | None) -> bool:
        """Whether `since <= version < before`. Unknown versions are assumed affected: a rule
        errs on the side of the engine."""
        if version is None or (self.before is None and self.since is None):
            return True
        parsed = parse_version(version)
        return (self.before is None or parsed < self.before) \
            and (self.since is None or parsed >= self.since)
