"""Which device torch work runs on: ``auto`` (CUDA when present, else the CPU), ``cpu`` or
``cuda``, chosen once per process (`use_device`, the CLI's ``--device``).

The choice lives in the environment (``SERCLOAK_DEVICE``) so that worker processes of
a distributed run (`experiment.executors`) inherit it. Results on the CPU do not
depend on it being set.
"""

from __future__ import annotations

import os

import torch

DEVICES = ("auto", "cpu", "cuda")
ENV = "SERCLOAK_DEVICE"


def use_device(name: str) -> None:
    """Run this process's (and its workers') torch work on `name`."""
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r} (known: {', '.join(DEVICES)})")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this machine has no CUDA device torch can use "
                         f"(torch {torch.__version__}); use --device auto or cpu")
    os.environ[ENV] = name


def through_frozen_rnns():
    """A context for gradients through a recurrent network held in eval mode (a frozen
    f_θ): cuDNN computes no RNN gradient in eval mode, so such passes run without cuDNN.
    On the CPU it changes nothing."""
    return torch.backends.cudnn.flags(enabled=False)


def pick_device() -> torch.device:
    """The device chosen by `use_device` (default auto)."""
    name = os.environ.get(ENV, "auto")
    if name not in DEVICES:
        raise ValueError(f"{ENV}={name!r}: unknown device (known: {', '.join(DEVICES)})")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
