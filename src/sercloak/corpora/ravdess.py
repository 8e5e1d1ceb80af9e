"""RAVDESS (Livingstone & Russo, 2018), speech part.

Layout: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.<ext>`` where MM is the modality
(03 audio-only), VV the vocal channel (01 speech, 02 song), EE the emotion,
II intensity, SS statement, RR repetition and AA the actor. Odd actors are
male, even actors female. Calm (02) is outside the four classes unless
``calm_as_neutral`` maps it to neutral.
"""

from __future__ import annotations

import re
from pathlib import Path

from .record import CorpusLayoutError, CorpusListing, index_audio, make_utterance

NAME = "ravdess"
_CODES = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
_KEEP = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry"}
_STEM = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_ACTOR_DIR = re.compile(r"^actor_\d+$", re.IGNORECASE)


def _actor_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and _ACTOR_DIR.match(d.name.strip()))


def find_root(root: Path) -> Path:
    """The folder holding Actor_NN/; the download's one extra level is accepted."""
    if not root.is_dir():
        raise CorpusLayoutError(f"RAVDESS: {root} is not a folder")
    if _actor_dirs(root):
        return root
    nested = [d for d in root.iterdir() if d.is_dir() and _actor_dirs(d)]
    if len(nested) == 1:
        return nested[0]
    raise CorpusLayoutError(
        f"RAVDESS: expected folders Actor_01 ... Actor_24 holding files named like "
        f"03-01-05-01-02-01-12.wav in {root}, found none"
    )


OPTIONS = {"calm_as_neutral": "count calm (02) as neutral instead of leaving it out"}


def load(root: Path, calm_as_neutral: bool = False) -> CorpusListing:
    root = find_root(Path(root))
    listing = CorpusListing(NAME)
    keep = dict(_KEEP, calm="neutral") if calm_as_neutral else _KEEP
    for actor_dir in _actor_dirs(root):
        for stem, path in index_audio(actor_dir).items():
            m = _STEM.match(stem)
            if not m:
                listing.skip(path, "file name does not follow MM-VV-EE-II-SS-RR-AA")
                continue
            modality, channel, code, _, _, _, actor = m.groups()
            if modality != "03" or channel != "01":
                listing.excluded["not audio-only speech"] += 1
                continue
            if code not in _CODES:
                listing.skip(path, f"unknown emotion code {code!r}")
                continue
            label = _CODES[code]
            gender = "male" if int(actor) % 2 == 1 else "female"
            make_utterance(listing, path, path.stem.strip(), actor, gender, keep.get(label), label)
    return listing
