"""Training the emotion model f_θ and the gender attacker f_g, in plain PyTorch.

Adam at 1e-4 with dropout 0.2 (the paper's values). Each epoch sees every
training segment once, plus noisy copies that balance the classes (see
`data.balanced_index`). After each epoch the model is scored (utterance-level
UAR) on the pool's validation speakers, never on test speakers; the best
epoch is kept and training stops after `patience` epochs without improvement.

Checkpoints hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``: the weights, the normalisation statistics,
and the full configuration that made them (features, labels, model, training).
A training run writes its state after every epoch and resumes from it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from .data import SegmentSet, balanced_index, normalisation_stats, speaker_weights
from .evaluate import Transform, evaluate
from .features import FeatureConfig
from .models import PRESETS, CnnRnn, ModelConfig

CHECKPOINT_FORMAT = "sercloak.model/1"


@dataclass(frozen=True)
class TrainConfig:
    task: str = "emotion"
    model: str = "light"  # a key of models.PRESETS
    lr: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 20
    patience: int = 5
    copy_noise_std: float = 0.05  # white noise on oversampled copies (standardised units)
    speaker_weighting: bool = False  # equal total loss weight per speaker
    spec_augment: int = 2  # time masks and frequency masks per training segment (0 = off)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


class CheckpointMismatch(ValueError):
    """A checkpoint made with settings other than the caller's."""


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# -- checkpoints ----------------------------------------------------------------


def save_checkpoint(path: Path, model: CnnRnn, labels: tuple[str, ...], feature_cfg: FeatureConfig,
                    train_cfg: TrainConfig, metrics: dict) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "task": train_cfg.task,
        "labels": list(labels),
        "feature_config": feature_cfg.to_dict(),
        "model_config": model.cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": metrics,
    }
    _atomic_save(payload, path)


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
    if feature_cfg is not None and ckpt["feature_config"] != feature_cfg.to_dict():
        raise CheckpointMismatch(
            f"{path} was trained on other features (ours != its: "
            f"{feature_cfg.describe_mismatch(ckpt['feature_config'])}); "
            f"retrain it or prepare the workdir with its feature settings"
        )
    saved = FeatureConfig.from_dict(ckpt["feature_config"])
    model = CnnRnn(len(ckpt["labels"]), ModelConfig.from_dict(ckpt["model_config"]),
                   n_mels=saved.n_mels, n_frames=saved.segment_frames)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def _atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


# -- the training loop --------------------------------------------------------------


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    epoch: int = 0
    best_uar: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list = field(default_factory=list)


def spec_augment(x: torch.Tensor, fill: torch.Tensor, n_masks: int, gen: torch.Generator,
                 max_time: int = 20, max_freq: int = 12) -> torch.Tensor:
    """SpecAugment-style masking: `n_masks` time and frequency bands per segment set to `fill`."""
    b, t, f = x.shape
    keep = torch.ones(b, t, f, dtype=torch.bool)
    frames, bins = torch.arange(t), torch.arange(f)
    for _ in range(n_masks):
        for size, axis, limit in ((max_time, frames, t), (max_freq, bins, f)):
            width = torch.randint(0, size + 1, (b, 1), generator=gen)
            start = (torch.rand(b, 1, generator=gen) * (limit - width)).long()
            band = (axis >= start) & (axis < start + width)  # (b, t) or (b, f)
            keep &= ~(band[:, :, None] if axis is frames else band[:, None, :])
    return torch.where(keep, x, fill)


