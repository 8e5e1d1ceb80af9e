"""`sercloak export`: one experiment setting as a self-contained, hash-checked bundle.

    BUNDLE/
      manifest.json          format, bundle_id, every file's SHA-256, the design, feature
                             settings, labels, the setting and its measured figures
      client/mel_filterbank.npy
      client/cloak.npz       a spectrogram design's cloak (NumPy arrays + JSON header, no
                             pickle), when it has one
      client/voicenorm.json  voice normalisation's reference voice, when it has one
      server/emotion.onnx    a spectrogram design's emotion model (standardisation inside)
      client/front.onnx      the embedding design: the split network's device part,
      client/embedding.npz   its noise scales (the client adds the noise),
      server/back.onnx       and its server part

The manifest's `design` is ``spectrogram`` (cloaked log-mel features are sent)
or ``embedding`` (a noisy k-dimensional sequence per 2 s window is sent). The
client part is all a device needs (`serving.client`); the server part is all
the service needs (onnxruntime, no torch). `bundle_id` is the hash of the file
hashes, so any change to any file changes it; `read_manifest` refuses a
bundle whose files do not match their recorded hashes. Every ONNX model is
checked against its torch model on real protected segments of the fold's test
speakers before the bundle is written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

BUNDLE_FORMAT = "sercloak.bundle/2"
DESIGNS = ("spectrogram", "embedding")
ONNX_TOLERANCE = 1e-3  # largest |logit difference| between ONNX and torch accepted


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def bundle_id(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(bundle: Path | str) -> dict:
    """The manifest of a bundle whose every file matches its recorded hash."""
    bundle = Path(bundle)
    file = bundle / "manifest.json"
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{file}: not a readable bundle manifest ({err})") from err
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{file}: not a {BUNDLE_FORMAT} manifest (format "
                         f"{manifest.get('format')!r}: export the setting again)")
    for name, digest in manifest["files"].items():
        path = bundle / name
        if not path.is_file():
            raise ValueError(f"{bundle}: {name} is missing")
        if sha256(path) != digest:
            raise ValueError(f"{bundle}: {name} does not match its hash in manifest.json")
    if bundle_id(manifest["files"]) != manifest["bundle_id"]:
        raise ValueError(f"{file}: bundle_id does not match its files' hashes")
    return manifest


def find_entry(results: dict, setting: str, position: int) -> tuple[dict, dict]:
    """(entry, point) of the results.json entry named METHOD, METHOD:SR (e.g.
    cloak_adversarial:60) or METHOD:K (e.g. embedding:16) at the fold in `position` of the
    run's folds (each fold may have chosen its own point)."""
    method, _, value = setting.partition(":")

    def number(point: dict) -> float:
        return point["dims"] if point["dims"] is not None else point["suppression_ratio"]

    entries = [e for e in results["cloak"] if e["method"] == method
               and (not value or round(number(e["points"][position])) == int(value))]
    known = sorted(f"{e['method']}:{number(e['points'][position]):g}" for e in results["cloak"])
    if len(entries) != 1:
        raise ValueError(f"setting {setting!r} names {len(entries)} entries of results.json "
                         f"for this fold (known: {', '.join(known)})")
    return entries[0], entries[0]["points"][position]
