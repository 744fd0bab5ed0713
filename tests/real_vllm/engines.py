"""Real vLLM engines for the opt-in suite: started here from the CPU build, or yours.

Two ways to get an engine (see the README's "Against a real vLLM"):

- `WARDEN_VLLM_URL` (comma-separated base URLs): servers you run. The tests that only talk to
  an engine use them; the ones that need an engine started with particular flags (a tiny
  queue, few sequences) still start their own, from the CPU build.
- otherwise each engine is started with `../shared/vllm/real-vllm.sh serve` from the CPU build
  that script installed (`real-vllm.sh install` for vLLM 0.32.0, `install024 DIR` for
  0.24.0, `model` for the tiny Llama), or for 0.11.0 by `install_vllm_011.sh` beside this
  file: `WARDEN_VLLM_VENV`, `WARDEN_VLLM_024_VENV`, `WARDEN_VLLM_011_VENV`,
  `WARDEN_VLLM_MODEL` and `WARDEN_VLLM_SCRIPT` say where, the script's own cache by default.

An engine starts in 25-50 s and holds ~3 GB: a module shares one, and no test runs more than
two at once on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from pathlib import Path

from bench.procs import free_port_block
from tests.harness import GatewayThread, engine_metric, http, wait_until

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


# Each version the suite starts: where its venv is (environment variable, default), and the
# command that installs it.
BUILDS = {
    "0.32.0": ("WARDEN_VLLM_VENV", "venv", "{script} install"),
    "0.24.0": ("WARDEN_VLLM_024_VENV", "venv024", "{script} install024 DIR"),
    "0.11.0": ("WARDEN_VLLM_011_VENV", "venv011", "tests/real_vllm/install_vllm_011.sh DIR"),
}


def build(version: str = "0.32.0") -> Build:
    variable, default, _ = BUILDS[version]
    return Build(version, Path(os.environ.get(variable, CACHE / default)))


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
        variable, _, command = BUILDS[version]
        return (f"vLLM {version} is not installed at {build(version).venv} (run "
                f"`{command.format(script=script())}`, or set {variable})")
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
    def start(cls, *flags: str, version: str = "0.32.0", core: int | None = None) -> Engine:
        """`core`: run the whole engine (API server, EngineCore, its OMP threads) on that
        CPU alone, so that a loaded engine cannot starve another one's API server."""
        reason = missing(version)
        if reason is not None:
            raise RuntimeError(f"cannot start a real vLLM: {reason}")
        port = free_port_block(1)
        log = Path(tempfile.mkstemp(prefix=f"vllm-{port}-", suffix=".log")[1])
        command = ["bash", str(script()), "serve", str(build(version).venv), str(model_dir()),
                   str(port), *flags]
        env = None
        if core is not None:
            command = ["taskset", "-c", str(core), *command]
            # vLLM binds its OMP threads to every core by itself ("auto"): to this one only.
            env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": str(core)}
        proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
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

    def exited(self) -> bool:
        """Whether the server this suite started has exited (one of yours: never known)."""
        return self._proc is not None and self._proc.poll() is not None

    def resident_bytes(self) -> int:
        """Resident memory of the server and its children (its process group: the API
        server, EngineCore, workers); 0 for one of yours."""
        if self._proc is None:
            return 0
        pages = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self._proc.pid:  # its process group
                    pages += int(fields[21])
        return pages * os.sysconf("SC_PAGE_SIZE")

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc)
        if self._log is not None:
            self._log.unlink(missing_ok=True)


@contextlib.contextmanager
def started(*flags: str, count: int = 2):
    """`count` engines started with `flags`, each on a core of its own (measured: two
    engines sharing both cores, one kept full, left the other's API server seconds late to
    answer /health, /v1/models, even a completion), stopped after."""
    cores = os.cpu_count() or 1
    engines = [Engine.start(*flags, core=i % cores) for i in range(count)]
    try:
        yield engines
    finally:
        for engine in engines:
            engine.stop()


def discovered(gateway: GatewayThread) -> None:
    """Wait for the gateway to know every engine's models and version (a starting engine can
    miss the first poll's deadline on two busy cores; the next poll is 10 s later)."""
    def known() -> bool:
        return gateway.call(lambda: all(b.models and b.vllm_version
                                        for b in gateway.gateway.backends))
    wait_until(known, timeout=60, what="the gateway to discover every engine")


def complete(url: str, model: str):
    """A tiny completion request (2 tokens) to `url` (an engine or a gateway): (status,
    headers, body)."""
    body = json.dumps({"model": model, "prompt": "Hi", "max_tokens": 2}).encode()
    return http("POST", f"{url}/v1/completions", body, {"Content-Type": "application/json"},
                timeout=60)


class Backlog:
    """Keeps an engine busy: `slots` completions (`body`, without its model) sent straight
    to it, each sent again as soon as it ends, until `release` closes them (vLLM then aborts
    them)."""

    def __init__(self, engine: Engine, body: dict, slots: int = 2):
        self._url = urllib.parse.urlsplit(engine.url)
        self._body = json.dumps({"model": engine.model, **body})
        self._open: set[HTTPConnection] = set()
        self._lock = threading.Lock()
        self._released = False
        self._threads = [threading.Thread(target=self._keep_one, daemon=True)
                         for _ in range(slots)]
        for thread in self._threads:
            thread.start()

    def _keep_one(self) -> None:
        while True:
            conn = HTTPConnection(self._url.hostname, self._url.port, timeout=120)
            with self._lock:
                if self._released:
                    return
                self._open.add(conn)
            try:
                conn.request("POST", "/v1/completions", self._body,
                             {"Content-Type": "application/json"})
                conn.getresponse().read()
            except (OSError, HTTPException):
                pass  # released: its connection was closed under it
            finally:
                with self._lock:
                    self._open.discard(conn)
                conn.close()

    def release(self) -> None:
        with self._lock:
            self._released = True
            for conn in self._open:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=30)


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
