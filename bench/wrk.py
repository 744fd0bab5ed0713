"""Run wrk with a POST body and read its figures."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def post_script(workdir: Path, body: str, headers: dict[str, str] | None = None,
                name: str = "post") -> Path:
    script = workdir / f"{name}.lua"
    escaped = body.replace("\\", "\\\\").replace('"', '\\"')
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    script.write_text('wrk.method = "POST"\n'
                      f'wrk.body = "{escaped}"\n'
                      'wrk.headers["Content-Type"] = "application/json"\n' + extra)
    return script


def run_wrk(url: str, script: Path, connections: int, seconds: float, core: int) -> WrkResult:
    out = subprocess.run(
        ["taskset", "-c", str(core), "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s",
         "--latency", "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(requests, rps, _latency(out, "50%"), _latency(out, "99%"), errors)


def _latency(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * _UNITS[unit]


# Appended to a POST script: wrk prints these percentiles (µs) at the end, p99.9 among them
# (its --latency table stops at p99).
TAIL_DONE = """
done = function(summary, latency, requests)
  io.write(string.format("TAIL %d %d %d\\n", latency:percentile(50), latency:percentile(99),
                         latency:percentile(99.9)))
end
"""


@dataclass
class TailResult:
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    errors: int


def run_wrk_tail(url: str, script: Path, connections: int, seconds: float,
                 core: int) -> TailResult:
    """wrk with a script that ends in `TAIL_DONE` (tail_script): p50, p99 and p99.9."""
    out = subprocess.run(
        ["taskset", "-c", str(core), "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s",
         "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    p50, p99, p999 = (int(v) / 1e3 for v in re.search(r"TAIL (\d+) (\d+) (\d+)",
                                                       out).groups())
    return TailResult(rps, p50, p99, p999, errors)


def tail_script(workdir: Path, body: str) -> Path:
    script = post_script(workdir, body, name="tail")
    script.write_text(script.read_text() + TAIL_DONE)
    return script
