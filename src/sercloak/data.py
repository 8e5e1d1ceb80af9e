"""From a prepared workdir to tensors of 2 s segments for one part of one fold.

A `SegmentSet` holds every segment of a list of utterances in memory (the
feature cache is memory-mapped, so only the needed frames are read), with the
label of the task, the utterance each segment came from, and its speaker.
Training sets use the 1 s hop, evaluation sets the 0.5 s hop.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .anonymise import AudioTransform
from .cache import FeatureCache
from .corpora import EMOTIONS, GENDERS, Utterance
from .features import FeatureConfig, cut_segments, pad_to_segment
from .layout import Layout
from .normalise import SpeechStats, leave_one_out, standardise
from .prepare import read_manifest
from .segments import segment_starts
from .voicenorm import VoiceNorm, voice_profiles
from .voicenorm import leave_one_out as voice_leave_one_out

TASK_LABELS = {"emotion": EMOTIONS, "gender": GENDERS}
Parts = str | tuple[str, ...]  # one part of a fold ("test", "primary_train", ...) or several


def label_of(utt: Utterance, task: str) -> str:
    return utt.emotion if task == "emotion" else utt.gender


@dataclass
class SegmentSet:
    x: torch.Tensor  # (n, frames, mels) float32, dB
    y: torch.Tensor  # (n,) class index
    utt: torch.Tensor  # (n,) index into `utterances`
    speaker: torch.Tensor  # (n,) index into `speakers`
    utterances: list[Utterance]
    speakers: list[str]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return self.x.shape[0]

    def relabel(self, task: str) -> SegmentSet:
        """The same segments (features shared, not copied) labelled for another task."""
        labels = TASK_LABELS[task]
        per_utt = torch.tensor([labels.index(label_of(u, task)) for u in self.utterances])
        return replace(self, y=per_utt[self.utt], labels=labels)


def build_segments(utts: list[Utterance], feats: list[np.ndarray], task: str, hop: int,
                   cfg: FeatureConfig) -> SegmentSet:
    """Cut every utterance of `utts` (features `feats`) into 2 s segments with hop `hop`."""
    labels = TASK_LABELS[task]
    speakers = sorted({u.speaker for u in utts})
    spk_index = {s: i for i, s in enumerate(speakers)}
    xs, ys, us, ss = [], [], [], []
    for i, (u, f) in enumerate(zip(utts, feats, strict=True)):
        starts = segment_starts(f.shape[0], hop, cfg.segment_frames)
        xs.append(cut_segments(f, starts, cfg))
        n = len(starts)
        ys += [labels.index(label_of(u, task))] * n
        us += [i] * n
        ss += [spk_index[u.speaker]] * n
    if not xs:
        raise ValueError(f"no utterances for the {task} task in this part")
    return SegmentSet(
        x=torch.from_numpy(np.concatenate(xs)), y=torch.tensor(ys), utt=torch.tensor(us),
        speaker=torch.tensor(ss), utterances=utts, speakers=speakers, labels=labels,
    )


@dataclass
class Workdir:
    """A prepared workdir: manifest, folds and feature cache."""

    root: Path
    utterances: list[Utterance]
    folds: list[dict]
    cache: FeatureCache
    cfg: FeatureConfig
    _user_stats: dict[str, SpeechStats] | None = None  # utt_id -> leave-one-out statistics

    @classmethod
    def open(cls, root: Path | str) -> Workdir:
        layout = Layout(root)
        if not layout.summary.is_file():
            raise FileNotFoundError(f"{layout.root} is not a prepared workdir (no summary.json): "
                                    f"run `sercloak prepare` first")
        layout.check_current()
        try:
            cfg = FeatureConfig.from_dict(json.loads(layout.summary.read_text())["feature_config"])
        except ValueError as err:
            raise ValueError(f"{layout.summary}: {err}: prepare the workdir again with this "
                             f"version (`sercloak prepare`)") from err
        utts = read_manifest(layout.manifest)
        folds = json.loads(layout.folds.read_text())
        cache = FeatureCache(layout.root, cfg).open(sorted({u.corpus for u in utts}))
        return cls(layout.root, utts, folds, cache, cfg)

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def corpora(self) -> list[str]:
        return sorted({u.corpus for u in self.utterances})

    def part(self, fold: int, parts: Parts) -> list[Utterance]:
        """The utterances of one part ("test", "primary_train", ...) or several parts of
        fold `fold`, in manifest order."""
        if not 0 <= fold < len(self.folds):
            raise ValueError(f"fold {fold} does not exist (the workdir has {len(self.folds)})")
        parts = (parts,) if isinstance(parts, str) else parts
        speakers = {s for p in parts for s in self.folds[fold][p]}
        return [u for u in self.utterances if u.speaker in speakers]

    def speakers(self, fold: int, parts: Parts) -> list[str]:
        """The speakers of one or several parts of fold `fold` that have utterances, sorted
        (as a `SegmentSet` of them lists them)."""
        return sorted({u.speaker for u in self.part(fold, parts)})

    def raw_features(self, utts: list[Utterance]) -> list[np.ndarray]:
        """The (frames, mels) dB features of `utts` as cached (read-only views)."""
        return [self.cache.get(u.utt_id) for u in utts]

    def features(self, utts: list[Utterance]) -> list[np.ndarray]:
        """The (frames, mels) features of `utts` as the models see them: dB, or in
        standard units of the speaker's other utterances with `normalise="user"`."""
        if self.cfg.normalise == "none":
            return [np.asarray(f) for f in self.raw_features(utts)]
        stats = self.user_stats()
        # short utterances are padded in dB first, so padding is normalised like silence
        return [standardise(pad_to_segment(np.asarray(f), self.cfg), stats[u.utt_id])
                for u, f in zip(utts, self.raw_features(utts), strict=True)]

    def transformed(self, transform: AudioTransform, show_progress: bool = True) -> Workdir:
        """The same utterances and folds, with features of anonymised audio (built once,
        in ``features-<name>/``, resumable like `prepare`)."""
        cache = FeatureCache(self.root, self.cfg, transform)
        bad = {}
        with tqdm(total=len(self.utterances), desc=f"features: {transform.name}", unit="utt",
                  disable=not show_progress) as bar:
            for corpus in self.corpora:
                utts = [u for u in self.utterances if u.corpus == corpus]
                bad.update(cache.build(corpus, utts, progress=bar.update))
        if bad:  # every utterance of a fold is needed: the clean and anonymised sets must match
            listing = "; ".join(f"{path}: {why}" for path, why in list(bad.items())[:5])
            raise ValueError(f"{len(bad)} utterances failed under {transform.name} ({listing})")
        return replace(self, cache=cache, _user_stats=None)

    def voice_normalised(self, show_progress: bool = True) -> Workdir:
        """The same utterances and folds with features of voice-normalised audio
        (`voicenorm.py`): each utterance mapped onto the reference voice with the factors of
        its speaker's other utterances. Profiles and features are built once."""
        utts = self.utterances
        profiles = voice_profiles(utts, self.layout.voice_profiles(), self.cfg.sample_rate,
                                  show_progress)
        factors = voice_leave_one_out([u.speaker for u in utts], [profiles[u.utt_id] for u in utts])
        norm = VoiceNorm({u.utt_id: f for u, f in zip(utts, factors, strict=True)},
                         self.cfg.sample_rate)
        return self.transformed(norm, show_progress)

    def user_stats(self) -> dict[str, SpeechStats]:
        """Leave-one-out speech statistics of every utterance, within its own speaker."""
        if self._user_stats is None:
            stats = [SpeechStats.of(f) for f in self.raw_features(self.utterances)]
            loo = leave_one_out([u.speaker for u in self.utterances], stats)
            self._user_stats = {u.utt_id: st for u, st in zip(self.utterances, loo, strict=True)}
        return self._user_stats

    def segments(self, fold: int, parts: Parts, task: str, train: bool) -> SegmentSet:
        """2 s segments of one or several parts, labelled for `task`; `train`: the training
        hop (1 s) instead of the evaluation hop (0.5 s)."""
        hop = self.cfg.train_hop_frames if train else self.cfg.test_hop_frames
        utts = self.part(fold, parts)
        return build_segments(utts, self.features(utts), task, hop, self.cfg)


