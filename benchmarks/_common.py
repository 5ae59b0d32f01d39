# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""What the benchmarks share: the machine's description and median [min–max] summaries of interleaved repeats."""

import os
import platform
import statistics
from pathlib import Path

# CPU features that decide whether bf16 pays off on a CPU: AMX tiles (Sapphire Rapids and later Xeons) run bf16
# matrix products several times faster than fp32; avx512_bf16 alone (e.g. AMD Zen 4/5) only converts and dots pairs.
BF16_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what `platform` knows)."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags(wanted: tuple[str, ...] = BF16_FLAGS) -> dict[str, bool]:
    """Which of `wanted` the CPU reports in /proc/cpuinfo."""
    flags = next((set(line.split(":", 1)[1].split()) for line in _cpuinfo() if line.startswith("flags")), set())
    return {flag: flag in flags for flag in wanted}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def machine_info(extra_versions: dict[str, str] | None = None) -> str:
    """Two lines: CPU, cores, torch threads, OMP wait policy, load; then the library versions."""
    import torch

    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    flags = " ".join(f"{name}={'yes' if present else 'no'}" for name, present in cpu_flags().items())
    versions = {"python": platform.python_version(), "torch": torch.__version__, **(extra_versions or {})}
    return (
        f"{cpu_model()}; {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; load average {load}\n"
        f"CPU flags: {flags}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"oneDNN bf16 supported: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}\n"
        + ", ".join(f"{name} {version}" for name, version in versions.items())
    )


def median_range(values: list[float], fmt: str = "{:.2f}") -> str:
    """`median [min–max]` of the values."""
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def quiet_libraries(threads: int | None = None) -> None:
    """Silences transformers' and datasets' logs and progress bars; sets torch's thread count when given."""
    import datasets
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
