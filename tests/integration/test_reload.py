"""Config reload without loss: a new runtime swapped in under 100 open streams, backend state
kept for backends that stay, a removed backend's streams finishing, a bad config refused
(SIGHUP and a watched file, through `warden serve`)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading

from openai import OpenAI

from bench.procs import free_port_block
from tests.harness import GatewayThread, SimProcess, http, serve, wait_until

MESSAGES = [{"role": "user", "content": "Tell me a long story."}]
STREAMS = 100
TOKENS = 120


def admin_backends(url: str) -> dict:
    _, _, body = http("GET", f"{url}/admin/backends")
    return json.loads(body)


def open_streams(client: OpenAI, count: int, first_chunk: threading.Barrier,
                 results: list) -> list[threading.Thread]:
    """`count` streams, each in a thread: read the first chunk, meet at the barrier, read the
    rest. Each appends (content chunks, last finish_reason, error or None) to `results`."""

    def one() -> None:
        chunks, finish, error = 0, None, None
        try:
            stream = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                    stream=True)
            for n, chunk in enumerate(stream):
                if n == 0:
                    first_chunk.wait(timeout=60)
                if chunk.choices:
                    chunks += bool(chunk.choices[0].delta.content)
                    finish = chunk.choices[0].finish_reason or finish
        except Exception as e:  # the assertion below names it
            error = repr(e)
        results.append((chunks, finish, error))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_reload_under_100_streams_keeps_them_and_the_state_of_kept_backends():
    # The streams' two nodes in one process, the node the reload adds in another (a process
    # busy streaming would be slow to answer the new node's discovery).
    sim = SimProcess(2, "--token-delay", "0.05", "--output-tokens", str(TOKENS))
    new_sim = SimProcess(1)
    nodes = [*sim.backends_config(), {"name": "node-2", "url": new_sim.url(0)}]
    first = {"backends": nodes[:2], "routing": {"policy": "round_robin"},
             "scrape": {"interval": "200ms"}}
    gw = GatewayThread(first)
    try:
        kept = gw.gateway.backends.named("node-0")
        removed = gw.gateway.backends.named("node-1")
        wait_until(lambda: kept.load is not None, what="node-0's first scrape")
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        barrier = threading.Barrier(STREAMS + 1)
        results: list = []
        threads = open_streams(client, STREAMS, barrier, results)
        barrier.wait(timeout=60)  # every stream has its first chunk: all in flight now
        # Their engines pause (the sim's hang fault) until the reload has been checked: the
        # streams stay open however slow this machine is (racing their 6 s lost on a loaded
        # one).
        for node in range(2):
            assert http("POST", f"{sim.url(0)}/sim/fault?node={node}&mode=hang")[0] == 200
        assert gw.in_flight() == STREAMS
        assert http("POST", f"{gw.url}/admin/backends/node-0/drain")[0] == 200
        sent_before = kept.requests_sent

        # node-1 out, node-2 in, node-0 reweighted; another policy.
        second = {"backends": [{**nodes[0], "weight": 7}, nodes[2]],
                  "routing": {"policy": "least_request"}, "scrape": {"interval": "200ms"}}
        assert gw.reload(second) == []
        assert gw.in_flight() == STREAMS  # none ended, none was cut

        after = gw.gateway.backends
        assert after.named("node-0") is kept and kept.weight == 7
        assert kept.draining and kept.requests_sent == sent_before and kept.load is not None
        assert after.named("node-1") is None and after.named("node-2") is not None
        listing = admin_backends(gw.url)
        assert listing["policy"] == "least_request"
        assert [b["name"] for b in listing["backends"]] == ["node-0", "node-2"]
        # New requests: node-0 drains (its state survived), node-1 is gone: node-2 only.
        for _ in range(3):
            with client.chat.completions.with_streaming_response.create(
                    model="sim-model", messages=MESSAGES, max_tokens=2) as response:
                assert response.headers["x-upstream-addr"] == new_sim.url(0).split("//")[1]
                response.parse()
        for node in range(2):
            assert http("POST", f"{sim.url(0)}/sim/fault?node={node}&mode=recover")[0] == 200

        for thread in threads:
            thread.join(timeout=60)
        assert len(results) == STREAMS
        errors = [r[2] for r in results if r[2] is not None]
        assert not errors, errors[:3]
        assert all(r == (TOKENS, "length", None) or r == (TOKENS, "stop", None)
                   for r in results), {r for r in results}
        gw.wait_idle()
        assert kept.in_flight == 0 and removed.in_flight == 0
        # The removed backend's connections closed once its streams ended.
        assert removed.pool.open_count == 0
        assert gw.metric("warden_config_reloads_total", 'result="ok"') == 1
    finally:
        gw.stop()
        sim.stop()
        new_sim.stop()


def test_reload_reports_what_waits_for_a_restart():
    sim = SimProcess(1)
    gw = GatewayThread({"backends": sim.backends_config()})
    try:
        waiting = gw.reload({"backends": sim.backends_config(), "listen": "127.0.0.1:1"})
        assert waiting == ["listen"]
        assert http("GET", f"{gw.url}/ready")[0] == 200  # still on its first port
    finally:
        gw.stop()
        sim.stop()


def test_serve_reloads_on_sighup_and_on_a_changed_file_and_refuses_a_bad_config(tmp_path):
    sim = SimProcess(2)
    # (expose_upstream: which node answered is read from X-Upstream-Addr.)
    backend = "expose_upstream: true\nbackends:\n  - {{name: {name}, url: '{url}'}}\n" \
              "reload: {{watch: {watch}, interval: 100ms}}\n"
    stderr = tmp_path / "stderr"
    proc, url = serve(backend.format(name="node-0", url=sim.url(0), watch="false"), tmp_path,
                      stderr=stderr.open("w"))
    config = tmp_path / "warden.yaml"
    listen = config.read_text().splitlines()[0]

    def names() -> list[str]:
        return [b["name"] for b in admin_backends(url)["backends"]]

    try:
        assert names() == ["node-0"]
        # A bad config (not watched: only the signal reloads): refused, the reason logged,
        # the running config stays.
        config.write_text(f"{listen}\nbackends:\n  - {{name: node-1, url: 'not a url'}}\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: metric(url, 'warden_config_reloads_total{result="failed"}') == 1,
                   what="the failed reload")
        wait_until(lambda: "backends[0].url: not a URL" in stderr.read_text(),
                   what="the reason in the log")
        assert names() == ["node-0"] and http("GET", f"{url}/ready")[0] == 200

        # A good one, on SIGHUP; it turns watching on.
        config.write_text(f"{listen}\n" + backend.format(name="node-1", url=sim.url(1),
                                                          watch="true"))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: names() == ["node-1"], what="the SIGHUP reload")
        status, headers, _ = http("POST", f"{url}/v1/completions",
                                  json.dumps({"model": "sim-model", "prompt": "hi",
                                              "max_tokens": 2}).encode(),
                                  {"Content-Type": "application/json"})
        assert status == 200 and sim.node_of(headers) == 1

        # Then a change with no signal: the watcher reloads it.
        config.write_text(f"{listen}\n" + backend.format(name="node-0", url=sim.url(0),
                                                          watch="true"))
        wait_until(lambda: names() == ["node-0"], what="the watcher's reload")
        assert metric(url, 'warden_config_reloads_total{result="ok"}') == 2
        assert metric(url, 'warden_config_reloads_total{result="failed"}') == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sim.stop()


class SlowStart:
    """`warden serve` whose start waits on a backend that never answers (its models), with
    `watch` on or off: the test acts once the start is under way (the backend was asked)."""

    def __init__(self, tmp_path, watch: bool):
        self.hung = socket.create_server(("127.0.0.1", 0))
        self.asked: list[socket.socket] = []
        threading.Thread(target=lambda: self.asked.append(self.hung.accept()[0]),
                         daemon=True).start()
        self.sim = SimProcess(1)
        port = free_port_block(1)
        self.config = tmp_path / "warden.yaml"
        self.port, self.watch = port, watch
        self.write("node-0")
        self.proc = subprocess.Popen([sys.executable, "-m", "warden", "serve", "-c",
                                      str(self.config)], cwd=tmp_path,
                                     stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: self.asked, what="the start to ask the hung backend its models")

    def write(self, name: str) -> None:
        """The config, its first backend named `name`."""
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\nbackends:\n"
            f"  - {{name: {name}, url: '{self.sim.url(0)}'}}\n"
            f"  - {{name: hung, url: 'http://127.0.0.1:{self.hung.getsockname()[1]}'}}\n"
            "timeouts: {connect: 2s}\n"
            f"reload: {{watch: {str(self.watch).lower()}, interval: 100ms}}\n")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            assert self.proc.wait(timeout=20) == 0
        finally:
            self.sim.stop()
            self.hung.close()


def test_a_sighup_while_serve_is_starting_is_a_reload_once_started_not_its_end(tmp_path):
    """SIGHUP's default action ends a process; `warden serve` takes it from its first moment
    (a `systemctl reload` or logrotate's during a slow start left the gateway down)."""
    start = SlowStart(tmp_path, watch=False)
    try:
        start.proc.send_signal(signal.SIGHUP)                 # mid-start
        wait_until(lambda: metric(start.url, 'warden_config_reloads_total{result="ok"}') == 1,
                   timeout=20, what="the reload, once started")
        assert start.proc.poll() is None
    finally:
        start.stop()


def test_a_file_changed_while_serve_is_starting_is_applied_once_started(tmp_path):
    """The watcher begins from the file as it is at the end of the start: a change made
    during it was its starting point, and never applied."""
    start = SlowStart(tmp_path, watch=True)
    try:
        start.write("node-renamed")   # mid-start
        wait_until(lambda: "node-renamed" in [b["name"] for b in admin_backends_or_none(
            start.url)], timeout=20, what="the change, once started")
    finally:
        start.stop()


def admin_backends_or_none(url: str) -> list[dict]:
    try:
        return admin_backends(url)["backends"]
    except OSError:  # (not listening yet)
        return []


def metric(url: str, line_start: str) -> float:
    try:
        _, _, body = http("GET", f"{url}/metrics")
    except OSError:  # (not listening yet)
        return 0.0
    for line in body.decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