def _epoch(model: CnnRnn, opt: torch.optim.Optimizer, train: SegmentSet, cfg: TrainConfig,
           weights: torch.Tensor, gen: torch.Generator, device: torch.device,
           transform: Transform | None) -> float:
    model.train()
    index, is_copy = balanced_index(train, cfg.task, gen)
    order = torch.randperm(len(index), generator=gen)
    total, n = 0.0, 0
    for start in range(0, len(order), cfg.batch_size):
        pick = index[order[start : start + cfg.batch_size]]
        x = train.x[pick].clone()
        if transform is not None:  # e.g. a cloak: the attacker trains on what it will see
            with torch.no_grad():
                x = transform(x.to(device)).cpu()
        copies = is_copy[order[start : start + cfg.batch_size]]
        if copies.any():  # the paper's augmentation: noisy copies of minority segments
            noise = torch.randn(x[copies].shape, generator=gen)
            x[copies] += cfg.copy_noise_std * noise * model.feat_std.cpu()
        if cfg.spec_augment:
            x = spec_augment(x, model.feat_mean.cpu(), cfg.spec_augment, gen)
        x, y, w = x.to(device), train.y[pick].to(device), weights[pick].to(device)
        loss = (F.cross_entropy(model(x), y, reduction="none") * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(pick)
        n += len(pick)
    return total / n


def train(train: SegmentSet, valid: SegmentSet, cfg: TrainConfig, feature_cfg: FeatureConfig,
          out: Path, show_progress: bool = True, transform: Transform | None = None,
          init_state: dict | None = None) -> dict:
    """Train one model, writing `out` (best checkpoint) and resuming from `out`.state.

    `transform` is applied to every training and validation batch (an
    informed attacker trains on cloaked features, fresh noise each time);
    `init_state` starts from given weights (fine-tuning) instead of scratch.
    """
    out = Path(out)
    state_file = out.with_name(out.name + ".state")
    device = pick_device()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = CnnRnn(len(train.labels), PRESETS[cfg.model], n_mels=feature_cfg.n_mels,
                   n_frames=feature_cfg.segment_frames)
    model.set_normalisation(*normalisation_stats(train))
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    st, best = TrainState(), None
    if state_file.is_file():
        st, best = _restore(state_file, cfg, feature_cfg, model, opt, gen)
    weights = speaker_weights(train) if cfg.speaker_weighting else torch.ones(len(train))

    started = time.perf_counter()
    bar = tqdm(total=cfg.max_epochs, initial=st.epoch, desc=f"train {cfg.task}", unit="epoch",
               disable=not show_progress)
    while st.epoch < cfg.max_epochs and st.bad_epochs < cfg.patience:
        loss = _epoch(model, opt, train, cfg, weights, gen, device, transform)
        uar = evaluate(model, valid, transform, device=device)["overall"]["uar"]
        st.epoch += 1
        st.history.append({"epoch": st.epoch, "loss": loss, "valid_uar": uar})
        if uar > st.best_uar:
            st.best_uar, st.best_epoch, st.bad_epochs = uar, st.epoch, 0
            best = copy.deepcopy(model.state_dict())
        else:
            st.bad_epochs += 1
        _atomic_save({"train_config": cfg.to_dict(), "feature_config": feature_cfg.to_dict(),
                      "state": asdict(st), "model": model.state_dict(), "best": best,
                      "optimizer": opt.state_dict(), "generator": gen.get_state(),
                      "torch_rng": torch.get_rng_state()}, state_file)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", valid_uar=f"{uar:.1f}", best=f"{st.best_uar:.1f}")
    bar.close()

    model.load_state_dict(best)
    metrics = {"best_epoch": st.best_epoch, "valid_uar": st.best_uar, "epochs": st.epoch,
               "history": st.history, "train_segments": len(train),
               "wall_time_s": round(time.perf_counter() - started, 1)}
    save_checkpoint(out, model, train.labels, feature_cfg, cfg, metrics)
    state_file.unlink(missing_ok=True)
    return metrics


def _restore(state_file: Path, cfg: TrainConfig, feature_cfg: FeatureConfig, model: CnnRnn,
             opt: torch.optim.Optimizer, gen: torch.Generator) -> tuple[TrainState, dict]:
    saved = torch.load(state_file, map_location="cpu", weights_only=True)
    if saved["train_config"] != cfg.to_dict() or saved["feature_config"] != feature_cfg.to_dict():
        raise CheckpointMismatch(
            f"{state_file} belongs to a run with other settings; delete it to start afresh"
        )
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    gen.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    return TrainState(**saved["state"]), saved["best"]
