"""The simulator beside a real vLLM engine, on the same workload at the same offered loads.

    ../shared/vllm/real-vllm.sh serve            # real vLLM 0.32 (CPU), tiny model, port 8011
    python -m bench.sim_vs_vllm --vllm http://127.0.0.1:8011 --model tiny [--seconds 10]

For each arrival rate the same generated requests (streaming, `ignore_eos`, prompts and outputs
sized to fit the tiny model's 512-token context) go first to the real server, then to one
`warden sim` node started with `SIM_PROFILE`, a fit of the simulator's cost model to that
engine on this machine (see the README for how it was fitted). One table: what the clients saw
and what each server's `/metrics` showed. The claim to check is not equal numbers but equal
shape: the same saturation throughput, queueing starting at the same load, TTFT climbing
together.
"""

from __future__ import annotations

import argparse
import sys

import uvloop

from bench import procs
from bench.calibrate import measure
from bench.workload import WorkloadSpec

# Fitted to the real engine (tiny Llama, float32, 2 cores, --max-num-seqs 8): a decode step
# takes ~4 ms alone and ~9 ms with 8 sequences (single-stream and saturated inter-token
# latency); prefill is cheap on a 2-layer model. The engine's tokenizer makes ~3 tokens of a
# word where the simulator's makes one; prompt tokens therefore differ, KV use too.
SIM_PROFILE = ["--token-delay", "0.0035", "--decode-time-per-seq", "0.0006",
               "--prefill-time-per-token", "0.0002", "--ttft", "0.002",
               "--max-num-seqs", "8", "--max-model-len", "512", "--vllm-version", "0.32.0"]
RATES = (2, 8, 12, 16, 24)


def workload(model: str, rate: float, seconds: float) -> WorkloadSpec:
    return WorkloadSpec(model=model, rate=rate, duration=seconds, prompt_median=30,
                        prompt_sigma=0.3, output_median=48, output_cap=160,
                        shared_prefix_share=0.0, session_share=0.0, ignore_eos=True, seed=3)


def row(rate: float, real: dict, sim: dict) -> str:
    def pair(key: str, fmt: str, scale: float = 1.0, sub: str | None = None) -> str:
        values = []
        for summary in (real, sim):
            value = summary[key][sub] if sub else summary[key]
            values.append("—" if value is None else format(value * scale, fmt))
        return " / ".join(values)

    errors = f"{sum(real['errors'].values())} / {sum(sim['errors'].values())}"
    return (f"| {rate:g} | {pair('throughput_rps', '.1f')} | {pair('output_tokens_per_s', '.0f')} "
            f"| {pair('ttft', '.0f', 1e3, 'p50')} | {pair('ttft', '.0f', 1e3, 'p99')} "
            f"| {pair('itl', '.1f', 1e3, 'p50')} | {pair('e2e', '.2f', 1.0, 'p50')} "
            f"| {pair('running', '.0f')} | {pair('waiting', '.0f')} | {errors} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vllm", default="http://127.0.0.1:8011", help="the real server")
    parser.add_argument("--model", default="tiny", help="the model it serves")
    parser.add_argument("--seconds", type=float, default=10.0, help="arrivals per rate")
    args = parser.parse_args()
    port = procs.free_port()
    sim = procs.start([sys.executable, "-m", "warden", "sim", "--port", str(port), "--model",
                       args.model, *SIM_PROFILE], None)
    procs.wait_for_port(port)
    rows = ["| offered req/s | done req/s | output tok/s | TTFT p50 ms | TTFT p99 ms "
            "| ITL p50 ms | E2E p50 s | max running | max waiting | errors |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    print("each cell: real vLLM / warden sim", flush=True)
    try:
        for rate in RATES:
            spec = workload(args.model, rate, args.seconds)
            real = uvloop.run(measure(args.vllm.rstrip("/"), spec))
            simulated = uvloop.run(measure(f"http://127.0.0.1:{port}", spec))
            rows.append(row(rate, real, simulated))
            print(rows[-1], flush=True)
    finally:
        procs.stop(sim)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
