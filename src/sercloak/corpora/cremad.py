"""CREMA-D (Cao et al., 2014).

Layout: ``AudioWAV/AAAA_SSS_EEE_LL.<ext>`` (actor id, sentence, emotion, level)
and ``VideoDemographics.csv`` with columns ActorID, Age, Sex, Race, Ethnicity.
ANG/HAP/SAD/NEU are the four classes; DIS and FEA are left out. The release's
``1076_MTI_SAD_XX`` is known to be broken and is skipped.
"""

from __future__ import annotations

import csv
import re
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

NAME = "cremad"
_EMOTIONS = {"ANG": "angry", "HAP": "happy", "SAD": "sad", "NEU": "neutral"}
_OTHER = {"DIS", "FEA"}
_BROKEN = {"1076_mti_sad_xx"}
_STEM = re.compile(r"^(\d{4})_([a-z]{3})_([a-z]{3})_([a-z]{2})$", re.IGNORECASE)


def _read_sexes(csv_path: Path) -> dict[str, str]:
    """ActorID -> gender from VideoDemographics.csv."""
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [clean(h).lower() for h in next(reader, [])]
        if "actorid" not in header or "sex" not in header:
            raise CorpusLayoutError(
                f"CREMA-D: {csv_path} needs the columns ActorID and Sex, found {header}"
            )
        i_actor, i_sex = header.index("actorid"), header.index("sex")
        sexes = {}
        for row in reader:
            if len(row) > max(i_actor, i_sex) and clean(row[i_actor]):
                sexes[clean(row[i_actor])] = clean(row[i_sex])
        return sexes


def load(root: Path) -> CorpusListing:
    root = Path(root)
    audio_dir = find_dir(root, "AudioWAV")
    demographics = find_file(root, "VideoDemographics.csv")
    if audio_dir is None or demographics is None:
        raise CorpusLayoutError(
            f"CREMA-D: expected {root}/AudioWAV/ (files like 1001_DFA_ANG_XX.wav) and "
            f"{root}/VideoDemographics.csv; found AudioWAV/={'yes' if audio_dir else 'no'}, "
            f"VideoDemographics.csv={'yes' if demographics else 'no'}"
        )
    sexes = _read_sexes(demographics)
    listing = CorpusListing(NAME)
    for stem, path in index_audio(audio_dir).items():
        m = _STEM.match(stem)
        if not m:
            listing.skip(path, "file name does not follow AAAA_SSS_EEE_LL")
            continue
        if stem in _BROKEN:
            listing.skip(path, "known broken file in the CREMA-D release")
            continue
        actor, _, code, _ = m.groups()
        code = code.upper()
        gender = normalise_gender(sexes.get(actor, ""))
        if code not in _EMOTIONS and code not in _OTHER:
            listing.skip(path, f"unknown emotion code {code!r}")
        elif gender is None:
            listing.skip(path, f"actor {actor} has no usable Sex in {demographics.name}")
        else:
            make_utterance(listing, path, path.stem.strip(), actor, gender,
                           _EMOTIONS.get(code), code)
    return listing
