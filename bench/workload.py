"""Workloads for an OpenAI endpoint, built ahead of time (pure: a spec and a seed in, a list of
timed requests out), so a run is reproducible and its offered load is known before it starts.

Arrivals are Poisson, or bursty (gamma inter-arrival times with a coefficient of variation
above 1). Prompt and output lengths are log-normal (long-tailed). A share of requests opens
with one of a few long system prompts (prefix-cache friendly), and a share belongs to
multi-turn sessions, whose later turns repeat the conversation so far.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
         "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu")


@dataclass(frozen=True)
class WorkloadSpec:
    model: str = "sim-model"
    rate: float = 10.0                 # requests per second, on average
    duration: float = 10.0             # seconds of arrivals
    burstiness: float = 1.0            # coefficient of variation of inter-arrivals (1: Poisson)
    prompt_median: int = 64            # words
    prompt_sigma: float = 0.8
    output_median: int = 64            # tokens (max_tokens)
    output_sigma: float = 0.8
    output_cap: int = 1024
    shared_prefix_share: float = 0.5   # share of requests that open with a system prompt
    system_prompts: int = 4
    system_prompt_words: int = 400
    session_share: float = 0.2         # share of arrivals that are turns of multi-turn sessions
    session_turns: int = 4
    stream_share: float = 1.0
    ignore_eos: bool = False           # vLLM's extension: generate max_tokens, EOS or not
    seed: int = 0


@dataclass(frozen=True)
class TimedRequest:
    at: float        # seconds from the start
    body: dict
    session: int | None = None


def build(spec: WorkloadSpec) -> list[TimedRequest]:
    rng = random.Random(spec.seed)
    systems = [_words(rng, spec.system_prompt_words) for _ in range(spec.system_prompts)]
    sessions: dict[int, list[dict]] = {}
    requests, t, next_session = [], 0.0, 0
    while True:
        t += _gap(rng, spec.rate, spec.burstiness)
        if t >= spec.duration:
            return requests
        messages, session = _messages(rng, spec, systems, sessions, next_session)
        if session == next_session:
            next_session += 1
        body = {"model": spec.model, "messages": messages,
                "max_tokens": _lognormal(rng, spec.output_median, spec.output_sigma,
                                         spec.output_cap)}
        if spec.ignore_eos:
            body["ignore_eos"] = True
        if rng.random() < spec.stream_share:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        requests.append(TimedRequest(t, body, session))


def load_trace(path: str | Path, model: str | None = None) -> list[TimedRequest]:
    """A JSONL trace, one request a line: {"at": seconds, "body": {...}}, or {"timestamp":
    seconds, ...} made relative to the earliest. `model` replaces each body's model."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()
               if line.strip()]
    stamps = [r["timestamp"] for r in records if "at" not in r]
    origin = min(stamps) if stamps else 0.0
    requests = []
    for record in records:
        at = record["at"] if "at" in record else record["timestamp"] - origin
        body = dict(record["body"])
        if model is not None:
            body["model"] = model
        requests.append(TimedRequest(float(at), body))
    return sorted(requests, key=lambda r: r.at)


def _messages(rng: random.Random, spec: WorkloadSpec, systems: list[str],
              sessions: dict[int, list[dict]], next_session: int) -> tuple[list[dict], int | None]:
    question = {"role": "user",
                "content": _words(rng, _lognormal(rng, spec.prompt_median, spec.prompt_sigma,
                                                  8 * spec.prompt_median))}
    if sessions and rng.random() < spec.session_share:
        session = rng.choice(sorted(sessions))
        history = sessions[session]
        history += [{"role": "assistant", "content": _words(rng, 20)}, question]
        if len(history) >= 2 * spec.session_turns:
            del sessions[session]
        return list(history), session
    messages = []
    if rng.random() < spec.shared_prefix_share:
        messages.append({"role": "system", "content": rng.choice(systems)})
    messages.append(question)
    if rng.random() < spec.session_share:
        sessions[next_session] = list(messages)
        return messages, next_session
    return messages, None


def _gap(rng: random.Random, rate: float, cv: float) -> float:
    if cv <= 1.0:
        return rng.expovariate(rate)
    shape = 1.0 / (cv * cv)  # gamma with the same mean, more variance: bursts and lulls
    return rng.gammavariate(shape, 1.0 / (rate * shape))


def _lognormal(rng: random.Random, median: int, sigma: float, cap: int) -> int:
    return max(1, min(cap, round(median * math.exp(rng.gauss(0.0, sigma)))))


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))
