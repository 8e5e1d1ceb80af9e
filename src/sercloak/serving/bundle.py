"""`sercloak export`: one experiment setting as a self-contained, hash-checked bundle.

    BUNDLE/
      manifest.json          format, bundle_id, every file's SHA-256, feature settings,
                             labels, the setting and its measured figures
      client/cloak.npz       the cloak file (NumPy arrays + JSON header, no pickle)
      client/mel_filterbank.npy
      server/emotion.onnx    the emotion model (its input standardisation inside)

The client part is all a device needs (`serving.client`); the server part
is all the service needs (onnxruntime, no torch). `bundle_id` is the hash of
the file hashes, so any change to any file changes it; `read_manifest`
refuses a bundle whose files do not match their recorded hashes. The ONNX
model is checked against the torch model on real cloaked segments of the
fold's test speakers before the bundle is written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

BUNDLE_FORMAT = "sercloak.bundle/1"
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
        raise ValueError(f"{file}: not a {BUNDLE_FORMAT} manifest")
    for name, digest in manifest["files"].items():
        path = bundle / name
        if not path.is_file():
            raise ValueError(f"{bundle}: {name} is missing")
        if sha256(path) != digest:
            raise ValueError(f"{bundle}: {name} does not match its hash in manifest.json")
    if bundle_id(manifest["files"]) != manifest["bundle_id"]:
        raise ValueError(f"{file}: bundle_id does not match its files' hashes")
    return manifest


def find_entry(results: dict, setting: str) -> dict:
    """The results.json entry named METHOD or METHOD:SR (e.g. cloak_adversarial:60)."""
    method, _, ratio = setting.partition(":")
    entries = [e for e in results["cloak"] if e.get("method") == method
               and (not ratio or round(e["suppression_ratio"]) == int(ratio))]
    known = sorted(f"{e.get('method')}:{e['suppression_ratio']:g}" for e in results["cloak"])
    if len(entries) != 1:
        raise ValueError(f"setting {setting!r} names {len(entries)} entries of results.json "
                         f"(known: {', '.join(known)})")
    return entries[0]
