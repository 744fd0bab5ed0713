"""Send each poison line of the corpus straight to a real vLLM engine of one version, one at a
time, and write what it did to the engine into the line (`"engines": {VERSION: outcome}`, see
tests/real_vllm/corpus.py). A killed or hung engine is replaced before the next line.

    python -m tests.real_vllm.probe_corpus --version 0.11.0 [--source ID ...] [--again]

Resumable: lines that already hold a result for the version are skipped (unless --again).
A full run takes tens of minutes: each death costs an engine start (25-50 s), each hang the
answer bound (60 s) and a start.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.real_vllm.corpus import DEADLY, Line, corpus, describe, health, outcome, record, send
from tests.real_vllm.engines import BUILDS, Engine


def started(version: str) -> Engine:
    began = time.monotonic()
    engine = Engine.start(version=version)
    served = engine.version()
    if not served.startswith(version):
        engine.stop()
        raise RuntimeError(f"asked for vLLM {version}, the engine says {served}")
    print(f"  (engine {served} up at {engine.url} in {time.monotonic() - began:.0f}s)",
          flush=True)
    return engine


def chosen(version: str, sources: list[str], again: bool) -> list[Line]:
    return [line for line in corpus() if line.poison
            and (not sources or line.item["source"] in sources)
            and (again or line.outcome(version) is None)]


def probe(version: str, lines: list[Line]) -> dict[str, int]:
    """Each line against an engine of `version`; the count of each outcome."""
    counts: dict[str, int] = {}
    engine: Engine | None = None
    previous: Line | None = None
    try:
        for index, line in enumerate(lines, 1):
            if engine is not None and (engine.exited() or health(engine) != 200):
                # A death that showed only after the previous line's result was written.
                print(f"  ! the engine was found dead before {line.where}; the line before "
                      f"({previous.where if previous else '-'}) may have killed it late",
                      flush=True)
                engine.stop()
                engine = None
            if engine is None:
                engine = started(version)
            answer = send(engine.url, line.item["endpoint"], line.body_for(engine.model),
                          engine)
            result = outcome(engine, answer)
            record(line, version, result)
            counts[result] = counts.get(result, 0) + 1
            print(f"[{index}/{len(lines)}] {line.where} {line.item['source']}: {result} "
                  f"({describe(answer)})", flush=True)
            previous = line
            if result in DEADLY:
                engine.stop()
                engine = None
    finally:
        if engine is not None:
            engine.stop()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", required=True, choices=sorted(BUILDS))
    parser.add_argument("--source", action="append", default=[],
                        help="only the poison lines of this source (repeatable)")
    parser.add_argument("--again", action="store_true",
                        help="probe lines that already hold a result for this version too")
    args = parser.parse_args(argv)
    lines = chosen(args.version, args.source, args.again)
    print(f"vLLM {args.version}: {len(lines)} poison lines to probe", flush=True)
    began = time.monotonic()
    counts = probe(args.version, lines)
    print(f"vLLM {args.version}: {counts} in {time.monotonic() - began:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
