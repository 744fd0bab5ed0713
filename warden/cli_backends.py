"""`warden backends list/drain/enable`: the fleet as a running gateway routes it, through its
admin API. Arguments and printing only."""

from __future__ import annotations

import argparse
import json

from warden.cli_admin import add_where, call, gateway_url

COMMAND = "warden backends"


def add_commands(commands: argparse._SubParsersAction) -> None:
    backends = commands.add_parser("backends", help="the backends' state, load and score; "
                                   "drain one or put it back")
    actions = backends.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="each backend's state, signals and score")
    listing.add_argument("--json", action="store_true", help="the admin API's answer as is")
    listing.set_defaults(command=_list)
    drain = actions.add_parser("drain", help="no new requests; those in flight finish")
    enable = actions.add_parser("enable", help="back in rotation")
    for parser, action in ((drain, "drain"), (enable, "enable")):
        parser.add_argument("name", metavar="BACKEND", help="its name in the config")
        parser.set_defaults(command=_act, action=action)
    for parser in (listing, drain, enable):
        add_where(parser)


def _list(args: argparse.Namespace) -> int:
    gateway = gateway_url(args)
    answer = call(COMMAND, f"{gateway}/admin/backends",
                  expect=("policy", "backends"), tls=args.admin_tls) if gateway else None
    if answer is None:
        return 2
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"policy: {answer['policy']}")
    for backend in answer["backends"]:
        print(_line(backend))
        for model, facts in (backend.get("facts") or {}).items():
            print(f"  {model}: {_facts(facts)}")
    return 0


def _facts(facts: dict) -> str:
    """Each fact of a model as the guard's rules see it, and where it came from."""
    shown = []
    for name, fact in facts.items():
        value = fact.get("value")
        if value is None:
            shown.append(f"{name} ?")
            continue
        text = f"{len(value)} tokens" if isinstance(value, list) and name == "special_tokens" \
            else (",".join(value) if isinstance(value, list) else str(value))
        origin = fact["source"] if fact["source"] != "learned" else fact.get("from", "learned")
        shown.append(f"{name} {text} ({origin})")
    return ", ".join(shown)


def _line(backend: dict) -> str:
    load = backend.get("load")
    signals = "no signals" if load is None else (
        f"kv {_num(load['kv_cache_usage'])} waiting {_num(load['waiting'])} running "
        f"{_num(load['running'])} (age {load['age']:g}s)")
    routing = backend.get("routing")
    score = f"  score {routing['score']:.3f}" if routing else ""
    return (f"{backend['name']:16} {backend['state']:18} in flight {backend['in_flight']:<5} "
            f"{signals}{score}  {backend['address']}")


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _act(args: argparse.Namespace) -> int:
    gateway = gateway_url(args)
    answer = call(COMMAND, f"{gateway}/admin/backends/{args.name}/{args.action}",
                  post=True, tls=args.admin_tls) if gateway else None
    if answer is None:
        return 2
    print(_line(answer))
    return 0
