"""A bundle on disk: the one owner of its file names, its checks, its signature and what
protection it states.

    BUNDLE/
      manifest.json          format, bundle_id, every file's SHA-256, the design, the
                             protection it applies, feature settings, labels, the setting
                             and its measured figures
      manifest.sig           the manifest's Ed25519 signature (`sercloak export --sign-key`)
      client/mel_filterbank.npy
      client/cloak.npz       a spectrogram design's cloak (NumPy arrays + JSON header, no
                             pickle), when it has one
      client/voicenorm.json  voice normalisation's reference voice, when it has one
      server/emotion.onnx    a spectrogram design's emotion model (standardisation inside)
      client/front.onnx      the embedding design: the split network's device part,
      client/embedding.npz   its noise scales (the client adds the noise),
      server/back.onnx       and its server part
      client/emotion.onnx    the label design: the whole emotion model, run on the device
                             (it sends the utterance's label alone; the service has no model)

`open_bundle` is the only way in: the manifest must list every file the
bundle holds (anything unlisted is refused, since some part might load it),
each name a plain relative path under ``client/`` or ``server/``, each file
matching its SHA-256; `bundle_id` (the hash of the file hashes) must match.
With a trusted public key (`sercloak keygen` makes a pair) the manifest must
carry a valid signature by its private key: a bundle that was not signed, or
was changed after signing (its manifest, hence any file), is refused.

The manifest states the protection the client applies (`protection`: a
cloak, voice normalisation, both, a split network's device part, or the
emotion model on the device that sends only its label, with the files each
needs: `PROTECTION_FILES`); the client checks that it is real
(`client.check_protection`) and fails closed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

BUNDLE_FORMAT = "sercloak.bundle/3"
ONNX_TOLERANCE = 1e-3  # largest |logit difference| between ONNX and torch accepted

# every file a bundle may hold: this module is their one owner
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FILTERBANK = "client/mel_filterbank.npy"
CLOAK = "client/cloak.npz"
VOICENORM = "client/voicenorm.json"
FRONT = "client/front.onnx"
EMBEDDING = "client/embedding.npz"
EMOTION_MODEL = "server/emotion.onnx"
BACK = "server/back.onnx"
DEVICE_MODEL = "client/emotion.onnx"
CLIENT_FILES = (FILTERBANK, CLOAK, VOICENORM, FRONT, EMBEDDING, DEVICE_MODEL)  # what a device reads
# the model each design's service runs (the label design's device sends its answer)
SERVER_MODEL = {"spectrogram": EMOTION_MODEL, "embedding": BACK, "label": None}
_NAME = re.compile(r"(client|server)/[A-Za-z0-9_][A-Za-z0-9_.-]*")

# what each kind of protection needs; the manifest's `protection.kind`
PROTECTION_FILES = {"cloak": (CLOAK,), "voicenorm": (VOICENORM,),
                    "voicenorm+cloak": (VOICENORM, CLOAK), "split": (FRONT, EMBEDDING),
                    "voicenorm+split": (VOICENORM, FRONT, EMBEDDING), "label": (DEVICE_MODEL,)}
# the design each protection belongs to: the client runs what the protection names, and a
# bundle whose design says otherwise is refused (it would run one thing and check another)
PROTECTION_DESIGN = {"cloak": "spectrogram", "voicenorm": "spectrogram",
                     "voicenorm+cloak": "spectrogram", "split": "embedding",
                     "voicenorm+split": "embedding", "label": "label"}


class BundleError(ValueError):
    """A bundle that is refused: unreadable, tampered, unsigned or unprotected."""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def bundle_id(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def check_name(name: str) -> str:
    """A bundle file name: a plain relative path under client/ or server/ (no `..`, no
    absolute path, no folder below)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise BundleError(f"manifest names a file {name!r} outside the bundle's client/ and "
                          f"server/ folders: refused")
    return name


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its folder and manifest."""

    folder: Path
    manifest: dict
    signed: bool

    @property
    def bundle_id(self) -> str:
        return self.manifest["bundle_id"]

    @property
    def design(self) -> str:
        return self.manifest["design"]

    def path(self, name: str) -> Path:
        """The file `name` (one this module names), listed and checked by the manifest."""
        if name not in self.manifest["files"]:
            raise BundleError(f"{self.folder}: {name} is not in its manifest")
        return self.folder / name

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]


def open_bundle(folder: Path | str, trust_key: bytes | None = None) -> Bundle:
    """The bundle in `folder`, every file checked against the manifest; with `trust_key`
    (a raw Ed25519 public key, `read_public_key`) its signature too. BundleError names the
    problem."""
    folder = Path(folder)
    file = folder / MANIFEST
    try:
        raw = file.read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError) as err:
        raise BundleError(f"{file}: not a readable bundle manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{file}: not a {BUNDLE_FORMAT} manifest (format {found!r}): export "
                          f"the setting again with this sercloak")
    signature = folder / SIGNATURE
    if trust_key is not None:
        if not signature.is_file():
            raise BundleError(f"{folder}: unsigned ({SIGNATURE} is missing) but a trusted key "
                              f"was given: refused")
        verify(raw, signature.read_bytes(), trust_key, folder)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{file}: no list of files")
    for name in files:
        check_name(name)
    held = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    unlisted = sorted(held - set(files) - {MANIFEST, SIGNATURE})
    if unlisted:
        raise BundleError(f"{folder}: files not in the manifest: {', '.join(unlisted)}")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or path.is_symlink():
            raise BundleError(f"{folder}: {name} is missing")
        if sha256(path) != digest:
            raise BundleError(f"{folder}: {name} does not match its hash in {MANIFEST}")
    if bundle_id(files) != manifest.get("bundle_id"):
        raise BundleError(f"{file}: bundle_id does not match its files' hashes")
    return Bundle(folder, manifest, signature.is_file())


# -- signatures ------------------------------------------------------------------------------


def public_key_file(private: Path) -> Path:
    """Where `generate_keys` puts the public key of the private key file `private`."""
    return private.with_name(private.name + ".pub")


def staging(bundle: Path) -> Path:
    """Where a bundle is written before it is renamed into place (`files.atomic_write`'s
    rule for a folder)."""
    return bundle.with_name(bundle.name + ".tmp")


def generate_keys(private: Path, public: Path) -> None:
    """A new Ed25519 key pair: the private key as PEM (readable by its owner only), the
    public key as one line of base64 (what users pin)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for path in (private, public):
        if path.exists():
            raise FileExistsError(f"{path} exists: choose another --out or remove it")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    private.parent.mkdir(parents=True, exist_ok=True)
    private.touch(mode=0o600)
    private.write_bytes(pem)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    public.write_text(base64.b64encode(raw).decode() + "\n")


