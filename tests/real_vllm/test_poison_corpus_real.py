"""The poison corpus against real engines behind Warden's default guard.

Each poison line holds what it did, sent straight, to each vLLM version
(`"engines": {"0.11.0": "killed", ...}`, written by `python -m tests.real_vllm.probe_corpus`).
For each version: every line recorded as `killed` or `hung` is sent through a gateway in
front of an engine of that version, and the engine must still serve afterwards; the lines the
guard did not stop are listed in the failure. Every neighbour (a legitimate look-alike) is sent
through it too and must reach the engine untouched (the engine's own 400 is allowed, and
printed). Last, one recorded killer sent straight to the engine kills it: the guard was what
kept it up."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.harness import GatewayThread, wait_until
from tests.real_vllm.corpus import DEADLY, Answer, Line, corpus, describe, fate, send
from tests.real_vllm.engines import BUILDS, Engine

BACKEND = "engine"


def killers(version: str) -> list[Line]:
    """The poison lines recorded as killing or hanging an engine of `version`."""
    return [line for line in corpus() if line.poison and line.outcome(version) in DEADLY]


def neighbours() -> list[Line]:
    return [line for line in corpus() if not line.poison]


VERSIONS = sorted(BUILDS)
KILLED_VERSIONS = [version for version in VERSIONS if killers(version)]


class Stack:
    """An engine of one version and a gateway with the default guard in front of it; both
    replaced when a request kills or hangs the engine."""

    def __init__(self, version: str):
        self.version = version
        self.engine, self.gateway = self._start()

    def _start(self) -> tuple[Engine, GatewayThread]:
        engine = Engine.start(version=self.version)
        assert engine.version().startswith(self.version), engine.version()
        gateway = GatewayThread({"backends": [{"name": BACKEND, "url": engine.url}]})
        # The rules that apply depend on the version: wait until the gateway knows it.
        wait_until(lambda: gateway.call(lambda: gateway.gateway.backends.named(BACKEND)
                                        .vllm_version), timeout=60,
                   what="the gateway to learn the engine's version")
        return engine, gateway

    def decisions(self) -> Counter[tuple[str, str, str]]:
        return self.gateway.call(lambda: Counter(self.gateway.gateway.guard.decisions))

    def through(self, line: Line) -> tuple[Answer, list[str], str]:
        """`line` sent through the gateway: the answer, the guard's decisions on it
        ("rule-id:action"), and the engine's fate (alive, killed or hung)."""
        before = self.decisions()
        answer = send(self.gateway.url, line.item["endpoint"],
                      line.body_for(self.engine.model), self.engine)
        acted = sorted(f"{rule}:{action}" for (rule, action, _), n
                       in (self.decisions() - before).items() for _ in range(n))
        return answer, acted, fate(self.engine, answer)

    def replace(self) -> None:
        self.stop()
        self.engine, self.gateway = self._start()

    def stop(self) -> None:
        self.gateway.stop()
        self.engine.stop()


@pytest.fixture(scope="module")
def stack(request):
    started = Stack(request.param)
    yield started
    started.stop()


def guard_rejected(answer: Answer) -> bool:
    try:
        return json.loads(answer.body)["error"]["code"] == "rejected_by_guard"
    except (ValueError, KeyError, TypeError):
        return False


@pytest.mark.parametrize("stack", VERSIONS, indirect=True)
def test_neighbours_pass_the_guard_untouched(stack):
    touched, printed = [], [f"\nneighbours through the guard, vLLM {stack.version}:"]
    for line in neighbours():
        answer, acted, became = stack.through(line)
        if acted or guard_rejected(answer):
            touched.append(f"{line.where} {line.item['source']}: {acted} {describe(answer)}")
        if answer.status != 200 or became != "alive":
            # The engine's own refusal is allowed: said here, with what the engine said.
            printed.append(f"  {line.where} {line.item['source']}: engine {became}, "
                           f"{describe(answer)}")
        if became != "alive":
            stack.replace()
    print("\n".join(printed))
    assert not touched, "the guard touched legitimate requests:\n" + "\n".join(touched)
    assert stack.engine.alive()


@pytest.mark.parametrize("stack", KILLED_VERSIONS, indirect=True)
def test_recorded_killers_do_not_reach_the_engine(stack):
    missed, printed = [], [f"\nrecorded killers through the guard, vLLM {stack.version}:"]
    for line in killers(stack.version):
        answer, acted, became = stack.through(line)
        verdict = "stopped" if became == "alive" else f"NOT STOPPED (engine {became})"
        printed.append(f"  {line.where} {line.item['source']} "
                       f"(straight: {line.outcome(stack.version)}): {verdict}; guard "
                       f"{', '.join(acted) or 'did nothing'}; {describe(answer)}")
        if became != "alive":
            missed.append(f"{line.where} {line.item['source']}: engine {became} "
                          f"(guard: {', '.join(acted) or 'did nothing'})")
            stack.replace()
    print("\n".join(printed))
    assert not missed, (f"{len(missed)} recorded killers of vLLM {stack.version} passed the "
                        "guard:\n" + "\n".join(missed))
    assert stack.engine.alive()


@pytest.mark.parametrize("stack", KILLED_VERSIONS, indirect=True)
def test_without_the_guard_a_recorded_killer_kills_it(stack):
    """The control, last for each version: so the engine lived above because of the guard,
    not because these requests are harmless to it."""
    recorded = killers(stack.version)
    line = next((each for each in recorded if each.outcome(stack.version) == "killed"),
                recorded[0])
    answer = send(stack.engine.url, line.item["endpoint"], line.body_for(stack.engine.model),
                  stack.engine)
    assert fate(stack.engine, answer) == line.outcome(stack.version), \
        f"{line.where} {line.item['source']}: {describe(answer)}"
