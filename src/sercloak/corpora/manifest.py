"""Any other corpus, described by a CSV manifest.

Columns: ``path, speaker, gender, emotion`` (an ``utt_id`` column is optional).
Paths are relative to the manifest's folder. Emotions may be spelled as the
four class names or their common abbreviations (``ang``, ``happiness``, ...);
other known emotions (fear, disgust, ...) and empty cells are left out and
counted; anything else is reported as an unknown label and skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .record import CorpusLayoutError, CorpusListing, clean, make_utterance, normalise_gender

_EMOTIONS = {
    "neutral": "neutral", "neu": "neutral",
    "happy": "happy", "hap": "happy", "happiness": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "angry": "angry", "ang": "angry", "anger": "angry",
}
_OTHER = {
    "", "none", "other", "oth", "xxx", "fear", "fearful", "fea", "disgust", "dis",
    "surprise", "surprised", "sur", "calm", "boredom", "contempt", "frustration", "fru",
    "excited", "exc",
}
COLUMNS = ("path", "speaker", "gender", "emotion")


def load(csv_path: Path, corpus: str | None = None) -> CorpusListing:
    csv_path = Path(csv_path)
    if csv_path.is_dir():
        csv_path = csv_path / "manifest.csv"
    if not csv_path.is_file():
        raise CorpusLayoutError(f"manifest: {csv_path} does not exist")
    name = corpus or csv_path.stem
    listing = CorpusListing(name)
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [clean(h).lower() for h in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise CorpusLayoutError(
                f"manifest: {csv_path} lacks the column(s) {', '.join(missing)}; "
                f"expected {', '.join(COLUMNS)}, found {header}"
            )
        reader.fieldnames = header
        for row in reader:
            row = {k: clean(v or "") for k, v in row.items() if k}
            where = f"{csv_path}:{reader.line_num}"
            path = Path(row["path"])
            path = path if path.is_absolute() else csv_path.parent / path
            label = row["emotion"].lower()
            gender = normalise_gender(row["gender"])
            if not path.is_file():
                listing.skip(where, f"no such audio file {path}")
            elif label not in _EMOTIONS and label not in _OTHER:
                listing.skip(path, f"unknown emotion label {row['emotion']!r} ({where})")
            elif gender is None:
                listing.skip(path, f"unknown gender {row['gender']!r} ({where})")
            elif not row["speaker"]:
                listing.skip(path, f"empty speaker ({where})")
            else:
                utt_id = row.get("utt_id") or path.stem
                make_utterance(listing, path, utt_id, row["speaker"], gender,
                               _EMOTIONS.get(label), label or "(none)")
    return listing
