"""Remote images fetched by the gateway (guard.media.fetch), through a real gateway and `warden
sim`, from a local image server: a served image reaches the node inline, a 404 is a 400 at the
door that never reaches a node, a fetched image the media rules refuse is refused, and with
fetching off a remote URL passes untouched. (The server is on loopback, which the real
resolution refuses, as it must: the test stands in for the resolver, mapping one public-looking
name to it.)"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import media_samples as media
from tests.harness import GatewayThread, SimProcess, http, wait_until
from warden.audit.reader import read_records, record_files, requests

JSON = {"Content-Type": "application/json"}
PNG = media.png(64, 64)
FILES = {"/cat.png": PNG, "/tiny.png": media.png(1, 28)}


class Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # (the standard library names it)
        data = FILES.get(self.path)
        self.send_response(200 if data is not None else 404)
        self.send_header("content-type", "image/png" if data is not None else "text/plain")
        self.send_header("content-length", str(len(data or b"not found")))
        self.end_headers()
        self.wfile.write(data or b"not found")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def images():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://images.example:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def fleet():
    sim = SimProcess(1, "--vllm-version", "0.32.0")
    yield sim
    sim.stop()


def gateway(sim: SimProcess, fetch: bool) -> GatewayThread:
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"media": {
        "fetch": fetch, "timeout": "5s"}}, "recorder": {"flush_interval": "50ms",
                                                         "min_free_disk": 0}})
    fetcher = gw.gateway.guard.fetcher
    if fetcher is not None:
        async def loopback(host: str, port: int) -> list[str]:
            assert host == "images.example"
            return ["127.0.0.1"]

        fetcher.addresses = loopback
    return gw


def ask(gw: GatewayThread, url: str, request_id: str):
    body = {"model": "sim-model", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}}]}]}
    return http("POST", f"{gw.url}/v1/chat/completions", json.dumps(body).encode(),
                {**JSON, "X-Request-Id": request_id})


def recorded(gw: GatewayThread) -> dict:
    gw.wait_idle()
    recorder = gw.gateway.recorder
    gw.call(recorder.flush)
    wait_until(lambda: recorder.written == recorder.handed, what="records written")
    return {r.id: r for r in requests(read_records(record_files(gw.records)))}


def test_remote_images_are_fetched_checked_and_sent_inline(images, fleet):
    gw = gateway(fleet, fetch=True)
    try:
        status, _, body = ask(gw, f"{images}/cat.png", "served")
        assert status == 200, body
        status, _, body = ask(gw, f"{images}/missing.png", "missing")
        error = json.loads(body)["error"]
        assert status == 400 and error["code"] == "media_fetch_failed"
        assert error["param"] == "messages[0].content[1].image_url"
        assert "answered 404" in error["message"]
        status, _, body = ask(gw, f"{images}/tiny.png", "tiny")
        assert status == 400 and "mm-image-too-small" in json.loads(body)["error"]["message"]

        assert gw.metric("warden_guard_decisions_total", 'rule="media-fetch"') == 3
        assert gw.metric("warden_guard_decisions_total", 'rule="mm-image-too-small"') == 1
        seen = fleet.request_ids()[0]
        assert "served" in seen and "missing" not in seen and "tiny" not in seen
        records = recorded(gw)
        sent = json.loads(records["served"].start["forwarded_body"])
        inline = sent["messages"][0]["content"][1]["image_url"]["url"]
        assert inline == "data:image/png;base64," + base64.b64encode(PNG).decode()
        assert records["served"].start["guard"] == ["fetch remote media"]
        assert records["missing"].end["status"] == 400
    finally:
        gw.stop()


def test_with_fetching_off_a_remote_url_passes_untouched(images, fleet):
    gw = gateway(fleet, fetch=False)
    try:
        status, _, _ = ask(gw, f"{images}/missing.png", "not-fetched")
        assert status == 200  # (the sim does not fetch; a real engine would, and fail)
        record = recorded(gw)["not-fetched"]
        assert "forwarded_body" not in record.start and "guard" not in record.start
    finally:
        gw.stop()
