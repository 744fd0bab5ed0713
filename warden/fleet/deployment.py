"""What a backend is beyond its vLLM version: speculative decoding (and its method), the
device it runs on, its tokenizer mode, whether LoRA is enabled. Some guard rules depend on
these (a structured-output grammar on a speculative engine, a bitmask on a CPU engine).

Rules:
- A fact is declared (`backends[].deployment`) or learned from the backend's `/metrics`;
  declared wins, field by field, so an operator can always correct what was learned.
- Unknown (None) means NOT affected for the rules that depend on it, the opposite of an
  unknown version. A version rule that assumes the worst of an unknown version costs an
  up-to-date fleet nothing once versions are learned, and every vLLM says its version. Most
  deployment facts are never published (the tokenizer mode, the speculative method), so a
  rule that assumed the worst of them would route structured outputs away from every backend
  of every fleet nobody described, and refuse them where no backend is left: legitimate
  requests rejected on fleets that were never at risk. Deployment rules therefore act only on
  what is known to be so.
- Only what the `/metrics` text proves is learned, from each scrape anew (a backend restarted
  without speculative decoding loses the fact):
  - speculative decoding on: a sample of a `vllm:spec_decode_*` family. vLLM's V1 engines
    create those counters (at 0) only when a speculative config is set; V0 engines declare
    them always but write samples only while speculating. No sample: unknown, not off.
  - LoRA: the `max_lora` label of `vllm:lora_requests_info` (V0 writes 0 when LoRA is off;
    V1 declares the family only with LoRA, and writes it once requests ran).
  - device: the CPU engine's KV-cache size label of `vllm:cache_config_info`
    (`cpu_kvcache_space_bytes`, set only on the CPU platform: 0.9 to 0.17 at least, gone
    by 0.24), or the local
    label of the version vLLM reports when built from source for a device (`0.11.0+cpu`,
    `+cu126`, `+rocm64`, `+tpu`, `+xpu`). The PyPI builds report neither: unknown.
  - Neither the speculative method nor the tokenizer mode is published: declared only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from warden.config.schema import DeploymentSpec

FIELDS = ("speculative_decoding", "speculative_method", "device", "tokenizer_mode", "lora",
          "tool_call_parser")
_SPEC_DECODE = "vllm:spec_decode_"
_LORA = "vllm:lora_requests_info{"
_CACHE = "vllm:cache_config_info{"
_MAX_LORA = re.compile(r'\bmax_lora="(\d{1,9})"')  # (a longer number is no count)
_CPU_KV = re.compile(r'\bcpu_kvcache_space_bytes="([^"]*)"')
# A version's local label (after "+") -> the device its build targets.
_DEVICE_LABELS = (("cpu", "cpu"), ("cu", "gpu"), ("rocm", "gpu"), ("tpu", "other"),
                  ("xpu", "other"))


@dataclass(frozen=True)
class Deployment:
    """One backend's deployment facts; None: unknown."""

    speculative_decoding: bool | None = None
    speculative_method: str | None = None
    device: str | None = None            # "cpu" | "gpu" | "other"
    tokenizer_mode: str | None = None
    lora: bool | None = None
    tool_call_parser: str | None = None  # (declared only: vLLM never publishes it)

    def over(self, learned: Deployment) -> Deployment:
        """These facts (declared) where known, else the `learned` ones."""
        merged = replace(learned, **{f.name: getattr(self, f.name) for f in fields(self)
                                     if getattr(self, f.name) is not None})
        if merged.speculative_method is not None and merged.speculative_decoding is None:
            merged = replace(merged, speculative_decoding=True)
        return merged


def declared_deployment(spec: DeploymentSpec) -> Deployment:
    return Deployment(spec.speculative_decoding, spec.speculative_method, spec.device,
                      spec.tokenizer_mode, spec.lora, spec.tool_call_parser)


def _line(text: str, prefix: str) -> str | None:
    """The first sample line of `text` that starts with `prefix` (comment lines start with
    `#`, so a search for a line start finds samples only)."""
    if text.startswith(prefix):
        at = 0
    else:
        at = text.find("\n" + prefix)
        if at < 0:
            return None
        at += 1
    end = text.find("\n", at)
    return text[at:] if end < 0 else text[at:end]


def device_of_version(version: str | None) -> str | None:
    """The device a source build of vLLM targets, from its version's local label."""
    if version is None or "+" not in version:
        return None
    label = version.split("+", 1)[1].lower()
    for start, device in _DEVICE_LABELS:
        if label.startswith(start):
            return device
    return None


def learned_deployment(text: str, version: str | None = None) -> Deployment:
    """What one `/metrics` text (and the version the backend reports) proves of a backend.
    Pure; never raises on any text."""
    speculative = True if _line(text, _SPEC_DECODE) is not None else None
    lora = None
    line = _line(text, _LORA)
    found = _MAX_LORA.search(line) if line is not None else None
    if found is not None:
        lora = int(found.group(1)) > 0
    device = device_of_version(version)
    line = _line(text, _CACHE)
    found = _CPU_KV.search(line) if line is not None else None
    if found is not None and found.group(1) not in ("", "None", "0"):
        device = "cpu"
    return Deployment(speculative_decoding=speculative, device=device, lora=lora)


def describe(declared: Deployment, learned: Deployment) -> dict[str, dict[str, object]]:
    """Each fact's value and where it came from, for operators (GET /admin/backends)."""
    merged = declared.over(learned)
    view: dict[str, dict[str, object]] = {}
    for name in FIELDS:
        value = getattr(merged, name)
        source = "declared" if getattr(declared, name) is not None else \
            "learned" if getattr(learned, name) is not None else \
            "implied" if value is not None else "unknown"
        view[name] = {"value": value, "from": source}
    return view
