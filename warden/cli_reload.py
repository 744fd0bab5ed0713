"""`warden reload`: make a running gateway re-read its config file, through its admin API
(`POST /admin/reload`), and say what came of it. Unlike a signal sent by process name, it
reaches the one gateway asked for (`--url`, or the `listen` address of `-c FILE`)."""

from __future__ import annotations

import argparse
import sys

from warden.cli_admin import add_where, call, gateway_url

COMMAND = "warden reload"


def add_commands(commands: argparse._SubParsersAction) -> None:
    reload = commands.add_parser("reload", help="make a running gateway re-read its config "
                                 "file (as SIGHUP does) and print what changed or why not")
    add_where(reload)
    reload.set_defaults(command=_reload)


def _reload(args: argparse.Namespace) -> int:
    gateway = gateway_url(args)
    if gateway is None:
        print(f"{COMMAND}: nothing was reloaded (the gateway is reached at the config's "
              "`listen`; or give --url)", file=sys.stderr)
        return 2
    answer = call(COMMAND, f"{gateway}/admin/reload", post=True, expect=("result",),
                  tls=args.admin_tls)
    if answer is None:
        return 2
    return report(answer)


def report(answer: dict) -> int:
    """Print the admin API's answer; 0 if the config was reloaded, 1 if not."""
    source = answer.get("config") or "the config"
    if answer.get("result") != "ok":
        print(f"{source}: not reloaded; the running config stays:", file=sys.stderr)
        for problem in answer.get("problems") or []:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{source}: reloaded ({answer.get('backends')} backends, policy "
          f"{answer.get('policy')})")
    waiting = answer.get("restart_needed") or []
    if waiting:
        print(f"changed, but waiting for a restart: {', '.join(waiting)}")
    return 0
