"""Model checkpoints: what every training run saves and every later step loads.

Like every file a job makes, they are written atomically (`files.atomic_write`).
Checkpoints hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``: the weights, the normalisation statistics,
and the full configuration that made them (features, labels, model, training).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .features import FeatureConfig
from .files import atomic_write
from .models import CnnRnn, ModelConfig

CHECKPOINT_FORMAT = "sercloak.model/1"


def torch_save(thing, path: Path | str) -> Path:
    """`torch.save`, atomically."""
    return atomic_write(path, lambda tmp: torch.save(thing, tmp))


# -- model checkpoints --------------------------------------------------------------------


class CheckpointMismatch(ValueError):
    """A checkpoint made with settings other than the caller's."""


def save_checkpoint(path: Path, model: CnnRnn, labels: tuple[str, ...],
                    feature_cfg: FeatureConfig, train_cfg, metrics: dict) -> None:
    """A trained model with what made it (`train_cfg`: a `train.TrainConfig`)."""
    torch_save({
        "format": CHECKPOINT_FORMAT,
        "task": train_cfg.task,
        "labels": list(labels),
        "feature_config": feature_cfg.to_dict(),
        "model_config": model.cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": metrics,
    }, path)


def load_checkpoint(path: Path | str, feature_cfg: FeatureConfig | None = None,
                    device: torch.device | str = "cpu") -> tuple[CnnRnn, dict]:
    """(model in eval mode, checkpoint dict); refuses other feature settings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointMismatch(f"{path}: not a readable sercloak checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    if feature_cfg is not None and not feature_cfg.matches(ckpt["feature_config"]):
        raise CheckpointMismatch(
            f"{path} was trained on other features (ours != its: "
            f"{feature_cfg.describe_mismatch(ckpt['feature_config'])}); "
            f"retrain it or prepare the workdir with its feature settings"
        )
    try:
        saved = FeatureConfig.from_dict(ckpt["feature_config"])
        model_config = ModelConfig.from_dict(ckpt["model_config"])
    except ValueError as err:
        raise CheckpointMismatch(f"{path}: {err}: delete it and run again (it is trained "
                                 f"anew)") from err
    model = CnnRnn(len(ckpt["labels"]), model_config, n_mels=saved.n_mels,
                   n_frames=saved.segment_frames)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
