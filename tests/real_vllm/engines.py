"""Real vLLM engines for the opt-in suite: started here from the CPU build, or yours.

Two ways to get an engine (see the README's "Against a real vLLM"):

- `WARDEN_VLLM_URL` (comma-separated base URLs): servers you run. The tests that only talk to
  an engine use them; the ones that need an engine started with particular flags (a tiny
  queue, few sequences) still start their own, from the CPU build.
- otherwise each engine is started with `../shared/vllm/real-vllm.sh serve` from the CPU build
  that script installed (`real-vllm.sh install` for vLLM 0.32.0, `install024 DIR` for
  0.24.0, `model` for the tiny Llama): `WARDEN_VLLM_VENV`, `WARDEN_VLLM_024_VENV`,
  `WARDEN_VLLM_MODEL` and `WARDEN_VLLM_SCRIPT` say where, the script's own cache by default.

An engine starts in 25-50 s and holds ~3 GB: a module shares one, and no test runs more than
two at once on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import free_port_block
from tests.harness import engine_metric, http

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "warden-real-vllm"
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 300.0  # two engines starting side by side on two cores take minutes


@dataclass(frozen=True)
class Build:
    """One installed vLLM (a venv made by real-vllm.sh) and the model it serves."""

    version: str
    venv: Path

    @property
    def installed(self) -> bool:
        return (self.venv / "bin" / "vllm").exists()


def build(version: str = "0.32.0") -> Build:
    if version == "0.24.0":
        return Build(version, Path(os.environ.get("WARDEN_VLLM_024_VENV", CACHE / "venv024")))
    return Build(version, Path(os.environ.get("WARDEN_VLLM_VENV", CACHE / "venv")))


def script() -> Path:
    return Path(os.environ.get("WARDEN_VLLM_SCRIPT",
                               REPO.parent / "shared" / "vllm" / "real-vllm.sh"))


def model_dir() -> Path:
    return Path(os.environ.get("WARDEN_VLLM_MODEL", CACHE / "tinymodel"))


def own_urls() -> list[str]:
    """The engines named by WARDEN_VLLM_URL, if any."""
    value = os.environ.get("WARDEN_VLLM_URL", "")
    return [url.strip().rstrip("/") for url in value.split(",") if url.strip()]


def missing(version: str = "0.32.0") -> str | None:
    """Why an engine of `version` cannot be started here (None: it can)."""
    if not script().exists():
        return f"{script()} not found (set WARDEN_VLLM_SCRIPT)"
    if not build(version).installed:
        command = "install" if version == "0.32.0" else "install024 DIR"
        return (f"vLLM {version} is not installed at {build(version).venv} (run "
                f"`{script()} {command}`, or set WARDEN_VLLM_VENV / WARDEN_VLLM_024_VENV)")
    if not (model_dir() / "config.json").exists():
        return f"no model at {model_dir()} (run `{script()} model`)"
    return None


class Engine:
    """A vLLM OpenAI server: one this suite started (`start`), or one of yours (`attach`)."""

    def __init__(self, url: str, proc: subprocess.Popen | None = None,
                 log: Path | None = None):
        self.url = url
        self._proc = proc
        self._log = log
        self.model = self._served_model()

    @classmethod
    def start(cls, *flags: str, version: str = "0.32.0") -> Engine:
        reason = missing(version)
        if reason is not None:
            raise RuntimeError(f"cannot start a real vLLM: {reason}")
        port = free_port_block(1)
        log = Path(tempfile.mkstemp(prefix=f"vllm-{port}-", suffix=".log")[1])
        proc = subprocess.Popen(
            ["bash", str(script()), "serve", str(build(version).venv), str(model_dir()),
             str(port), *flags],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {proc.returncode} while starting:\n"
                                   f"{_tail(log)}")
            try:
                if http("GET", f"{url}/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                _stop(proc)
                raise RuntimeError(f"vLLM did not answer /health within {START_TIMEOUT:g}s:\n"
                                   f"{_tail(log)}")
            time.sleep(0.5)  # polling a starting server: nothing to wait on but its port
        return cls(url, proc, log)

    @classmethod
    def attach(cls, url: str) -> Engine:
        return cls(url)

    def _served_model(self) -> str:
        status, _, body = http("GET", f"{self.url}/v1/models")
        assert status == 200, f"{self.url}/v1/models answered {status}"
        return json.loads(body)["data"][0]["id"]

    def version(self) -> str:
        return json.loads(http("GET", f"{self.url}/version")[2])["version"]

    def metric(self, name: str, labels: str = "") -> float:
        return engine_metric(self.url, name, labels)

    def alive(self) -> bool:
        try:
            return http("GET", f"{self.url}/health", timeout=2)[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc)
        if self._log is not None:
            self._log.unlink(missing_ok=True)


def complete(url: str, model: str):
    """A tiny completion request (2 tokens) to `url` (an engine or a gateway): (status,
    headers, body)."""
    body = json.dumps({"model": model, "prompt": "Hi", "max_tokens": 2}).encode()
    return http("POST", f"{url}/v1/completions", body, {"Content-Type": "application/json"},
                timeout=60)


def _stop(proc: subprocess.Popen) -> None:
    """The whole process group: the API server, its EngineCore and its workers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # children that outlived the server
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
