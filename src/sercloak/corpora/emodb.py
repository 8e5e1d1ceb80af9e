"""Berlin Database of Emotional Speech, EmoDB (Burkhardt et al., 2005).

Layout: ``wav/SSTTTEV.<ext>``: speaker (2 digits), text code (3), emotion
letter, version letter. W anger, F happiness (Freude), T sadness (Trauer),
N neutral; L boredom, E disgust, A fear are left out. The ten speakers'
genders are fixed by the corpus documentation.
"""

from __future__ import annotations

import re
from pathlib import Path

from .record import CorpusLayoutError, CorpusListing, find_dir, index_audio, make_utterance

NAME = "emodb"
_EMOTIONS = {"W": "angry", "F": "happy", "T": "sad", "N": "neutral"}
_OTHER = {"L": "boredom", "E": "disgust", "A": "fear"}
_MALE = {"03", "10", "11", "12", "15"}
_FEMALE = {"08", "09", "13", "14", "16"}
_STEM = re.compile(r"^(\d\d)([a-z]\d\d)([a-z])([a-z])$", re.IGNORECASE)


def load(root: Path) -> CorpusListing:
    root = Path(root)
    wav_dir = find_dir(root, "wav")
    if wav_dir is None:
        raise CorpusLayoutError(f"EmoDB: expected {root}/wav/ with files like 03a01Wa.wav")
    listing = CorpusListing(NAME)
    for stem, path in index_audio(wav_dir).items():
        m = _STEM.match(stem)
        if not m:
            listing.skip(path, "file name does not follow SSTTTEV (e.g. 03a01Wa)")
            continue
        speaker, _, letter, _ = m.groups()
        letter = letter.upper()
        gender = "male" if speaker in _MALE else "female" if speaker in _FEMALE else None
        if letter not in _EMOTIONS and letter not in _OTHER:
            listing.skip(path, f"unknown emotion letter {letter!r}")
        elif gender is None:
            listing.skip(path, f"unknown EmoDB speaker {speaker!r}")
        else:
            label = _OTHER.get(letter, letter)
            make_utterance(listing, path, path.stem.strip(), speaker, gender,
                           _EMOTIONS.get(letter), label)
    return listing
