"""Which device a run computes on (`train.device`): auto = CUDA when available, else the CPU."""

from __future__ import annotations

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