def normalisation_stats(data: SegmentSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-bin mean and std over the frames of a (training) set."""
    flat = data.x.reshape(-1, data.x.shape[-1]).double()
    return flat.mean(0).float(), flat.std(0).float()


def balanced_index(data: SegmentSet, task: str,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of one epoch with minority classes oversampled, and which are copies.

    Emotion: within each speaker, every emotion is topped up to that speaker's
    most frequent emotion (the paper's per-speaker balancing). Gender: within
    each corpus, the minority gender is topped up. Copies get small white
    noise added by the trainer.
    """
    groups = data.speaker if task == "emotion" else _corpus_ids(data)
    index, copy = [torch.arange(len(data))], [torch.zeros(len(data), dtype=torch.bool)]
    for g in groups.unique():
        in_group = groups == g
        counts = Counter(data.y[in_group].tolist())
        top = max(counts.values())
        for label, n in counts.items():
            if n < top:
                pool = torch.nonzero(in_group & (data.y == label)).flatten()
                pick = pool[torch.randint(len(pool), (top - n,), generator=generator)]
                index.append(pick)
                copy.append(torch.ones(top - n, dtype=torch.bool))
    return torch.cat(index), torch.cat(copy)


def _corpus_ids(data: SegmentSet) -> torch.Tensor:
    corpora = sorted({u.corpus for u in data.utterances})
    per_utt = torch.tensor([corpora.index(u.corpus) for u in data.utterances])
    return per_utt[data.utt]


def speaker_weights(data: SegmentSet) -> torch.Tensor:
    """Per-segment loss weights giving every speaker the same total weight (mean 1)."""
    counts = torch.bincount(data.speaker).float()
    w = 1.0 / counts[data.speaker]
    return w * len(w) / w.sum()
