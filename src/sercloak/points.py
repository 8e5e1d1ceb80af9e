"""What names a method's runs: its operating points, and the short hashes that name their
folders and make a cached score reusable.

The experiment's configuration builds `Point`s, the designs score them, the
driver reports them; all three ask this module, which imports none of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Point:
    """One operating point of a method: its name (the stem of its files) and what sets it."""

    name: str  # cloak_sr60, adversarial_sr0, mcadams, posteriors, embedding_k16, ...
    suppression_ratio: int = 0
    adversarial: bool = False
    dims: int | None = None  # the embedding design's k


def digest(thing) -> str:
    """A short hash of a JSON-able description: what names a run's folder."""
    return hashlib.sha1(json.dumps(thing, sort_keys=True).encode()).hexdigest()[:8]


def unseeded(settings: dict) -> dict:
    """Settings without their seed: seeds are folders of their own."""
    return {k: v for k, v in settings.items() if k != "seed"}


def made_by(file: Path, attack_config: dict) -> dict | None:
    """The JSON result in `file` if there is one and attackers configured as
    `attack_config` made it (what makes a cached score reusable)."""
    if not file.is_file():
        return None
    result = json.loads(file.read_text())
    return result if result.get("attack_config") == attack_config else None
