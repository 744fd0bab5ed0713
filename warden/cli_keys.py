"""`warden keys`: make API keys and their stored form (`new`, `hash`: offline), and manage the
keys of a running gateway's key store through its admin API (`create`, `list`, `show`,
`revoke`, `rotate`). A key is shown once, when it is made; what is kept is only its hash (the
config's `auth.keys[].hash`, or the store's table). Arguments and printing only."""

from __future__ import annotations

import argparse
import json
import re
import sys
from urllib.parse import quote

from warden.cli_admin import add_where, call, gateway_url
from warden.tenancy.keys import key_hash, new_key

COMMAND = "warden keys"


def add_commands(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="make API keys (client or admin) and their hashes; "
                               "manage the keys a gateway keeps in PostgreSQL")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    new = actions.add_parser("new", help="print a new key and the hash to put in the config "
                             "(the key is not stored anywhere: keep it now)")
    new.set_defaults(command=_new)
    hashed = actions.add_parser("hash", help="print the hash of a key read from standard "
                                "input (so it stays out of the shell's history)")
    hashed.set_defaults(command=_hash)
    create = actions.add_parser("create", help="make a key in the gateway's key store "
                                "(auth.store); it is printed once: keep it now")
    create.add_argument("id", metavar="ID", help="the key's id (in records and metrics)")
    create.add_argument("--tenant", help="its tenant, one of the config's auth.tenants")
    create.add_argument("--model", dest="models", action="append", metavar="NAME",
                        help="a model name or glob it may use (repeat; default: every model)")
    create.add_argument("--priority", type=int, help="vLLM priority sent for its requests")
    create.add_argument("--expires", metavar="WHEN",
                        help="when it stops working, with a time zone (2027-01-01T00:00:00Z)")
    create.add_argument("--metadata", action="append", metavar="KEY=VALUE", default=[],
                        help="a free label (repeat)")
    create.add_argument("--limits", metavar="JSON", help="its limits, a JSON object")
    create.add_argument("--budget", metavar="KIND:AMOUNT/PER",
                        help="what it may spend a UTC day or month: tokens:1000000/day or "
                        "cost:25/month (in the unit of rate_limits.prices)")
    create.set_defaults(command=_create)
    listing = actions.add_parser("list", help="every key the gateway accepts, from its config "
                                 "and its key store (never a key nor its hash)")
    show = actions.add_parser("show", help="one key")
    revoke = actions.add_parser("revoke", help="refuse a stored key from now on, on every "
                                "gateway of the store")
    rotate = actions.add_parser("rotate", help="a new key for a stored key's id and grants "
                                "(printed once); the old key is refused from now on")
    for parser in (show, revoke, rotate):
        parser.add_argument("id", metavar="ID", help="the key's id")
    for parser in (listing, show):
        parser.add_argument("--json", action="store_true", help="the admin API's answer as is")
    listing.set_defaults(command=_list)
    show.set_defaults(command=_show)
    revoke.set_defaults(command=_revoke)
    rotate.set_defaults(command=_rotate)
    for parser in (create, listing, show, revoke, rotate):
        add_where(parser)


def _new(args: argparse.Namespace) -> int:
    key = new_key()
    print(f"key:  {key}\nhash: {key_hash(key)}")
    return 0


