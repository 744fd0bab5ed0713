"""The `warden` command: parses arguments and hands over (the commands that read the records
are in cli_records, the quarantine's in cli_quarantine, the
backends' in cli_backends; cli_admin reaches a gateway's admin API). No logic lives here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from warden import __version__, cli_backends, cli_quarantine, cli_records
from warden.config import ConfigError, load_or_explain
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

    cli_records.add_commands(commands)
    cli_quarantine.add_commands(commands)
    cli_backends.add_commands(commands)

    sim = commands.add_parser("sim", help="run simulated vLLM servers")
    sim.add_argument("--nodes", type=int, default=1)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=18090, help="first node's port")
    sim.add_argument("--fleet", help="a YAML file of node groups (see warden.sim.profiles); "
                     "replaces --nodes and the per-node flags")
    _engine_flags(sim, ttft=0.0, token_delay=0.0)
    sim.set_defaults(command=_sim)
    return parser


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


def _serve(args: argparse.Namespace) -> int:
    from warden.run import run, serve_gateway

    settings = load_or_explain(args.config)
    if settings is None:
        return 2
    try:
        run(lambda stop: serve_gateway(settings, Path(args.config), stop))
    except OSError as e:  # the listen address taken, the recorder's directory unwritable
        print(f"warden serve: {e}", file=sys.stderr)
        return 2
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = load_or_explain(args.config)
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

