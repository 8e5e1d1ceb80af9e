"""`sercloak prepare`: corpora -> manifest.csv, feature cache, folds.json, summary.

Every step is safe to re-run: the corpora are listed again (cheap), finished
feature shards are reused, and manifest, folds and summary are rewritten
atomically from the result. Bad files are reported and skipped; they never
stop the rest of the corpus.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .cache import FeatureCache
from .corpora import EMOTIONS, GENDERS, CorpusListing, Utterance, canonical_name, load_corpus
from .features import FeatureConfig
from .files import atomic_write, write_text
from .folds import make_folds
from .layout import Layout
from .segments import segment_starts

MANIFEST_COLUMNS = ("utt_id", "corpus", "speaker", "gender", "emotion", "path", "duration_s")


@dataclass
class Prepared:
    utterances: list[Utterance]
    folds: list[dict]
    summary: dict
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # corpus, path, reason


def _dedupe(listing: CorpusListing) -> list[Utterance]:
    """Drop repeated utterance ids (two files with one stem), reporting the later ones."""
    seen, unique = set(), []
    for u in listing.utterances:
        if u.utt_id in seen:
            listing.skip(u.path, f"duplicate utterance id {u.utt_id!r}")
        else:
            seen.add(u.utt_id)
            unique.append(u)
    return unique


def write_manifest(path: Path, utterances: list[Utterance]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(MANIFEST_COLUMNS)
            for u in utterances:
                writer.writerow([u.utt_id, u.corpus, u.speaker, u.gender, u.emotion,
                                 str(u.path), str(u.duration_s)])

    atomic_write(path, write)


def read_manifest(path: Path) -> list[Utterance]:
    """The utterances a previous `prepare` wrote to `manifest.csv`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `sercloak prepare` first")
    with open(path, newline="", encoding="utf-8") as f:
        return [
            Utterance(r["utt_id"], r["corpus"], r["speaker"], r["gender"], r["emotion"],
                      Path(r["path"]), float(r["duration_s"]))
            for r in csv.DictReader(f)
        ]


def summarise(utterances: list[Utterance], listings: dict[str, CorpusListing],
              skipped: list[tuple[str, str, str]], cache: FeatureCache,
              cfg: FeatureConfig) -> dict:
    """Counts per corpus x emotion (utterances and 2 s training segments), speakers per gender."""
    out = {}
    for corpus, listing in listings.items():
        utts = [u for u in utterances if u.corpus == corpus]
        segs = Counter()
        for u in utts:
            segs[u.emotion] += len(segment_starts(cache.n_frames(u.utt_id), cfg.train_hop_frames,
                                                  cfg.segment_frames))
        speakers = {u.speaker: u.gender for u in utts}
        out[corpus] = {
            "utterances": {e: sum(u.emotion == e for u in utts) for e in EMOTIONS},
            "segments": {e: segs[e] for e in EMOTIONS},
            "speakers": {g: sum(v == g for v in speakers.values()) for g in GENDERS},
            "hours": round(sum(u.duration_s for u in utts) / 3600, 3),
            "excluded": dict(sorted(listing.excluded.items())),
            "skipped": [{"path": p, "reason": r} for c, p, r in skipped if c == corpus],
        }
    return out


def format_summary(summary: dict) -> str:
    """Markdown tables in the shape of the paper's Table 1, plus speakers and skips."""
    head = "| corpus | " + " | ".join(EMOTIONS) + " | all |"
    rule = "|---" * (len(EMOTIONS) + 2) + "|"
    lines = ["Utterances (2 s training segments) per corpus and emotion", "", head, rule]
    total_u, total_s = Counter(), Counter()
    for corpus, s in summary.items():
        cells = [f"{s['utterances'][e]} ({s['segments'][e]})" for e in EMOTIONS]
        n_u, n_s = sum(s["utterances"].values()), sum(s["segments"].values())
        lines.append(f"| {corpus} | " + " | ".join(cells) + f" | {n_u} ({n_s}) |")
        total_u.update(s["utterances"])
        total_s.update(s["segments"])
    if len(summary) > 1:
        cells = [f"{total_u[e]} ({total_s[e]})" for e in EMOTIONS]
        lines.append("| all | " + " | ".join(cells) +
                     f" | {sum(total_u.values())} ({sum(total_s.values())}) |")
    lines += ["", "| corpus | female speakers | male speakers | hours | left out (label: count) |",
              "|---|---|---|---|---|"]
    for corpus, s in summary.items():
        excluded = ", ".join(f"{k}: {v}" for k, v in s["excluded"].items()) or "none"
        lines.append(f"| {corpus} | {s['speakers']['female']} | {s['speakers']['male']} | "
                     f"{s['hours']} | {excluded} |")
    skipped = [(c, x) for c, s in summary.items() for x in s["skipped"]]
    lines += ["", f"Skipped files: {len(skipped)}"]
    lines += [f"- [{c}] {x['path']}: {x['reason']}" for c, x in skipped]
    return "\n".join(lines) + "\n"


def prepare(corpora: dict[str, Path], workdir: Path, seed: int = 0, n_folds: int = 5,
            cfg: FeatureConfig = FeatureConfig(), loader_options: dict | None = None,
            show_progress: bool = True) -> Prepared:
    """Run the whole preparation; `corpora` maps corpus name -> path.

    `loader_options` maps a corpus name to keyword options of its loader
    (e.g. ``{"ravdess": {"calm_as_neutral": True}}``).
    """
    started = time.perf_counter()
    layout = Layout(workdir)
    layout.root.mkdir(parents=True, exist_ok=True)
    loader_options = loader_options or {}
    cache = FeatureCache(layout.root, cfg)
    listings: dict[str, CorpusListing] = {}
    usable: list[Utterance] = []
    skipped: list[tuple[str, str, str]] = []
    for name, path in corpora.items():
        listing = load_corpus(name, path, **loader_options.get(canonical_name(name), {}))
        if listing.corpus in listings:
            raise ValueError(f"corpus {listing.corpus!r} given twice")
        listings[listing.corpus] = listing
        utts = _dedupe(listing)
        with tqdm(total=len(utts), desc=f"features {listing.corpus}", unit="utt",
                  disable=not show_progress) as bar:
            bad = cache.build(listing.corpus, utts, progress=bar.update)
        usable += [u for u in utts if u.utt_id in cache]
        skipped += [(listing.corpus, s.path, s.reason) for s in listing.skipped]
        skipped += [(listing.corpus, p, r) for p, r in sorted(bad.items())]
    if not usable:
        raise ValueError("no usable utterances in the four emotion classes were found")
    usable.sort(key=lambda u: u.utt_id)
    folds = make_folds(usable, n_folds=n_folds, seed=seed)
    summary = summarise(usable, listings, skipped, cache, cfg)

    write_manifest(layout.manifest, usable)
    write_text(layout.folds, json.dumps(folds, indent=1))
    meta = {"seed": seed, "corpora": {k: str(v) for k, v in corpora.items()},
            "feature_config": cfg.to_dict(), "wall_time_s": round(time.perf_counter() - started, 2),
            "corpus_summary": summary}
    write_text(layout.summary, json.dumps(meta, indent=1))
    write_text(layout.summary_md, format_summary(summary))
    return Prepared(usable, folds, meta, skipped)
