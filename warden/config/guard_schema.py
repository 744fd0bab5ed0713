"""The guard's settings: schema validation, the rules' bounds and facts, custom rules, the
quarantine (re-exported by warden.config.schema with the rest)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)

from warden.config.spec import Duration, Size, Spec, outside_checks, validated_with

# Template switches in vLLM's documentation and examples (thinking on or off, reasoning
# effort, embedding instructions) and the generation flags every HF template reads.
# chat_template_kwargs keys that are no template variable but an argument of the tokenizer's
# apply_chat_template, which vLLM merged them into: a request could switch tokenization on,
# replace the template or the tools (GHSA-69j4-grxj-j64p, GHSA-6fvq-23cw-5628). Never passed.
RESERVED_TEMPLATE_KWARGS = (
    "tokenize", "chat_template", "tools", "documents", "conversation", "messages",
    "return_dict", "return_assistant_tokens_mask", "padding", "truncation", "max_length",
    "return_tensors", "tokenizer_kwargs", "processor_kwargs",
)


class ValidationSpec(Spec):
    """Request bodies checked against the OpenAI schema plus vLLM's extras (guard/validate)."""

    enabled: bool = True
    # vLLM adds parameters every release: unknown fields pass unless told otherwise.
    unknown_fields: Literal["pass", "reject"] = "pass"
    max_messages: int = Field(default=4096, ge=1)
    # Content parts in all of a request's messages together: each costs the media rules a
    # walk, and a body of many tiny parts is cheap to send (100 MB of them by default).
    max_content_parts: int = Field(default=4096, ge=1)
    max_stop: int = Field(default=64, ge=1)
    max_stop_length: int = Field(default=4096, ge=1)
    max_tools: int = Field(default=512, ge=1)
    max_logit_bias: int = Field(default=4096, ge=1)
    max_depth: int = Field(default=64, ge=2, le=512)


class ModelFacts(Spec):
    """What the rules need to know of a served model. Each is learned from the backends
    where vLLM says it (fleet/model_facts) and may be set here by hand, which wins; None (or
    empty) is unknown, and a rule that needs an unknown fact does not act on it."""

    vocab_size: int | None = Field(default=None, ge=1)  # token ids are 0..vocab_size-1
    max_model_len: int | None = Field(default=None, ge=1)  # prompt + output, in tokens
    # Special and added token strings (turn markers, media placeholders): text that the
    # tokenizer turns into control tokens when a client writes it.
    special_tokens: list[str] = []
    # What the model takes besides text ("image", "video", "audio"); None: unknown.
    modalities: list[str] | None = None
    # The engine's structured-output backend ("xgrammar", "guidance", "outlines", ...).
    structured_output_backend: str | None = None
    # The chat_template_kwargs keys a request may set for this model (its template's
    # variables); None: guard.limits.chat_template_kwargs.
    chat_template_kwargs: list[str] | None = None