def _hash(args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip()
    if not key:
        print(f"{COMMAND} hash: no key on standard input (echo \"$KEY\" | warden keys hash)",
              file=sys.stderr)
        return 2
    print(key_hash(key))
    return 0


def _create(args: argparse.Namespace) -> int:
    body: dict = {"id": args.id}
    for name in ("tenant", "models", "priority", "expires"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    metadata = {}
    for label in args.metadata:
        name, equals, value = label.partition("=")
        if not equals or not name:
            return _mistake(f"--metadata takes KEY=VALUE (got {label!r})")
        metadata[name] = value
    if metadata:
        body["metadata"] = metadata
    if args.limits is not None:
        try:
            body["limits"] = json.loads(args.limits)
        except ValueError:
            return _mistake(f"--limits is not JSON: {args.limits}")
    if args.budget is not None:
        budget = _budget(args.budget)
        if budget is None:
            return _mistake(f"--budget takes tokens:N/day, tokens:N/month, cost:X/day or "
                            f"cost:X/month (got {args.budget!r})")
        if not isinstance(body.get("limits", {}), dict):
            return _mistake("--limits must be a JSON object to add --budget to it")
        body["limits"] = {**body.get("limits", {}), "budget": budget}
    answer = _admin(args, "", body, expect=("id", "key"))
    if answer is None:
        return 2
    _print_new(answer)
    return 0


def _budget(text: str) -> dict | None:
    found = re.fullmatch(r"(tokens|cost):([0-9]+(?:\.[0-9]+)?)/(day|month)", text.strip())
    if found is None:
        return None
    kind, amount, per = found.groups()
    if kind == "tokens" and "." in amount:
        return None
    return {kind: int(amount) if kind == "tokens" else float(amount), "per": per}


def _list(args: argparse.Namespace) -> int:
    answer = _admin(args, "", expect=("keys",))
    if answer is None:
        return 2
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(_store_line(answer.get("store"), answer.get("read_from")))
    for key in answer["keys"]:
        models = ",".join(key["models"]) if key["models"] is not None else "all models"
        print(f"{key['id']:24} {key['source']:6} {key['state']:8} "
              f"tenant {key['tenant'] or '-':12} {models}  priority "
              f"{_or_dash(key['priority'])}  expires {_or_dash(key['expires'])}"
              f"{_budget_text(key.get('budget'))}")
    for name, tenant in (answer.get("tenants") or {}).items():
        if tenant.get("budget") is not None:
            print(f"tenant {name:17}{_budget_text(tenant['budget'])}")
    return 0


def _budget_text(budget: dict | None) -> str:
    """`  budget 1200/2000000 tokens a day (resets 2026-12-06T00:00:00Z)`, or nothing."""
    if not budget:
        return ""
    unit = "tokens" if budget["kind"] == "tokens" else "(cost)"
    return (f"  budget {budget['spent']:g}/{budget['limit']:g} {unit} a {budget['per']} "
            f"(resets {budget['resets_at']})")


def _show(args: argparse.Namespace) -> int:
    answer = _admin(args, f"/{quote(args.id, safe='')}")
    if answer is None:
        return 2
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for name, value in answer.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else _or_dash(value)
        print(f"{name + ':':10} {shown}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    answer = _admin(args, f"/{quote(args.id, safe='')}/revoke", post=True,
                    expect=("id", "revoked"))
    if answer is None:
        return 2
    print(f"revoked {answer['id']} (at {answer['revoked']})")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    answer = _admin(args, f"/{quote(args.id, safe='')}/rotate", post=True,
                    expect=("id", "key"))
    if answer is None:
        return 2
    _print_new(answer)
    return 0


def _admin(args: argparse.Namespace, path: str, body: dict | None = None, *,
           post: bool = False, expect: tuple[str, ...] = ()) -> dict | None:
    gateway = gateway_url(args)
    if gateway is None:
        return None
    return call(COMMAND, f"{gateway}/admin/keys{path}", body, post=post, expect=expect,
                tls=args.admin_tls)


def _print_new(answer: dict) -> None:
    print(f"id:  {answer['id']}\nkey: {answer['key']}\n(shown this once: keep it now; the "
          "gateway keeps only its hash)")


def _store_line(store: dict | None, read_from: str | None) -> str:
    if store is None:
        return "key store: none (the keys come from the config file)"
    state = "up" if store["up"] else f"DOWN ({store['error']})"
    held = "; listed from this gateway's memory" if read_from == "memory" else ""
    return (f"key store: PostgreSQL, schema {store['schema']}, {state}, "
            f"live stored keys held: {store['keys']}{held}")


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _mistake(what: str) -> int:
    print(f"{COMMAND}: {what}", file=sys.stderr)
    return 2
