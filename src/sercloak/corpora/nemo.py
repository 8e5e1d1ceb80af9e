"""nEMO (Christop, 2024), Polish emotional speech.

Layout: ``samples/<file_id stem>.<ext>`` and ``data.tsv`` with the tab-separated
columns file_id, emotion, raw_text, normalized_text, speaker_id, gender, age.
Values may carry stray whitespace (speaker_id does, in the real release).
"""

from __future__ import annotations

import csv
from pathlib import Path

from .record import (
    CorpusLayoutError,
    CorpusListing,
    clean,
    find_dir,
    find_file,
    index_audio,
    make_utterance,
    normalise_gender,
)

NAME = "nemo"
_EMOTIONS = {"anger": "angry", "happiness": "happy", "sadness": "sad", "neutral": "neutral"}
_OTHER = {"fear", "surprised", "surprise"}
_COLUMNS = ("file_id", "emotion", "speaker_id", "gender")


def _read_rows(tsv: Path) -> list[tuple[int, dict[str, str]]]:
    with open(tsv, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [clean(h).lower() for h in next(reader, [])]
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise CorpusLayoutError(
                f"nEMO: {tsv} lacks the column(s) {', '.join(missing)}; "
                f"expected {', '.join(_COLUMNS)} (tab-separated), found {header}"
            )
        return [
            (line_no, {h: clean(v) for h, v in zip(header, row, strict=False)})
            for line_no, row in enumerate(reader, start=2)
            if any(v.strip() for v in row)
        ]


def load(root: Path) -> CorpusListing:
    root = Path(root)
    tsv = find_file(root, "data.tsv")
    samples = find_dir(root, "samples")
    if tsv is None or samples is None:
        raise CorpusLayoutError(
            f"nEMO: expected {root}/data.tsv and {root}/samples/ with the audio files; "
            f"found data.tsv={'yes' if tsv else 'no'}, samples/={'yes' if samples else 'no'}"
        )
    audio = index_audio(samples)
    listing = CorpusListing(NAME)
    listed = set()
    for line_no, row in _read_rows(tsv):
        stem = Path(row["file_id"]).stem.strip().lower()
        listed.add(stem)
        where = f"{tsv}:{line_no}"
        path = audio.get(stem)
        if path is None:
            listing.skip(where, f"no audio file for {row['file_id']!r} in {samples}")
            continue
        label = row["emotion"].lower()
        gender = normalise_gender(row["gender"])
        if label not in _EMOTIONS and label not in _OTHER:
            listing.skip(path, f"unknown emotion label {row['emotion']!r} ({where})")
        elif gender is None:
            listing.skip(path, f"unknown gender {row['gender']!r} ({where})")
        elif not row["speaker_id"]:
            listing.skip(path, f"empty speaker_id ({where})")
        else:
            make_utterance(
                listing, path, path.stem.strip(), row["speaker_id"], gender,
                _EMOTIONS.get(label), label,
            )
    for stem, path in audio.items():
        if stem not in listed:
            listing.skip(path, f"no row in {tsv.name}")
    return listing