class GuardLimitsSpec(Spec):
    """Bounds of the structured-output, resource-amplifier and multimodal rules."""

    max_n: int = Field(default=64, ge=1)            # n and best_of
    max_generated_tokens: int = Field(default=2**20, ge=1)  # sequences x max_tokens
    max_logprobs: int = Field(default=20, ge=0)     # vLLM's own --max-logprobs default
    max_schema_depth: int = Field(default=24, ge=2)  # nesting of a structured-output schema
    max_schema_combinators: int = Field(default=4, ge=1)  # anyOf/oneOf/allOf nested
    # Copies a count may ask for: a schema's maxLength/minItems/..., a regex's x{m,n} (nested
    # ones multiplied). Engines that expand repetitions build that many states; 100000 is
    # the largest maxLength seen in real agent tool schemas (a file's content).
    max_repetition: int = Field(default=100_000, ge=1)
    # Subschemas walked in one schema: bounds the guard's own work (50000 take ~0.1 s);
    # a thousand tools of fifty subschemas each stay under it.
    max_schema_nodes: int = Field(default=50_000, ge=1)
    # A choice list compiles into one alternative per choice: 5000 took xgrammar 0.15 s,
    # 20000 took 3.7 s (measured; it grows faster than the count).
    max_choices: int = Field(default=4096, ge=1)
    max_choice_bytes: Size = 2**20          # all choices' characters together
    # A grammar or structural tag, in characters: compiled with no timeout (vLLM's regexes
    # have one, its grammars do not); real grammars (SQL, JSON) are tens of KB.
    max_grammar_bytes: Size = 2**20
    # How long the optional xgrammar check (installed with warden[xgrammar]) may take over
    # one request's specs before the request is refused as one the engine would hang on.
    xgrammar_timeout: Duration = Field(default=1.0, gt=0)
    max_media_items: int = Field(default=16, ge=0)
    max_media_bytes: Size = 20 * 2**20              # one inline (data:) media item
    # When set, media URLs must be on these hosts (or their subdomains).
    allowed_media_domains: list[str] | None = None
    # The most characters one token of a served model spells: a text prompt has at least
    # len(text) / this many tokens. Generous on purpose (an under-estimate never refuses a
    # prompt that fits); vLLM reads the exact figure from the vocabulary, and setting yours
    # here catches more.
    max_chars_per_token: int = Field(default=256, ge=1)
    # Prompt logprobs make the engine hold prompt x vocabulary float32 logits at once,
    # outside the memory it profiled at start (vllm-project/vllm#5907): a request needing
    # more is refused. 4 GiB: about the 10% of a 40 GB card gpu_memory_utilization 0.9
    # leaves free (vLLM 0.20 died allocating 3.8 GiB of them, gonka-ai/gonka#1171).
    max_prompt_logprobs_bytes: Size = 4 * 2**30
    # The chat_template_kwargs keys a request may set (models without their own list in
    # guard.models); unset: any template variable but the reserved ones
    # (RESERVED_TEMPLATE_KWARGS). A value must be a string (up to
    # max_chat_template_kwarg_chars), number, boolean or null, or a list of up to 64 of them
    # (gpt-oss's builtin_tools).
    chat_template_kwargs: list[str] | None = None
    max_chat_template_kwarg_chars: int = Field(default=4096, ge=1)
    # Inline images, judged by their headers. A few KB of PNG can claim 40000x40000 pixels
    # (4.8 GB decoded as RGB). This is Pillow's own refusal (DecompressionBombError) and
    # vLLM's VLLM_MAX_IMAGE_PIXELS default; some vLLM versions lifted Pillow's bound for
    # every model served, so nothing else stopped it there.
    max_image_pixels: int = Field(default=178_956_970, ge=1)
    # The Qwen2-VL family's image processor refuses a long side over 200 times the short one.
    max_image_aspect_ratio: float = Field(default=200.0, ge=1)
    # A 1 px side killed engines (mllama, the Idefics3 family: GHSA-grg2-63fw-f2qr). The
    # Qwen2-VL family's processor refuses a side under 28 px (14 px patches merged 2x2) with
    # a request's error, not a death: set 28 for a fleet of those models, to answer at the
    # door; a 16 px icon is a fine image for others.
    min_image_side: int = Field(default=2, ge=1)
    # Inline video and audio whose container header (MP4/MOV/M4A, WAV, FLAC) gives a longer
    # duration are refused: decoding takes the API server's CPU and memory. Audio: vLLM's own
    # bound since it decoded 25 MB of Opus into 15 GB (VLLM_MAX_AUDIO_DECODE_DURATION_S);
    # set 30 for Qwen2-Audio or Whisper on a vLLM that does not truncate their clips (0.29
    # did not, and a longer clip killed its engine; 0.26 and 0.34 truncate).
    max_video_seconds: Duration = Field(default=3600.0, gt=0)
    max_audio_seconds: Duration = Field(default=600.0, gt=0)
    # The frames of a video/jpeg data URL: vLLM reads num_frames of them (32 by default) from
    # 0.19; before, it decoded every one (thousands exhausted its memory).
    max_video_frames: int = Field(default=32, ge=1)


class MediaFetchSpec(Spec):
    """The gateway fetches remote images itself (`fetch: true`) and forwards them inline, so
    that an image that cannot be fetched or read is a 400 at the door, not an engine's error.
    Every URL and redirect is judged as guard rule mm-private-url judges media URLs (and
    `guard.limits.allowed_media_domains`), and every address it resolves to must be public."""

    fetch: bool = False
    timeout: Duration = Field(default=10.0, gt=0)   # all of one request's fetches, at most
    # One image's bytes, and all of a request's images together, at most (none:
    # guard.limits.max_media_bytes).
    max_bytes: Size | None = Field(default=None, ge=1)
    max_redirects: int = Field(default=3, ge=0)


