"""MSP-Improv (Busso et al., 2017).

Labels come from ``Evaluation.txt``, whose consensus lines read
``UTD-IMPROV-S01A-F01-T-FM01.avi; A; A:3.0; V:2.5; D:2.0 ; N:2.0;``
(A anger, H happy, S sad, N neutral, O other, X no agreement); the lines of
individual evaluators that follow are ignored. Audio lives at
``sessionK/S01A/T/MSP-IMPROV-S01A-F01-T-FM01.<ext>``: the label file says
"UTD-IMPROV" where the audio says "MSP-IMPROV", so both are matched on the
part after "IMPROV-". The speaker (F01, M03, ...) carries the gender letter.
Recording types: T target and S other improvised sentences (kept by default,
as the paper), R read and P natural interaction (dropped by default).
"""

from __future__ import annotations

import re
from pathlib import Path

from .record import CorpusLayoutError, CorpusListing, find_file, index_audio, make_utterance

NAME = "msp_improv"
_EMOTIONS = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral"}
_OTHER = {"O": "other", "X": "no agreement"}
_CONSENSUS = re.compile(
    r"^\s*(?:UTD|MSP)-IMPROV-([A-Z0-9-]+?)\.\w+\s*;\s*([A-Za-z])\s*;", re.IGNORECASE
)
_KEY = re.compile(r"^s\d+[a-z]-([fm])(\d+)-([a-z])-[a-z0-9]+$", re.IGNORECASE)


def _labels(evaluation: Path) -> dict[str, str]:
    """Key after 'IMPROV-' (lower case) -> consensus emotion letter."""
    labels = {}
    for line in evaluation.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _CONSENSUS.match(line)
        if m:
            labels[m.group(1).lower()] = m.group(2).upper()
    return labels


OPTIONS = {"types": "recording types to keep (default TS: improvised)"}


def load(root: Path, types: str = "TS") -> CorpusListing:
    root = Path(root)
    evaluation = find_file(root, "Evaluation.txt")
    if evaluation is None:
        raise CorpusLayoutError(
            f"MSP-Improv: expected {root}/Evaluation.txt and audio under "
            f"{root}/sessionK/S01A/T/MSP-IMPROV-S01A-F01-T-FM01.wav"
        )
    labels = _labels(evaluation)
    if not labels:
        raise CorpusLayoutError(
            f"MSP-Improv: {evaluation} has no lines like "
            f"'UTD-IMPROV-S01A-F01-T-FM01.avi; A; A:3.0; ...'"
        )
    audio = {
        stem.split("improv-", 1)[1]: path
        for stem, path in index_audio(root, recursive=True).items()
        if "improv-" in stem
    }
    if not audio:
        raise CorpusLayoutError(f"MSP-Improv: no MSP-IMPROV-*.wav audio found under {root}")
    keep_types = {t.upper() for t in types}
    listing = CorpusListing(NAME)
    for key, path in audio.items():
        m = _KEY.match(key)
        if not m:
            listing.skip(path, "file name does not follow MSP-IMPROV-S01A-F01-T-FM01")
            continue
        letter, number, rec_type = m.group(1).upper(), m.group(2), m.group(3).upper()
        if rec_type not in keep_types:
            listing.excluded[f"recording type {rec_type}"] += 1
            continue
        if key not in labels:
            listing.skip(path, f"no consensus line in {evaluation.name}")
            continue
        code = labels[key]
        if code not in _EMOTIONS and code not in _OTHER:
            listing.skip(path, f"unknown emotion code {code!r} in {evaluation.name}")
            continue
        gender = "female" if letter == "F" else "male"
        make_utterance(listing, path, path.stem.strip(), f"{letter}{number}", gender,
                       _EMOTIONS.get(code), _OTHER.get(code, code))
    return listing
