"""The poison corpus (tests/data/poison/*.jsonl) against real engines: each line sent with a
bound on its whole answer, the engine's fate judged after it, and what each vLLM version did
written back into the line as `"engines": {"0.11.0": "killed", ...}`.

Outcomes of one poison line against one version:
- killed: the engine died (its server exited, or /health answered 503 or refused);
- hung: no answer within the bound, or /health answered but a plain chat no longer did, or
  the engine's memory passed the cap while the request ran;
- refused: a 4xx answer (or an error body with a 4xx code), the engine alive;
- survived: a 2xx or 5xx answer (or a connection dropped), the engine alive.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from pathlib import Path

from tests.harness import http
from tests.real_vllm.engines import Engine

CORPUS = Path(__file__).resolve().parents[1] / "data" / "poison"
JSON = {"Content-Type": "application/json"}
CORPUS_MODEL = "m"  # the model the corpus's bodies name: the served one is put in its place
ANSWER_TIMEOUT = 60.0  # a poison request unanswered this long has hung the engine
FATE_TIMEOUT = 30.0  # how long an engine that no longer serves gets to show it died
MEMORY_CAP = 10 * 2**30  # an engine (~3 GB idle) grown past this is being exhausted
DEADLY = ("killed", "hung")


@dataclass
class Line:
    """One request of the corpus, where it is, and its fields as written."""

    path: Path
    number: int  # 1-based
    item: dict

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.number}"

    @property
    def poison(self) -> bool:
        return self.item["kind"] == "poison"

    def outcome(self, version: str) -> str | None:
        return self.item.get("engines", {}).get(version)

    def body_for(self, model: str) -> dict:
        """The body with the corpus's model name replaced by the served one."""
        body = dict(self.item["body"])
        if body.get("model") == CORPUS_MODEL:
            body["model"] = model
        return body


def corpus() -> list[Line]:
    lines = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for number, text in enumerate(path.read_text().splitlines(), 1):
            if text.strip():
                lines.append(Line(path, number, json.loads(text)))
    return lines


def record(line: Line, version: str, outcome: str) -> None:
    """Write `outcome` for `version` into the line's file: the other versions' results, every
    other field and the order of lines kept; the file replaced whole (never half written)."""
    texts = line.path.read_text().splitlines()
    item = json.loads(texts[line.number - 1])
    item["engines"] = dict(sorted({**item.get("engines", {}), version: outcome}.items()))
    texts[line.number - 1] = json.dumps(item, ensure_ascii=False)
    partial = line.path.with_suffix(".jsonl.partial")
    partial.write_text("\n".join(texts) + "\n")
    os.replace(partial, line.path)
    line.item = item


@dataclass
class Answer:
    status: int | None  # None: no answer within the bound; 0: the connection failed
    body: bytes = b""
    seconds: float = 0.0
    memory_exceeded: bool = False


def send(url: str, endpoint: str, body: dict, engine: Engine | None = None,
         timeout: float = ANSWER_TIMEOUT) -> Answer:
    """POST `body` and read the whole answer, for `timeout` seconds in all. While it runs,
    `engine`'s memory is watched: past MEMORY_CAP the request is abandoned."""
    parts = urllib.parse.urlsplit(url)
    # (The socket's own timeout is longer than the bound: the bound is measured here.)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=timeout + 30)
    result: dict[str, object] = {}

    def exchange() -> None:
        try:
            conn.request("POST", endpoint, json.dumps(body, ensure_ascii=False).encode(), JSON)
            response = conn.getresponse()
            result["answer"] = (response.status, response.read())
        except (OSError, HTTPException) as e:
            result["error"] = e

    started = time.monotonic()
    thread = threading.Thread(target=exchange, daemon=True)
    thread.start()
    exceeded = False
    while thread.is_alive() and time.monotonic() - started < timeout:
        thread.join(0.5)  # also the pace at which the engine's memory is read
        if engine is not None and engine.resident_bytes() > MEMORY_CAP:
            exceeded = True
            break
    seconds = time.monotonic() - started
    if thread.is_alive():
        if conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)  # the thread ends with an error
        thread.join(10)
        return Answer(None, seconds=seconds, memory_exceeded=exceeded)
    if isinstance(result.get("error"), TimeoutError):
        return Answer(None, seconds=seconds)
    if "error" in result:
        return Answer(0, repr(result["error"]).encode(), seconds)
    status, content = result["answer"]  # type: ignore[misc]
    return Answer(status, content, seconds)


def plain_chat(engine: Engine) -> int:
    """The status of a small legitimate chat completion (0: no answer)."""
    body = json.dumps({"model": engine.model, "max_tokens": 2,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    try:
        return http("POST", f"{engine.url}/v1/chat/completions", body, JSON, timeout=30)[0]
    except OSError:
        return 0


def health(engine: Engine) -> int:
    """/health's status; 0 refused or reset, -1 no answer in 5 s (a blocked server)."""
    try:
        return http("GET", f"{engine.url}/health", timeout=5)[0]
    except TimeoutError:
        return -1
    except urllib.error.URLError as e:
        return -1 if isinstance(e.reason, TimeoutError) else 0
    except OSError:
        return 0


def dead(engine: Engine) -> bool:
    """The signs of a dead vLLM: its server exited, /health 503 (0.11) or refused (0.24+)."""
    return engine.exited() or health(engine) in (0, 503)


def fate(engine: Engine, answer: Answer) -> str:
    """What became of the engine after `answer`: killed, hung or alive. An engine that keeps
    serving a plain chat is alive; one whose chat fails is watched until it shows it died,
    for FATE_TIMEOUT at most (vLLM's API server exits 1-4 s after its EngineCore died)."""
    if answer.status is None:
        return "killed" if dead(engine) else "hung"
    deadline = time.monotonic() + FATE_TIMEOUT
    while True:
        if engine.exited():
            return "killed"
        status = health(engine)
        if status in (0, 503):
            return "killed"
        if status == 200 and plain_chat(engine) == 200:
            return "alive"
        if time.monotonic() > deadline:
            return "hung"
        time.sleep(0.5)  # polling for the death signs: nothing to wait on but the server


def outcome(engine: Engine, answer: Answer) -> str:
    """The line's result for this engine's version (see the module's docstring)."""
    became = fate(engine, answer)
    if became != "alive":
        return became
    return "refused" if refusal(answer) else "survived"


def refusal(answer: Answer) -> bool:
    """A 4xx answer, or an OpenAI error envelope with a 4xx code under another status (vLLM
    0.11 answers an embeddings request to a generative model with 200 and such a body)."""
    if answer.status is not None and 400 <= answer.status < 500:
        return True
    try:
        code = json.loads(answer.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(code, int) and 400 <= code < 500


def describe(answer: Answer) -> str:
    """One line on an answer, for the logs and reports."""
    if answer.status is None:
        why = "memory past the cap" if answer.memory_exceeded else "no answer"
        return f"{why} after {answer.seconds:.0f}s"
    text = answer.body[:160].decode(errors="replace").replace("\n", " ")
    return f"{answer.status} in {answer.seconds:.1f}s {text}"