class CustomRuleSpec(Spec):
    """An operator's own rule: every condition of `match` holds -> `action`.

    `match` maps a path (`a.b`, `messages.*.role`, `stop.0`) to a predicate: one of
    exists, eq, ne, gt, ge, lt, le, in, matches (a regex), longer_than."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = ""
    match: dict[str, dict[str, object]] = Field(min_length=1)
    action: Literal["reject", "normalize", "route"]
    delete: list[str] = []              # normalize: paths removed
    set: dict[str, object] = {}         # normalize: paths given a value
    message: str | None = None          # reject: what the client is told

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, data: object, handler: ModelWrapValidatorHandler,
                    info: ValidationInfo) -> CustomRuleSpec:
        """Whether the rule can work is the guard's to say (guard/spec_checks.py): it passes
        its check in the validation's context (see `SpecChecks`)."""
        return validated_with(data, handler, outside_checks(cls, info))


class QuarantineSpec(Spec):
    """Fingerprints implicated in an engine's death, held back (guard/quarantine)."""

    enabled: bool = True
    # Its own mode: it acts on deaths that happened, so it enforces even while the rules run
    # in dry_run (set dry_run here to only report it too).
    mode: Literal["enforce", "dry_run"] = "enforce"
    # memory: one replica, kept in `file`; redis: shared by replicas.
    store: Literal["memory", "redis"] = "memory"
    # The memory store's file (it survives a restart); none: <recorder.dir>/quarantine.json,
    # whether or not the recorder is enabled.
    file: str | None = Field(default=None, min_length=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "warden:"
    refresh: Duration = Field(default=1.0, gt=0)   # how often replicas re-read Redis
    timeout: Duration = Field(default=2.0, gt=0)   # one Redis operation, at most
    max_implicated: int = Field(default=16, ge=1)  # fingerprints struck per incident
    # An entry that is not blocked is lifted after `hold_for`; a blocked one after `block_for`
    # (0: until an operator lifts it).
    hold_for: Duration = Field(default=600.0, gt=0)
    block_for: Duration = Field(default=0.0, ge=0)
    # A request of an entry under probation waits this long, at most, for its probe's
    # outcome; at most `max_waiting` wait at once (the rest get 503 and Retry-After).
    probe_wait: Duration = Field(default=10.0, gt=0)
    max_waiting: int = Field(default=256, ge=0)
    # With its store down: `open` serves with what this gateway knows; `closed` refuses
    # every proxied request (503) until the store is back.
    fail_mode: Literal["open", "closed"] = "open"

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        """Parsed as the Redis client will parse it at start (a mistake here used to pass
        the check and stop `serve` with a traceback)."""
        from redis.connection import parse_url

        try:
            parse_url(value)
        except ValueError as e:
            raise ValueError(f"not a Redis URL ({e}; e.g. redis://127.0.0.1:6379/0)") from None
        return value


class GuardSpec(Spec):
    """The crash-rule pack (warden/guard): enforce it, only report it, or neither."""

    mode: Literal["enforce", "dry_run", "off"] = "enforce"
    disable: list[str] = []  # rule ids
    # A rule's action overridden: e.g. {so-falsy-constraint: route} sends such requests only
    # to backends that are safe for the rule (a version it does not apply to, or `safe_for`).
    actions: dict[str, Literal["reject", "normalize", "route"]] = {}
    validation: ValidationSpec = ValidationSpec()
    limits: GuardLimitsSpec = GuardLimitsSpec()
    media: MediaFetchSpec = MediaFetchSpec()
    models: dict[str, ModelFacts] = {}
    custom: list[CustomRuleSpec] = []
    quarantine: QuarantineSpec = QuarantineSpec()

    @model_validator(mode="wrap")
    @classmethod
    def _known_rules(cls, data: object, handler: ModelWrapValidatorHandler,
                     info: ValidationInfo) -> GuardSpec:
        """The rule ids that `disable`, `actions` and `custom` name are the guard's to check
        (guard/spec_checks.py): it passes its check in the validation's context (see
        `SpecChecks`)."""
        return validated_with(data, handler, outside_checks(cls, info))
