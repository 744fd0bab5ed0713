"""`warden quarantine list/lift`: the quarantine through a running gateway's admin API (which
reads and writes whichever store it uses, so a lift reaches every replica sharing Redis).
Arguments and printing only."""

from __future__ import annotations

import argparse
import json
import sys

from warden.cli_admin import add_where, call, gateway_url


def add_commands(commands: argparse._SubParsersAction) -> None:
    quarantine = commands.add_parser("quarantine", help="request fingerprints held back after "
                                     "an engine died: list and lift them")
    actions = quarantine.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every fingerprint held or blocked")
    listing.add_argument("--json", action="store_true", help="the entries as JSON")
    listing.set_defaults(command=_list)
    lift = actions.add_parser("lift", help="let these fingerprints through again")
    lift.add_argument("fingerprints", nargs="*", metavar="FINGERPRINT",
                      help="as `quarantine list` (or the 403's message) shows them")
    lift.add_argument("--all", action="store_true", help="lift every one")
    lift.set_defaults(command=_lift)
    for parser in (listing, lift):
        add_where(parser)


def _list(args: argparse.Namespace) -> int:
    gateway = gateway_url(args)
    answer = call("warden quarantine", f"{gateway}/admin/quarantine",
                  expect=("quarantine",), tls=args.admin_tls) if gateway else None
    if answer is None:
        return 2
    entries = answer["quarantine"]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    if not answer.get("enabled", True):
        print("the quarantine is not enabled on this gateway")
    elif not entries:
        print("nothing in quarantine")
    for entry in entries:
        state = "blocked" if entry["blocked"] else "held"
        last = entry["incidents"][-1]["id"] if entry["incidents"] else "-"
        reasons = "; ".join(entry.get("reasons") or []) or "-"
        print(f"{entry['fingerprint']}  {state:7}  strikes {entry['strikes']}  "
              f"{entry.get('model') or '-'} {entry.get('endpoint') or '-'}  last incident "
              f"{last}  unusual: {reasons}")
    return 0


def _lift(args: argparse.Namespace) -> int:
    if bool(args.fingerprints) == args.all:
        print("warden quarantine lift: give fingerprints, or --all", file=sys.stderr)
        return 2
    gateway = gateway_url(args)
    asked = {"all": True} if args.all else {"fingerprints": args.fingerprints}
    answer = call("warden quarantine", f"{gateway}/admin/quarantine/lift", asked,
                  expect=("lifted",), tls=args.admin_tls) \
        if gateway else None
    if answer is None:
        return 2
    lifted = answer["lifted"]
    for fingerprint in lifted:
        print(f"lifted {fingerprint}")
    missing = [] if args.all else sorted(set(args.fingerprints) - set(lifted))
    for fingerprint in missing:
        print(f"not in quarantine: {fingerprint}", file=sys.stderr)
    return 1 if missing else 0
