"""`warden requests list/abort`: the requests a running gateway has in flight, and ending one,
through its admin API. Arguments and printing only."""

from __future__ import annotations

import argparse
import json
import urllib.parse

from warden.cli_admin import add_where, call, gateway_url

COMMAND = "warden requests"


def add_commands(commands: argparse._SubParsersAction) -> None:
    requests = commands.add_parser("requests", help="the requests in flight; end one")
    actions = requests.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="each request in flight: id, tenant, model, "
                                 "backend, age, events so far")
    listing.add_argument("--json", action="store_true", help="the admin API's answer as is")
    listing.set_defaults(command=_list)
    abort = actions.add_parser("abort", help="end one: its backend stops working on it and "
                               "its client is told")
    abort.add_argument("request_id", metavar="ID", help="as `requests list` shows it")
    abort.set_defaults(command=_abort)
    for parser in (listing, abort):
        add_where(parser)


def _list(args: argparse.Namespace) -> int:
    gateway = gateway_url(args)
    answer = call(COMMAND, f"{gateway}/admin/requests",
                  expect=("requests",), tls=args.admin_tls) if gateway else None
    if answer is None:
        return 2
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for r in answer["requests"]:
        events = "-" if r["events"] is None else r["events"]
        print(f"{r['id']:<32} {r['tenant'] or r['principal'] or '-':<14} "
              f"{r['model'] or '-':<24} {r['backend'] or '-':<14} {r['age']:>8.1f}s "
              f"{events:>6} events")
    return 0


def _abort(args: argparse.Namespace) -> int:
    gateway = gateway_url(args)
    quoted = urllib.parse.quote(args.request_id, safe="")
    answer = call(COMMAND, f"{gateway}/admin/requests/{quoted}/abort",
                  post=True, expect=("aborted", "backend"), tls=args.admin_tls) if gateway else None
    if answer is None:
        return 2
    print(f"aborted {answer['aborted']} (on {answer['backend']})")
    return 0
