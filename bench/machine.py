"""The machine a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def describe_machine() -> dict[str, Any]:
    from importlib.metadata import version

    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": names[0] if names else platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "avx512": "avx512f" in cpuinfo,
        "bf16_instructions": "avx512_bf16" in cpuinfo or "amx_bf16" in cpuinfo,
        "vnni": "avx512_vnni" in cpuinfo,
        "memory_gib": round(memory, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchserve": version("torchserve"),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }


def print_machine(machine: dict[str, Any]) -> None:
    print("## machine")
    for key, value in machine.items():
        print(f"- {key}: {value}")
