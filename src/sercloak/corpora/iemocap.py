"""IEMOCAP (Busso et al., 2008).

Layout: ``SessionN/sentences/wav/<dialog>/<utt>.<ext>`` with labels in
``SessionN/dialog/EmoEvaluation/<dialog>.txt``, one line per utterance such as
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]``.
The speaker is the session plus the gender letter just before the utterance
number (Ses01F_impro01_M003 is speaker Ses01M, male). Following the paper,
only improvised dialogs are used by default and ``exc`` is merged into happy.
The release carries macOS ``._*`` files; they are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from .record import CorpusLayoutError, CorpusListing, find_dir, index_audio, make_utterance

NAME = "iemocap"
_EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
_LABEL_LINE = re.compile(r"^\s*\[[^\]]*\]\s+(Ses\S+)\s+(\w+)\s+\[", re.IGNORECASE)
_UTT = re.compile(r"^(ses\d+)[fm]_(.+)_([fm])\d+$", re.IGNORECASE)
_SESSION = re.compile(r"^session\s*\d+$", re.IGNORECASE)


def _labels(eval_dir: Path) -> dict[str, str]:
    """Utterance id (lower case) -> native label, from every dialog file of a session."""
    labels = {}
    for txt in sorted(eval_dir.glob("*.txt")):
        if txt.name.startswith("._"):
            continue
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _LABEL_LINE.match(line)
            if m:
                labels[m.group(1).strip().lower()] = m.group(2).strip().lower()
    return labels


OPTIONS = {"scripted": "also use the scripted dialogs (default: improvised only)"}


def load(root: Path, scripted: bool = False) -> CorpusListing:
    root = Path(root)
    sessions = sorted(d for d in root.iterdir() if d.is_dir() and _SESSION.match(d.name.strip())) \
        if root.is_dir() else []
    if not sessions:
        raise CorpusLayoutError(
            f"IEMOCAP: expected folders Session1 ... Session5 in {root}, each with "
            f"sentences/wav/<dialog>/ and dialog/EmoEvaluation/<dialog>.txt"
        )
    listing = CorpusListing(NAME)
    for session in sessions:
        wav_root = find_dir(session, "sentences")
        wav_root = find_dir(wav_root, "wav") if wav_root else None
        eval_dir = find_dir(session, "dialog")
        eval_dir = find_dir(eval_dir, "EmoEvaluation") if eval_dir else None
        if wav_root is None or eval_dir is None:
            raise CorpusLayoutError(
                f"IEMOCAP: {session} lacks sentences/wav/ or dialog/EmoEvaluation/"
            )
        labels = _labels(eval_dir)
        for dialog in sorted(d for d in wav_root.iterdir() if d.is_dir()):
            if not scripted and "impro" not in dialog.name.lower():
                continue
            for stem, path in index_audio(dialog).items():
                m = _UTT.match(stem)
                if not m:
                    listing.skip(path, "utterance name does not follow SesNNX_<dialog>_XNNN")
                    continue
                if stem not in labels:
                    listing.skip(path, f"no label line in {eval_dir}/{dialog.name}.txt")
                    continue
                session_id, _, letter = m.groups()
                speaker = session_id.capitalize() + letter.upper()  # e.g. Ses01M
                gender = "female" if letter.lower() == "f" else "male"
                label = labels[stem]
                make_utterance(listing, path, path.stem.strip(), speaker, gender,
                               _EMOTIONS.get(label), label)
    return listing
