"""The poison corpus (tests/data/poison/*.jsonl) through a real gateway with the default guard,
in front of a simulated engine whose version it cannot learn (so every rule applies) and which
never dies (so every request gets an answer to judge).

A line is one request: `{"source", "kind": "poison" | "neighbour", "endpoint", "body"}`. A
poison request is stopped when the guard rejects it (a 400 from the guard) or rewrites it
(normalize) — the engine never sees it as sent; a neighbour is a legitimate request next to a
poison one and must reach the engine untouched. The shares are printed and must be the ones
the README states.
"""

from __future__ import annotations

import re
from pathlib import Path

import openai
import orjson

from tests.harness import GatewayThread, SimProcess
from warden.audit.reader import read_records, record_files, requests

CORPUS = Path(__file__).resolve().parent.parent / "data" / "poison"
README = Path(__file__).resolve().parents[2] / "README.md"
MODEL = "m"


def corpus() -> list[dict]:
    lines = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                item = orjson.loads(line)
                item["where"] = f"{path.name}:{number}"
                lines.append(item)
    return lines


def send(client: openai.OpenAI, gateway: str, item: dict, request_id: str) -> tuple[int, str]:
    """POST the body as it is (the SDK's raw request: no client-side checks); the status and
    the error's code (a success is read as text, which any 2xx answer is)."""
    try:
        client.post(f"{gateway}{item['endpoint']}", body=item["body"], cast_to=str,
                    options={"headers": {"X-Request-Id": request_id}})
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return e.status_code, str(body.get("code") or "")
    return 200, ""


def test_the_corpus_is_well_formed():
    items = corpus()
    assert items, "no corpus"
    for item in items:
        assert item["kind"] in ("poison", "neighbour"), item["where"]
        assert item["endpoint"].startswith("/"), item["where"]
        assert isinstance(item["body"], dict) and item["source"], item["where"]


def test_the_default_guard_stops_the_poison_and_passes_the_neighbours(tmp_path):
    items = corpus()
    sim = SimProcess(1, "--hide-version", "--no-crash-triggers", "--model", MODEL,
                     "--token-delay", "0", "--output-tokens", "2")
    gw = GatewayThread({"backends": sim.backends_config(), "recorder": {"dir": str(tmp_path)}})
    try:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0,
                               timeout=30)
        statuses = {f"corpus-{n}": send(client, gw.url, item, f"corpus-{n}")
                    for n, item in enumerate(items)}
    finally:
        gw.stop()
        sim.stop()
    records = {r.id: r for r in requests(read_records(record_files(tmp_path)))}
    stopped, passed, wrong = [], [], []
    for n, item in enumerate(items):
        rid = f"corpus-{n}"
        notes = (records[rid].start or {}).get("guard") or [] if rid in records else []
        status, code = statuses[rid]
        rejected = status == 400 and any(note.startswith("rejected") for note in notes)
        # (a path the gateway never forwards: refused before any rule, with no record)
        refused = status == 403 and code == "forbidden"
        acted = rejected or refused or any(note.startswith(("normalized", "routed"))
                                           for note in notes)
        if item["kind"] == "poison":
            (stopped if acted else wrong).append(item)
        elif not notes and statuses[rid][0] == 200:
            passed.append(item)
        else:
            wrong.append(item)
    poison = sum(1 for item in items if item["kind"] == "poison")
    neighbours = len(items) - poison
    print(f"\npoison corpus: {len(stopped)} of {poison} stopped; {len(passed)} of {neighbours} "
          "legitimate look-alikes passed untouched")
    for item in wrong:
        print(f"  not as expected: {item['kind']} {item['where']} {item['source']}")
    assert len(passed) == neighbours, "a legitimate look-alike was touched or failed"
    stated = re.search(r"stops\s+\*\*(\d+) of (\d+)\*\*\s+poison requests.*?passes\s+\*\*(\d+) of "
                       r"(\d+)\*\*", README.read_text(), re.S)
    assert stated is not None, "the README does not state the corpus figures"
    assert tuple(map(int, stated.groups())) == (len(stopped), poison, len(passed), neighbours)
