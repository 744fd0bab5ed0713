"""The `warden` command: parses arguments and hands over. No logic lives here."""

from __future__ import annotations

import argparse
import sys

from warden import __version__
from warden.config import ConfigError, load_settings
from warden.observe.logs import configure
from warden.sim.config import NodeConfig
from warden.sim.profiles import load_fleet, node_config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure(args.log_level)
    return args.command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warden", description="An OpenAI-compatible "
                                     "gateway for a fleet of vLLM servers, its flight "
                                     "recorder, and a simulated fleet to run it against.")
    parser.add_argument("--version", action="version", version=f"warden {__version__}")
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("-c", "--config", required=True)
    serve.set_defaults(command=_serve)

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(command=_check_config)

    demo = commands.add_parser("demo", help="a simulated fleet behind the gateway")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--sim-port", type=int, default=18090)
    demo.add_argument("--nodes", type=int, default=3)
    _engine_flags(demo, ttft=0.05, token_delay=0.02)
    demo.set_defaults(command=_demo)

    audit = commands.add_parser("audit", help="read the flight recorder's records")
    audit_commands = audit.add_subparsers(required=True, metavar="ACTION")
    search = audit_commands.add_parser("search", help="requests matching every filter given")
    _records_dir(search)
    _record_filters(search)
    search.add_argument("--limit", type=int)
    search.add_argument("--json", action="store_true", help="one joined request per line")
    search.set_defaults(command=_audit_search)
    replay = audit_commands.add_parser("replay", help="re-send recorded requests to a target")
    _records_dir(replay)
    _record_filters(replay)
    replay.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:8011")
    replay.add_argument("--fast", action="store_true",
                        help="one after another as fast as possible (default: the recorded "
                        "pacing)")
    replay.add_argument("--speed", type=float, default=1.0, help="recorded pacing divided by")
    replay.add_argument("--concurrency", type=int, default=1, help="at once, with --fast")
    replay.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    replay.set_defaults(command=_audit_replay)
    show = audit_commands.add_parser("show", help="one request's records, in full")
    _records_dir(show)
    show.add_argument("request_id")
    show.set_defaults(command=_audit_show)
    tail = audit_commands.add_parser("tail", help="the latest requests (and follow)")
    _records_dir(tail)
    tail.add_argument("-n", type=int, default=20, dest="count")
    tail.add_argument("-f", "--follow", action="store_true")
    tail.set_defaults(command=_audit_tail)

    incidents = commands.add_parser("incidents", help="backends that died, and their suspects")
    incident_commands = incidents.add_subparsers(required=True, metavar="ACTION")
    listing = incident_commands.add_parser("list", help="every incident, oldest first")
    _records_dir(listing)
    listing.set_defaults(command=_incidents_list)
    show_incident = incident_commands.add_parser("show", help="one incident, in full")
    _records_dir(show_incident)
    show_incident.add_argument("incident_id")
    show_incident.set_defaults(command=_incidents_show)
    export = incident_commands.add_parser("export", help="a .tar.gz for a bug report")
    _records_dir(export)
    export.add_argument("incident_id")
    export.add_argument("-o", "--output", help="default: incident-ID.tar.gz")
    export.set_defaults(command=_incidents_export)

    bisect = commands.add_parser("bisect", help="replay an incident's suspects against a "
                                 "scratch backend and name the one that kills it")
    _records_dir(bisect)
    bisect.add_argument("incident_id")
    bisect.add_argument("--target", required=True, help="a scratch backend's base URL")
    bisect.add_argument("--chronological", action="store_true",
                        help="in arrival order (default: most suspect first)")
    bisect.add_argument("--settle", type=float, default=5.0,
                        help="seconds /health must stay 200 after each suspect")
    bisect.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    bisect.set_defaults(command=_bisect)

    sim = commands.add_parser("sim", help="run simulated vLLM servers")
    sim.add_argument("--nodes", type=int, default=1)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=18090, help="first node's port")
    sim.add_argument("--fleet", help="a YAML file of node groups (see warden.sim.profiles); "
                     "replaces --nodes and the per-node flags")
    _engine_flags(sim, ttft=0.0, token_delay=0.0)
    sim.set_defaults(command=_sim)
    return parser


def _records_dir(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", help="the recorder's directory (default: warden-records)")
    where.add_argument("-c", "--config", help="read the directory from this config")


def _record_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="ISO time (UTC) or a duration ago: 10m, 2h, 1d")
    parser.add_argument("--until", help="ISO time (UTC) or a duration ago")
    parser.add_argument("--model")
    parser.add_argument("--backend")
    parser.add_argument("--status", type=int)
    parser.add_argument("--verdict", help="complete, client_abort, upstream_error, ...")
    parser.add_argument("--text", help="text the request body contains")
    parser.add_argument("--id", dest="request_id")


