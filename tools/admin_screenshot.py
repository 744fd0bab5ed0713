"""The README's picture of the admin page (docs/images/admin.png), made from a real gateway in
front of `warden sim` with some traffic, a few streams in flight, and one engine killed by the
simulator's crash trigger (so an incident, its suspects and the quarantine show). Run after a
change to the page:

    python -m tools.admin_screenshot [--out docs/images/admin.png]

Needs Chromium (Debian's, at /usr/bin/chromium) and Playwright (the `test` extra); takes
about half a minute."""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.client import HTTPException
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.harness import GatewayThread, SimProcess, http, wait_until

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
JSON = {"Content-Type": "application/json"}
POISON = {"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
          "structured_outputs": {}}  # the sim's crash trigger
KEYS = {"search-web": "wk-search-web-000000000000000000000",
        "search-api": "wk-search-api-000000000000000000000",
        "batch-nightly": "wk-batch-nightly-00000000000000000"}
AUTH = {"mode": "required",
        "tenants": {"search": {"models": ["sim-*"]}, "batch": {"models": ["sim-*"]}},
        "keys": [{"id": key_id, "value": value, "tenant": key_id.split("-")[0]}
                 for key_id, value in KEYS.items()]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "admin.png"))
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="traffic before the picture (default: 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="warden-screenshot-") as records:
        sim = SimProcess(4, "--token-delay", "0.03", "--output-tokens", "300", "--ttft", "0.05",
                         "--restart-after", "-1")
        gw = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "dry_run"},
                            "auth": AUTH,
                            "recorder": {"dir": records, "flush_interval": "50ms",
                                         "min_free_disk": 0}})
        stop = threading.Event()
        try:
            workers = [threading.Thread(target=traffic, args=(gw.url, n, stop), daemon=True)
                       for n in range(6)]
            for worker in workers:
                worker.start()
            time.sleep(args.seconds / 2)  # (a tool, not a test: the picture needs history)
            _, headers, _ = http("POST", f"{gw.url}/v1/chat/completions",
                                 json.dumps(POISON).encode(),
                                 {**JSON, "X-Request-Id": "chatcmpl-poison-7f3a",
                                  "Authorization": f"Bearer {KEYS['batch-nightly']}"})
            drained = (sim.node_of(headers) + 1) % 4  # (one that is alive)
            http("POST", f"{gw.url}/admin/backends/node-{drained}/drain")
            time.sleep(args.seconds / 2)
            wait_until(lambda: gw.in_flight() >= 2, timeout=30, what="streams in flight")
            shoot(gw.url, Path(args.out))
        finally:
            stop.set()
            gw.stop()
            sim.stop()
    print(f"wrote {args.out}")
    return 0


def traffic(url: str, worker: int, stop: threading.Event) -> None:
    """Requests one after another: short streams, some long ones, a few mistakes."""
    key = list(KEYS.values())[worker % len(KEYS)]
    n = 0
    while not stop.is_set():
        n += 1
        body = {"model": "sim-model" if n % 17 else "no-such-model", "stream": worker < 4,
                "max_tokens": 200 if worker < 2 else 8,
                "messages": [{"role": "user", "content": f"worker {worker} asks {n}"}]}
        try:
            http("POST", f"{url}/v1/chat/completions", json.dumps(body).encode(),
                 {**JSON, "X-Request-Id": f"req-{worker}-{n}", "Authorization": f"Bearer {key}"},
                 timeout=30)
        except (OSError, HTTPException):
            continue  # (a connection cut by the crash or at the end)


def shoot(url: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/admin/")
        page.wait_for_selector("#fleet tbody tr[data-backend]")
        page.wait_for_selector(".incident", timeout=20_000)
        page.wait_for_selector("#requests tr[data-request]")
        time.sleep(2.5)  # (one more refresh, so the chart has the last seconds)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


if __name__ == "__main__":
    raise SystemExit(main())
