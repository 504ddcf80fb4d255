"""Which device a run computes on (`train.device`): auto = CUDA when available, else the CPU."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from .errors import ConfigError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device '{name}' (expected auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name}: CUDA is not available on this machine (use auto or cpu)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device={name}: MPS is not available on this machine (use auto or cpu)")
    return dev


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on `device` (sampled negatives are drawn where the scores live)."""
    if device.type == "meta":
        device = torch.device("cpu")
    return torch.Generator(device=device).manual_seed(seed)


def cpu_fingerprint() -> str:
    """What float results on the CPU depend on beyond the code: the torch build, the vector instruction
    set its kernels dispatch to, and the processor model. Two machines with the same code and seeds
    can round a matrix product differently (BLAS blocks the reduction by instruction set and model),
    so an exact regression pin holds on the machine kind that recorded it."""
    fields: dict[str, str] = {}
    try:  # Linux: the first processor's identity (model name alone can be as vague as "AMD EPYC")
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").split("\n\n", 1)[0].splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or "unknown processor"
    if "cpu family" in fields:
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {model}"
