"""The `warden` commands that read what the gateway recorded: `audit` (search, show, tail,
replay), `incidents` (list, show, export) and `bisect`. Arguments only; each hands over to
warden.audit with the recorder's directory."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from warden.audit import audit, bisect, report
from warden.settings import load_or_explain

Action = Callable[[str, argparse.Namespace], int]


def add_commands(commands: argparse._SubParsersAction) -> None:
    audit_parser = commands.add_parser("audit", help="read the flight recorder's records")
    actions = audit_parser.add_subparsers(required=True, metavar="ACTION")
    search = _command(actions, "search", "requests matching every filter given",
                      lambda d, a: audit.search(d, _filter(a), a.json, a.limit))
    _filters(search)
    search.add_argument("--limit", type=int, help="at most this many (default: all)")
    search.add_argument("--json", action="store_true", help="one joined request per line")
    replay = _command(actions, "replay", "re-send recorded requests to a target",
                      lambda d, a: audit.replay(d, _filter(a), a.target, paced=not a.fast,
                                                speed=a.speed, concurrency=a.concurrency,
                                                timeout=a.timeout,
                                                include_refused=a.include_refused))
    _filters(replay)
    replay.add_argument("--target", required=True, type=_http_target,
                        help="base URL, e.g. http://127.0.0.1:8011")
    replay.add_argument("--fast", action="store_true", help="one after another as fast as "
                        "possible (default: the recorded pacing)")
    replay.add_argument("--speed", type=_positive, default=1.0,
                        help="recorded pacing divided by")
    replay.add_argument("--concurrency", type=_count, default=1, help="at once, with --fast")
    replay.add_argument("--timeout", type=_positive, default=600.0, help="seconds per request")
    replay.add_argument("--include-refused", action="store_true", help="also those the "
                        "gateway refused (default: skipped; a refused one may be a known "
                        "killer of engines)")
    show = _command(actions, "show", "one request's records, in full",
                    lambda d, a: audit.show(d, a.request_id))
    show.add_argument("request_id", help="its X-Request-Id (as `search` lists it)")
    tail = _command(actions, "tail", "the latest requests (and follow)",
                    lambda d, a: audit.tail(d, a.count, a.follow))
    tail.add_argument("-n", type=int, default=20, dest="count", help="how many requests")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="then print each new record as it is written (Ctrl-C stops)")

    incidents = commands.add_parser("incidents", help="backends that died, and their suspects")
    actions = incidents.add_subparsers(required=True, metavar="ACTION")
    _command(actions, "list", "every incident, oldest first",
             lambda d, a: report.list_incidents(d))
    _command(actions, "show", "one incident, in full",
             lambda d, a: report.show_incident(d, a.incident_id)).add_argument(
                 "incident_id", help="as `incidents list` shows it")
    export = _command(actions, "export", "a .tar.gz for a bug report",
                      lambda d, a: report.export_incident(d, a.incident_id, a.output))
    export.add_argument("incident_id", help="as `incidents list` shows it")
    export.add_argument("-o", "--output", help="default: incident-ID.tar.gz")

    killer = _command(commands, "bisect", "replay an incident's suspects against a scratch "
                      "backend and name the one that kills it",
                      lambda d, a: bisect.run(d, a.incident_id, a.target,
                                              chronological=a.chronological, settle=a.settle,
                                              timeout=a.timeout))
    killer.add_argument("incident_id", help="as `incidents list` shows it")
    killer.add_argument("--target", required=True, type=_http_target,
                        help="a scratch backend's base URL, e.g. http://127.0.0.1:8011")
    killer.add_argument("--chronological", action="store_true",
                        help="in arrival order (default: most suspect first)")
    killer.add_argument("--settle", type=_positive, default=5.0,
                        help="seconds /health must stay 200 after each suspect")
    killer.add_argument("--timeout", type=_positive, default=120.0, help="seconds per request")


def _http_target(text: str) -> str:
    """http://HOST[:PORT]: where recorded requests go (known killers of engines among them),
    so nothing is guessed (`10.0.0.5:8001` read as a URL is host 127.0.0.1, port 80)."""
    parts = urlsplit(text)
    try:
        plain = parts.scheme == "http" and bool(parts.hostname) \
            and parts.path in ("", "/") and not (parts.query or parts.fragment or parts.username)
        parts.port  # noqa: B018 (raises for a port that is not one)
    except ValueError:
        plain = False
    if not plain:
        raise argparse.ArgumentTypeError(f"{text!r} is not http://HOST[:PORT] (replays go "
                                         "over plain HTTP)")
    return text


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _command(parent: argparse._SubParsersAction, name: str, help_text: str,
             action: Action) -> argparse.ArgumentParser:
    """A command that reads the recorder's directory (`--dir`, or `-c` a config's)."""
    parser = parent.add_parser(name, help=help_text)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", help="the recorder's directory (default: warden-records)")
    where.add_argument("-c", "--config", help="read the directory from this config")
    parser.set_defaults(command=lambda args: _in_records(args, action), prog=parser.prog)
    return parser


class UsageError(Exception):
    """A mistake in the command's arguments: one line, exit 2."""


def _in_records(args: argparse.Namespace, action: Action) -> int:
    if args.config:
        settings = load_or_explain(args.config)
        if settings is None:
            return 2
        directory = settings.recorder.dir
    else:
        directory = args.dir or "warden-records"
    try:
        if not Path(directory).is_dir():
            where = f"{args.config}'s recorder.dir" if args.config else "--dir"
            raise UsageError(f"{directory} ({where}) is not a directory: no records there")
        return action(directory, args)
    except UsageError as e:
        print(f"{args.prog}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # `audit tail -f` ends this way
        return 0


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="received at or after: an ISO 8601 time (UTC unless "
                        "it says otherwise) or a duration ago (30s, 10m, 2h, 1d)")
    parser.add_argument("--until", help="received at or before: the same forms as --since")
    parser.add_argument("--model", help="asked for this model")
    parser.add_argument("--backend", help="sent to this backend (by name)")
    parser.add_argument("--status", type=int, help="answered with this HTTP status (499: "
                        "the client left first)")
    parser.add_argument("--verdict", help=f"ended this way: {', '.join(audit.VERDICTS)}")
    parser.add_argument("--text", help="text the request body contains")
    parser.add_argument("--id", dest="request_id", help="this request id")
    parser.add_argument("--tenant", help="from a key of this tenant (auth.tenants)")
    parser.add_argument("--key", dest="principal", help="with the API key of this id")


def _filter(args: argparse.Namespace) -> audit.Filter:
    now = time.time()
    if args.verdict is not None and args.verdict not in audit.VERDICTS:
        raise UsageError(f"--verdict: unknown verdict {args.verdict!r} (one of "
                         f"{', '.join(audit.VERDICTS)})")
    return audit.matches(since=_when("--since", args.since, now),
                         until=_when("--until", args.until, now),
                         model=args.model, backend=args.backend, status=args.status,
                         verdict=args.verdict, text=args.text, request_id=args.request_id,
                         tenant=args.tenant, principal=args.principal)


def _when(flag: str, value: str | None, now: float) -> str | None:
    try:
        return audit.when(value, now)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None