def read_public_key(path: Path | str) -> bytes:
    """A public key file (`generate_keys`'s: base64 of the 32-byte key) as raw bytes."""
    path = Path(path)
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError) as err:
        raise BundleError(f"{path}: not a sercloak public key file ({err})") from err
    if len(raw) != 32:
        raise BundleError(f"{path}: an Ed25519 public key is 32 bytes, not {len(raw)}")
    return raw


def sign(folder: Path, private_key: Path | str) -> None:
    """Write the signature of `folder`'s manifest with the PEM private key file."""
    from cryptography.hazmat.primitives import serialization

    private_key = Path(private_key)
    if private_key.is_file() and private_key.stat().st_mode & 0o077:
        raise BundleError(f"{private_key}: the private key can be read by others (mode "
                          f"{private_key.stat().st_mode & 0o777:o}): whoever reads it signs as "
                          f"you; `chmod 600 {private_key}` first (and think of it as leaked)")
    try:
        key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
        signature = key.sign((folder / MANIFEST).read_bytes())
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise BundleError(f"{private_key}: not an Ed25519 private key ({err})") from err
    (folder / SIGNATURE).write_text(base64.b64encode(signature).decode() + "\n")


def verify(manifest: bytes, signature: bytes, public_key: bytes, folder: Path) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            base64.b64decode(signature.strip(), validate=True), manifest)
    except (InvalidSignature, ValueError) as err:
        raise BundleError(f"{folder}: its signature does not verify with the trusted key: "
                          f"tampered, or signed by someone else") from err


# -- the protection it states --------------------------------------------------------------


def protection_of(design: str, transform: str | None, cloaked: bool) -> str:
    """The protection kind an exported design applies."""
    if design == "label" and transform is None and not cloaked:
        return "label"
    if design == "embedding":
        return "voicenorm+split" if transform == "voicenorm" else "split"
    if transform == "voicenorm":
        return "voicenorm+cloak" if cloaked else "voicenorm"
    if transform is None and cloaked:
        return "cloak"
    raise ValueError(f"a {design} design with transform {transform!r} and no cloak protects "
                     f"nothing a bundle can ship")


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
