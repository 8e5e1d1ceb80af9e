"""On-disk feature cache: memory-mapped arrays plus a JSON index, per corpus.

Layout under ``<workdir>/features/<corpus>/``::

    shard_00000.npy   float32 (frames, n_mels): the log-mel frames of up to
                      SHARD_SIZE utterances, one after the other
    shard_00000.json  index: feature fingerprint, and for each utterance its
                      offset and frame count (or the reason it was skipped),
                      plus the source file's size and mtime

A cache of anonymised audio (`transform`, see `anonymise.py`) lives beside
it in ``<workdir>/features-<transform name>/``, the same layout, its
fingerprint covering the transform's settings too.

Each shard is written to a temporary name and renamed into place, the index
last, so a shard exists only when complete: an interrupted `prepare` keeps
every finished shard and resumes with the next. A shard is reused only while
its feature settings, utterances and source files are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .anonymise import AudioTransform
from .audio import AudioError, load_audio
from .corpora import Utterance
from .features import FeatureConfig, LogMel
from .files import atomic_write, write_json
from .layout import FeatureShards, Layout

SHARD_SIZE = 256
FORMAT_VERSION = 1


def _source_stamp(path: Path) -> list:
    st = os.stat(path)
    return [st.st_size, int(st.st_mtime)]


def _save_npy(array: np.ndarray) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return write


class FeatureCache:
    """Features of every prepared utterance of one workdir, read lazily via mmap."""

    def __init__(self, workdir: Path | str, cfg: FeatureConfig = FeatureConfig(),
                 transform: AudioTransform | None = None):
        self.root = Layout(workdir).features(None if transform is None else transform.name)
        self.cfg = cfg.extraction()  # raw dB: normalisation comes after the cache
        self.transform = transform
        self.fingerprint = self.cfg.fingerprint()
        if transform is not None:
            blob = json.dumps([self.fingerprint, transform.describe()], sort_keys=True)
            self.fingerprint = hashlib.sha256(blob.encode()).hexdigest()[:16]
        self._index: dict[str, tuple[Path, int, int]] = {}  # utt_id -> (npy, offset, n)
        self._arrays: dict[Path, np.ndarray] = {}

    # -- building -------------------------------------------------------------

    def _shard_is_current(self, index_file: Path, utts: Sequence[Utterance]) -> bool:
        if not index_file.is_file():
            return False
        try:
            index = json.loads(index_file.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        try:
            stamps = [_source_stamp(u.path) for u in utts]
        except OSError:
            return False
        return (
            index.get("format_version") == FORMAT_VERSION
            and index.get("features") == self.fingerprint
            and [e["utt_id"] for e in index["utterances"]] == [u.utt_id for u in utts]
            and [e["source"] for e in index["utterances"]] == stamps
        )

    def _write_shard(self, npy: Path, index_file: Path, utts: Sequence[Utterance],
                     extractor: LogMel, on_done: Callable[[], None]) -> None:
        entries, chunks, offset = [], [], 0
        for u in utts:
            entry = {"utt_id": u.utt_id, "source": _source_stamp(u.path)}
            try:
                wave = load_audio(u.path, self.cfg.sample_rate)
                if self.transform is not None:
                    wave = self.transform(wave, u.utt_id)
                feats = extractor(wave)
                if not np.isfinite(feats).all():
                    raise AudioError(u.path, "features contain NaN or infinite values")
                entry.update(offset=offset, n_frames=int(feats.shape[0]))
                chunks.append(feats)
                offset += feats.shape[0]
            except AudioError as err:
                entry["skipped"] = err.reason
            entries.append(entry)
            on_done()
        frames = np.concatenate(chunks) if chunks else np.zeros((0, self.cfg.n_mels), np.float32)
        atomic_write(npy, _save_npy(frames.astype(np.float32, copy=False)))
        index = {"format_version": FORMAT_VERSION, "features": self.fingerprint,
                 "feature_config": self.cfg.to_dict(), "utterances": entries}
        write_json(index_file, index, indent=None)

    def build(self, corpus: str, utts: Sequence[Utterance],
              progress: Callable[[int], None] = lambda n: None) -> dict[str, str]:
        """Extract (or reuse) features of `utts`; returns {path: reason} of skipped files.

        `progress(n)` is called as utterances are done (reused shards count at once).
        """
        files = Layout.shards(self.root, corpus)
        files.folder.mkdir(parents=True, exist_ok=True)
        utts = sorted(utts, key=lambda u: u.utt_id)
        extractor = LogMel(self.cfg)
        shards = [utts[i : i + SHARD_SIZE] for i in range(0, len(utts), SHARD_SIZE)]
        expected = set()
        for k, shard in enumerate(shards):
            npy, index_file = files.shard(k)
            expected |= {npy.name, index_file.name}
            if self._shard_is_current(index_file, shard) and npy.is_file():
                progress(len(shard))
            else:
                index_file.unlink(missing_ok=True)
                self._write_shard(npy, index_file, shard, extractor, lambda: progress(1))
        for stale in files.files():  # shards of an earlier, longer listing
            if stale.name not in expected:
                stale.unlink()
        return self._load_corpus(corpus, utts)

    # -- reading --------------------------------------------------------------

    def _load_corpus(self, corpus: str, utts: Sequence[Utterance]) -> dict[str, str]:
        skipped = {}
        paths = {u.utt_id: str(u.path) for u in utts}
        for index_file in Layout.shards(self.root, corpus).indexes():
            index = json.loads(index_file.read_text())
            if index["features"] != self.fingerprint:
                raise ValueError(
                    f"{index_file}: cached with other feature settings (ours != cached: "
                    f"{self.cfg.describe_mismatch(index['feature_config'])}); "
                    f"run `sercloak prepare` again"
                )
            npy = FeatureShards.array_of(index_file)
            for e in index["utterances"]:
                if "skipped" in e:
                    skipped[paths.get(e["utt_id"], e["utt_id"])] = e["skipped"]
                else:
                    self._index[e["utt_id"]] = (npy, e["offset"], e["n_frames"])
        return skipped

    def open(self, corpora: Sequence[str]) -> FeatureCache:
        """Index the already-built caches of `corpora` for reading."""
        for corpus in corpora:
            if not Layout.shards(self.root, corpus).folder.is_dir():
                raise FileNotFoundError(f"no feature cache for {corpus!r} in {self.root}: "
                                        f"run `sercloak prepare` first")
            self._load_corpus(corpus, [])
        return self

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self._index

    def n_frames(self, utt_id: str) -> int:
        return self._index[utt_id][2]

    def get(self, utt_id: str) -> np.ndarray:
        """(frames, n_mels) log-mel of one utterance: a read-only view of the mmap."""
        npy, offset, n = self._index[utt_id]
        if npy not in self._arrays:
            self._arrays[npy] = np.load(npy, mmap_mode="r")
        return self._arrays[npy][offset : offset + n]
