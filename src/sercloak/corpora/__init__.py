"""Corpus loaders: one module per corpus, all returning a `CorpusListing`.

`load_corpus("ravdess", path)` dispatches by name; a name that is not a known
corpus but comes with a ``.csv`` path is read as a generic manifest.
"""

from __future__ import annotations

import inspect
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

MODULES = {"ravdess": ravdess, "nemo": nemo, "cremad": cremad, "iemocap": iemocap,
           "msp_improv": msp_improv, "emodb": emodb, "synthetic": synthetic}
LOADERS = {name: module.load for name, module in MODULES.items()}
_ALIASES = {"crema_d": "cremad", "mspimprov": "msp_improv", "msp": "msp_improv", "emo_db": "emodb"}

__all__ = [
    "EMOTIONS", "GENDERS", "LOADERS", "CorpusLayoutError", "CorpusListing", "Skipped",
    "Utterance", "canonical_name", "load_corpus", "loader_options",
]


def loader_options() -> list[tuple[str, str, object, str]]:
    """(corpus, keyword, default, help) of every loader option a corpus module declares
    (its `OPTIONS`): what the command line offers as --CORPUS-KEYWORD."""
    return [(corpus, keyword, inspect.signature(module.load).parameters[keyword].default, text)
            for corpus, module in MODULES.items()
            for keyword, text in getattr(module, "OPTIONS", {}).items()]


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
