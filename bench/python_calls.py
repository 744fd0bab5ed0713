"""Which compiled functions the data path enters through the interpreter, per round.

A compiled (mypyc) function called from compiled code through a `Protocol`, a bound method
kept in an attribute, or a value whose static type mypyc does not know, is entered through its
Python wrapper (`CPyPy_*`): the method looked up by name, the arguments parsed and boxed,
~300 instructions a call where a call through a native class's table costs a few. This runs a
`bench.instructions` kind under callgrind for two round counts and prints, per round, each
such entry: how many times, and the instructions under it. Callbacks from httptools and uvloop
and `call_soon` are entered this way by nature; any other line is a candidate for a native
path (see docs/architecture.md, the seams). Run on the compiled build:

    python -m bench.python_calls [--kind request] [--rounds 600,3000]

Needs valgrind (Debian package).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from pathlib import Path

from bench.instructions import KINDS, callgrind_runs
from warden import compiled

_NAMED = re.compile(r"\((\d+)\)(?: (.*))?")


def python_entries(path: Path) -> tuple[Counter[str], Counter[str]]:
    """(calls, inclusive instructions) of each compiled function entered through its Python
    wrapper from outside another wrapper, over one callgrind output file."""
    names: dict[str, str] = {}
    calls: Counter[str] = Counter()
    under: Counter[str] = Counter()
    caller = callee = ""
    counting: str | None = None   # the wrapper whose call's cost line comes next
    for line in path.read_text(errors="replace").splitlines():
        if counting is not None:
            fields = line.split()
            if len(fields) >= 2:
                under[counting] += int(fields[1])
            counting = None
        elif line.startswith(("fn=", "cfn=")):
            key, _, rest = line.partition("=")
            named = _NAMED.match(rest)
            if named is None:
                continue
            ident, name = named.groups()
            if name:
                names[ident] = name.split("'")[0]
            if key == "fn":
                caller = names.get(ident, ident)
            else:
                callee = names.get(ident, ident)
        elif line.startswith("calls=") and callee.startswith("CPyPy_") \
                and not caller.startswith("CPyPy_"):
            calls[callee] += int(line[6:].split()[0])
            counting = callee
    return calls, under


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="request", choices=KINDS)
    parser.add_argument("--rounds", default="600,3000", help="two round counts")
    args = parser.parse_args()
    low, high = sorted(int(n) for n in args.rounds.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        few, many = (python_entries(out)
                     for out in callgrind_runs(args.kind, (low, high), Path(tmp)))
    rounds = high - low
    print(f"{args.kind}: compiled functions entered through Python, per round "
          f"({compiled.describe()})")
    for name, count in sorted(many[0].items(), key=lambda item: -item[1]):
        per_round = (count - few[0][name]) / rounds
        if per_round >= 0.5:
            print(f"{per_round:6.1f} calls  {(many[1][name] - few[1][name]) / rounds:10,.0f} "
                  f"instructions under them  {name.removeprefix('CPyPy_')}")


if __name__ == "__main__":
    main()
