"""The one record type every corpus loader returns, and helpers the loaders share.

A loader turns a corpus in its native layout into a `CorpusListing`:
the usable utterances of the four emotion classes, a count of the utterances
whose label lies outside them, and the files it had to skip (with the reason).
Corpus quirks live in the loader modules; nothing downstream knows about them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

EMOTIONS = ("neutral", "happy", "sad", "angry")
GENDERS = ("female", "male")

# Extensions soundfile (libsndfile) can decode; files are matched by stem, so a
# corpus re-encoded from WAV to FLAC loads unchanged.
AUDIO_EXTENSIONS = frozenset(
    "." + fmt.lower() for fmt in sf.available_formats()
) | {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3", ".opus"}


class CorpusLayoutError(ValueError):
    """The folder given for a corpus does not look like that corpus."""


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # unique across corpora: "<corpus>:<native id>"
    corpus: str
    speaker: str  # unique across corpora: "<corpus>:<native speaker id>"
    gender: str  # "female" | "male"
    emotion: str | None  # one of EMOTIONS, or None outside the four classes
    path: Path
    duration_s: float


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class CorpusListing:
    """What a loader found: usable utterances, labels left out, files skipped."""

    corpus: str
    utterances: list[Utterance] = field(default_factory=list)
    excluded: Counter = field(default_factory=Counter)  # native label -> count
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, utt: Utterance, native_label: str) -> None:
        """Keep `utt` if its emotion is one of the four classes, else count it as excluded."""
        if utt.emotion is None:
            self.excluded[native_label] += 1
        else:
            self.utterances.append(utt)

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append(Skipped(str(path), reason))


def clean(value: str) -> str:
    """Strip the stray whitespace real metadata files carry."""
    return value.strip()


def normalise_gender(value: str) -> str | None:
    """Map the usual spellings of gender to "female"/"male"; None if unrecognised."""
    v = clean(value).lower()
    if v in ("f", "female", "woman", "w", "k", "kobieta"):
        return "female"
    if v in ("m", "male", "man", "mezczyzna"):
        return "male"
    return None


def index_audio(folder: Path, recursive: bool = False) -> dict[str, Path]:
    """Map lower-cased file stem -> path for every audio file in `folder`.

    macOS ``._*`` files are ignored everywhere, so no loader needs to care.
    """
    pattern = "**/*" if recursive else "*"
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        if path.name.startswith("._"):  # macOS AppleDouble junk shipped in some releases
            continue
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
            found.setdefault(path.stem.strip().lower(), path)
    return found


def find_dir(parent: Path, name: str) -> Path | None:
    """Find child folder `name` of `parent`, ignoring letter case and stray whitespace."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    wanted = name.strip().lower()
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.strip().lower() == wanted:
            return child
    return None


def find_file(parent: Path, name: str) -> Path | None:
    """Find file `name` in `parent`, ignoring letter case and stray whitespace."""
    exact = parent / name
    if exact.is_file():
        return exact
    if not parent.is_dir():
        return None
    wanted = name.strip().lower()
    for child in sorted(parent.iterdir()):
        if child.is_file() and child.name.strip().lower() == wanted:
            return child
    return None


def audio_duration(path: Path) -> float:
    """Duration in seconds from the file header (raises on unreadable files)."""
    info = sf.info(str(path))
    return info.frames / info.samplerate if info.samplerate else 0.0


def make_utterance(
    listing: CorpusListing,
    path: Path,
    native_id: str,
    native_speaker: str,
    gender: str,
    emotion: str | None,
    native_label: str,
) -> None:
    """Build an Utterance (reading the duration from the header) and file it in `listing`.

    Unreadable headers are skipped with the reason rather than aborting the corpus.
    """
    try:
        duration = audio_duration(path)
    except Exception as err:  # soundfile raises several types; all mean "unreadable"
        listing.skip(path, f"unreadable audio: {err}")
        return
    if emotion is not None and emotion not in EMOTIONS:
        raise ValueError(f"internal: emotion {emotion!r} not in {EMOTIONS}")
    utt = Utterance(
        utt_id=f"{listing.corpus}:{native_id}",
        corpus=listing.corpus,
        speaker=f"{listing.corpus}:{native_speaker}",
        gender=gender,
        emotion=emotion,
        path=path,
        duration_s=duration,
    )
    listing.add(utt, native_label)
