"""The `warden` command: parses arguments and hands over (the parser's conventions are in
cli_parser; the commands that read the records are in cli_records, the quarantine's in
cli_quarantine, the backends' in cli_backends, the requests in flight in cli_requests,
`reload` in cli_reload; cli_admin reaches a gateway's admin API). No logic lives here."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from warden import (
    cli_backends,
    cli_keys,
    cli_quarantine,
    cli_records,
    cli_reload,
    cli_requests,
)
from warden.cli_parser import new_parser
from warden.config import ConfigError
from warden.observe.logs import configure
from warden.settings import load_or_explain
from warden.sim.config import NodeConfig
from warden.sim.crashes import TRIGGERS
from warden.sim.profiles import load_fleet, node_config

# The exit status of a command whose reader went away (`warden audit search | head`): the
# one a shell reports for a process ended by SIGPIPE.
BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure(args.log_level)
    try:
        status = args.command(args)
        sys.stdout.flush()  # (a reader that left is found here, not at exit)
        return status
    except BrokenPipeError:
        # The reader left: stop quietly, as Unix tools do. Python would still try to flush
        # stdout at exit (and complain), so it is pointed at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    parser = new_parser("An OpenAI-compatible gateway for a fleet of vLLM servers, its "
                        "flight recorder, and a simulated fleet to run it against.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway (SIGTERM or SIGINT: drain, "
                                "then stop; `warden reload` or SIGHUP: re-read the config)")
    serve.add_argument("-c", "--config", required=True, help="its config file (YAML)")
    serve.set_defaults(command=_serve)

    check = commands.add_parser("check-config", help="validate a config file, print every "
                                "mistake, and exit (2 if it has any)")
    check.add_argument("-c", "--config", required=True, help="the config file (YAML)")
    check.set_defaults(command=_check_config)

    demo = commands.add_parser("demo", help="a simulated fleet behind the gateway, to try it")
    demo.add_argument("--port", type=int, default=8000, help="the gateway's port")
    demo.add_argument("--sim-port", type=int, default=18090,
                      help="the first simulated node's port (the others follow it)")
    demo.add_argument("--nodes", type=int, default=3, help="simulated vLLM nodes")
    _engine_flags(demo, ttft=0.05, token_delay=0.02)
    demo.set_defaults(command=_demo)

    cli_reload.add_commands(commands)
    cli_records.add_commands(commands)
    cli_quarantine.add_commands(commands)
    cli_backends.add_commands(commands)
    cli_requests.add_commands(commands)
    cli_keys.add_commands(commands)

    sim = commands.add_parser("sim", help="run simulated vLLM servers")
    sim.add_argument("--nodes", type=int, default=1, help="how many, on consecutive ports")
    sim.add_argument("--host", default="127.0.0.1", help="the address they listen on")
    sim.add_argument("--port", type=int, default=18090,
                     help="the first node's port (the others follow it)")
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
    parser.add_argument("--prefill-time-per-token", type=float, default=0.0,
                        help="seconds a prefilling step takes per prompt token")
    parser.add_argument("--decode-time-per-seq", type=float, default=0.0,
                        help="seconds a step takes per running sequence")
    parser.add_argument("--output-tokens", type=int, default=16,
                        help="tokens generated when max_tokens does not stop it first")
    parser.add_argument("--max-num-seqs", type=int, default=256,
                        help="as vLLM's: sequences running at once (the rest wait)")
    parser.add_argument("--max-num-batched-tokens", type=int, default=8192,
                        help="as vLLM's: tokens one engine step may process")
    parser.add_argument("--num-gpu-blocks", type=int, default=4096,
                        help="KV-cache blocks (fewer: preemptions sooner)")
    parser.add_argument("--block-size", type=int, default=16, help="tokens per KV-cache block")
    parser.add_argument("--no-prefix-caching", action="store_true",
                        help="turn prefix caching off (on by default, as in vLLM)")
    parser.add_argument("--max-model-len", type=int, default=4096,
                        help="the context length; longer prompts get vLLM's 400")
    parser.add_argument("--vllm-version", default="0.11.0",
                        help="the version it reports, and whose failures and metrics it has")
    parser.add_argument("--vocab-size", type=int, default=32000,
                        help="its tokenizer's size: /detokenize drops ids past it")
    parser.add_argument("--special-token", action="append", dest="special_tokens",
                        help="a special token of its tokenizer, e.g. '<|im_start|>' "
                        "(repeatable; default <|endoftext|> <|im_start|> <|im_end|> <image>)")
    parser.add_argument("--enable-tokenizer-info-endpoint", action="store_true",
                        help="as vLLM's (0.10+): serve GET /tokenizer_info")
    parser.add_argument("--hide-version", action="store_true",
                        help="answer /version with 404, so a gateway cannot learn the version")
    parser.add_argument("--legacy-metric-names", action="store_true",
                        help="vllm:gpu_cache_usage_perc etc., as vLLM before 0.10")
    parser.add_argument("--speculative-decoding", action="store_true",
                        help="export the vllm:spec_decode_* counters, as a vLLM engine "
                        "started with a speculative config does")
    parser.add_argument("--crash-trigger", action="append", dest="crash_triggers",
                        help="a request kind that kills the engine: "
                        f"{', '.join(TRIGGERS)} (repeatable; default: the version's own)")
    parser.add_argument("--no-crash-triggers", action="store_true",
                        help="no request kills the engine")
    parser.add_argument("--api-key", help="as vLLM's --api-key: /v1 routes need this bearer "
                        "token")
    parser.add_argument("--exit-after", type=float, default=2.0,
                        help="seconds from an engine's death to its API server exiting")
    parser.add_argument("--restart-after", type=float, default=5.0,
                        help="seconds from exit to restart (negative: stay down)")


def _node_config(args: argparse.Namespace) -> NodeConfig:
    values = {
        "models": args.models or ["sim-model"], "loras": args.loras,
        "vllm_version": args.vllm_version, "answers_version": not args.hide_version,
        "legacy_metric_names": args.legacy_metric_names,
        "speculative_decoding": args.speculative_decoding,
        "max_model_len": args.max_model_len, "max_num_seqs": args.max_num_seqs,
        "vocab_size": args.vocab_size,
        "enable_tokenizer_info_endpoint": args.enable_tokenizer_info_endpoint,
        "max_num_batched_tokens": args.max_num_batched_tokens,
        "num_gpu_blocks": args.num_gpu_blocks, "block_size": args.block_size,
        "enable_prefix_caching": not args.no_prefix_caching, "token_delay": args.token_delay,
        "ttft": args.ttft, "prefill_time_per_token": args.prefill_time_per_token,
        "decode_time_per_seq": args.decode_time_per_seq, "output_tokens": args.output_tokens,
        "exit_after": args.exit_after, "api_key": args.api_key,
        "restart_after": args.restart_after if args.restart_after >= 0 else None,
    }
    if args.special_tokens:
        values["special_tokens"] = args.special_tokens
    if args.no_crash_triggers:
        values["crash_triggers"] = []
    elif args.crash_triggers:
        values["crash_triggers"] = args.crash_triggers
    return node_config(values)


class _EarlyHangup:
    """SIGHUP before the gateway has started. Its default action ends the process, the start
    takes seconds (the stores, the backends' models), and systemd counts a death by SIGHUP as
    a clean exit (no restart): a `systemctl reload` or logrotate's then would leave it down.
    Caught from the command's first moment; the gateway acts on one once started."""

    def __init__(self) -> None:
        self.seen = False
        signal.signal(signal.SIGHUP, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.seen = True


def _serve(args: argparse.Namespace) -> int:
    early = _EarlyHangup()
    from warden.run import port_taken, run, serve_gateway

    settings = load_or_explain(args.config)
    if settings is None:
        return 2
    host, port = settings.listen
    taken = port_taken(host, [port])
    if taken is not None:
        print(f"warden serve: cannot listen on {taken} (change `listen` in {args.config})",
              file=sys.stderr)
        return 2
    try:
        level = args.log_level if getattr(args, "log_level_given", False) else None
        run(lambda stop: serve_gateway(settings, Path(args.config), stop, level,
                                       lambda: early.seen))
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
    from warden.run import port_taken, run, serve_demo

    config = _node_config(args)
    taken = port_taken("127.0.0.1", [args.port])
    if taken is not None:
        return _port_problem("warden demo", taken, "--port")
    taken = port_taken("127.0.0.1", range(args.sim_port, args.sim_port + args.nodes))
    if taken is not None:
        return _port_problem("warden demo", taken, "--sim-port")
    try:
        run(lambda stop: serve_demo(args.port, args.sim_port, args.nodes, config, stop))
    except OSError as e:  # a port taken meanwhile, the recorder's directory unwritable
        print(f"warden demo: {e}", file=sys.stderr)
        return 2
    return 0


def _port_problem(command: str, taken: str, flag: str) -> int:
    print(f"{command}: cannot listen on {taken} (choose another port with {flag})",
          file=sys.stderr)
    return 2


def _sim(args: argparse.Namespace) -> int:
    from warden.run import port_taken, run, serve_sim

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
    taken = port_taken(args.host, range(args.port, args.port + len(configs)))
    if taken is not None:
        return _port_problem("warden sim", taken, "--port")
    try:
        run(lambda stop: serve_sim(args.host, args.port, configs, stop))
    except OSError as e:  # a port taken meanwhile
        print(f"warden sim: {e}", file=sys.stderr)
        return 2
    return 0

