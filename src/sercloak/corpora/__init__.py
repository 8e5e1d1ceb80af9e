"""Corpus loaders: one module per corpus, all returning a `CorpusListing`.

`load_corpus("ravdess", path)` dispatches by name; a name that is not a known
corpus but comes with a ``.csv`` path is read as a generic manifest.
"""

from __future__ import annotations

from pathlib import Path

from . import cremad, emodb, iemocap, manifest, msp_improv, nemo, ravdess, synthetic
from .record import (
    EMOTIONS,
    GENDERS,
    CorpusLayoutError,
    CorpusListing,
    Skipped,
    Utterance,
)

LOADERS = {
    "ravdess": ravdess.load,
    "nemo": nemo.load,
    "cremad": cremad.load,
    "iemocap": iemocap.load,
    "msp_improv": msp_improv.load,
    "emodb": emodb.load,
    "synthetic": synthetic.load,
}
_ALIASES = {"crema_d": "cremad", "mspimprov": "msp_improv", "msp": "msp_improv", "emo_db": "emodb"}

__all__ = [
    "EMOTIONS", "GENDERS", "LOADERS", "CorpusLayoutError", "CorpusListing", "Skipped",
    "Utterance", "canonical_name", "load_corpus",
]


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def load_corpus(name: str, path: Path | str, **options) -> CorpusListing:
    """Read corpus `name` at `path`; unknown names with a .csv path are manifests."""
    key = canonical_name(name)
    path = Path(path)
    if key in LOADERS:
        return LOADERS[key](path, **options)
    if path.suffix.lower() == ".csv" or (path / "manifest.csv").is_file():
        return manifest.load(path, corpus=key)
    raise CorpusLayoutError(
        f"unknown corpus {name!r}: use one of {', '.join(sorted(LOADERS))}, "
        f"or give a CSV manifest (path, speaker, gender, emotion) as {name}=FILE.csv"
    )