def _engine_flags(parser: argparse.ArgumentParser, *, ttft: float, token_delay: float) -> None:
    parser.add_argument("--model", action="append", dest="models",
                        help="served model name (repeatable; default sim-model)")
    parser.add_argument("--lora", action="append", dest="loras", default=[],
                        help="a LoRA adapter served by name (repeatable)")
    parser.add_argument("--token-delay", type=float, default=token_delay,
                        help="seconds per engine step (one token for every running sequence)")
    parser.add_argument("--ttft", type=float, default=ttft,
                        help="seconds added to a step that prefills (time to first token)")
    parser.add_argument("--prefill-time-per-token", type=float, default=0.0)
    parser.add_argument("--decode-time-per-seq", type=float, default=0.0)
    parser.add_argument("--output-tokens", type=int, default=16,
                        help="tokens generated when max_tokens does not stop it first")
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--max-num-batched-tokens", type=int, default=8192)
    parser.add_argument("--num-gpu-blocks", type=int, default=4096)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--no-prefix-caching", action="store_true")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--vllm-version", default="0.11.0")
    parser.add_argument("--legacy-metric-names", action="store_true",
                        help="vllm:gpu_cache_usage_perc etc., as vLLM before 0.10")
    parser.add_argument("--crash-trigger", action="append", dest="crash_triggers",
                        help="a request kind that kills the engine (repeatable; default: the "
                        "version's own; see warden.sim.crashes)")
    parser.add_argument("--no-crash-triggers", action="store_true")
    parser.add_argument("--api-key", help="as vLLM's --api-key: /v1 routes need this bearer "
                        "token")
    parser.add_argument("--exit-after", type=float, default=2.0,
                        help="seconds from an engine's death to its API server exiting")
    parser.add_argument("--restart-after", type=float, default=5.0,
                        help="seconds from exit to restart (negative: stay down)")


def _node_config(args: argparse.Namespace) -> NodeConfig:
    values = {
        "models": args.models or ["sim-model"], "loras": args.loras,
        "vllm_version": args.vllm_version, "legacy_metric_names": args.legacy_metric_names,
        "max_model_len": args.max_model_len, "max_num_seqs": args.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens,
        "num_gpu_blocks": args.num_gpu_blocks, "block_size": args.block_size,
        "enable_prefix_caching": not args.no_prefix_caching, "token_delay": args.token_delay,
        "ttft": args.ttft, "prefill_time_per_token": args.prefill_time_per_token,
        "decode_time_per_seq": args.decode_time_per_seq, "output_tokens": args.output_tokens,
        "exit_after": args.exit_after, "api_key": args.api_key,
        "restart_after": args.restart_after if args.restart_after >= 0 else None,
    }
    if args.no_crash_triggers:
        values["crash_triggers"] = []
    elif args.crash_triggers:
        values["crash_triggers"] = args.crash_triggers
    return node_config(values)


def _load(path: str):
    try:
        return load_settings(path)
    except ConfigError as e:
        print(f"{path}: invalid config", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from warden.run import run, serve_gateway

    settings = _load(args.config)
    if settings is None:
        return 2
    try:
        run(lambda stop: serve_gateway(settings, stop))
    except OSError as e:  # the listen address taken, the recorder's directory unwritable
        print(f"warden serve: {e}", file=sys.stderr)
        return 2
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return 2
    print(f"{args.config}: ok ({len(settings.backends)} backends, "
          f"listen {settings.listen[0]}:{settings.listen[1]})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from warden.run import run, serve_demo

    config = _node_config(args)
    run(lambda stop: serve_demo(args.port, args.sim_port, args.nodes, config, stop))
    return 0


def _sim(args: argparse.Namespace) -> int:
    from warden.run import run, serve_sim

    try:
        configs = load_fleet(args.fleet) if args.fleet else [_node_config(args)] * args.nodes
    except ConfigError as e:
        print(f"{args.fleet}: invalid fleet", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"warden sim: {e}", file=sys.stderr)
        return 2
    run(lambda stop: serve_sim(args.host, args.port, configs, stop))
    return 0


def _records(args: argparse.Namespace) -> str | None:
    if args.config:
        settings = _load(args.config)
        return None if settings is None else settings.recorder.dir
    return args.dir or "warden-records"


def _filter(args: argparse.Namespace):
    import time

    from warden.record import audit

    now = time.time()
    return audit.matches(since=audit.when(args.since, now), until=audit.when(args.until, now),
                         model=args.model, backend=args.backend, status=args.status,
                         verdict=args.verdict, text=args.text, request_id=args.request_id)


def _audit_search(args: argparse.Namespace) -> int:
    from warden.record import audit

    directory = _records(args)
    if directory is None:
        return 2
    return audit.search(directory, _filter(args), args.json, args.limit)


def _audit_replay(args: argparse.Namespace) -> int:
    from warden.record import audit

    directory = _records(args)
    if directory is None:
        return 2
    return audit.replay(directory, _filter(args), args.target, paced=not args.fast,
                        speed=args.speed, concurrency=args.concurrency, timeout=args.timeout)


def _audit_show(args: argparse.Namespace) -> int:
    from warden.record import audit

    directory = _records(args)
    return 2 if directory is None else audit.show(directory, args.request_id)


def _audit_tail(args: argparse.Namespace) -> int:
    from warden.record import audit

    directory = _records(args)
    if directory is None:
        return 2
    try:
        return audit.tail(directory, args.count, args.follow)
    except KeyboardInterrupt:
        return 0


def _incidents_list(args: argparse.Namespace) -> int:
    from warden.forensics import report

    directory = _records(args)
    return 2 if directory is None else report.list_incidents(directory)


def _incidents_show(args: argparse.Namespace) -> int:
    from warden.forensics import report

    directory = _records(args)
    return 2 if directory is None else report.show_incident(directory, args.incident_id)


def _bisect(args: argparse.Namespace) -> int:
    from warden.forensics import bisect

    directory = _records(args)
    if directory is None:
        return 2
    return bisect.run(directory, args.incident_id, args.target,
                      chronological=args.chronological, settle=args.settle,
                      timeout=args.timeout)


def _incidents_export(args: argparse.Namespace) -> int:
    from warden.forensics import report

    directory = _records(args)
    return 2 if directory is None else report.export_incident(directory, args.incident_id,
                                                              args.output)
