"""Writing a bundle (`sercloak export`): the torch side of `bundle.py`.

Three designs ship: ``spectrogram`` (a cloak, voice normalisation, or voice
normalisation then a cloak; the service's emotion model, adapted or not),
``embedding`` (the split network's device and server parts) and ``label``
(`posteriors_label`: the whole emotion model on the device, which sends the
utterance's label alone). Waveform anonymisation baselines and the other
`posteriors` answers (the floor: every window's probabilities; calibrated per
user, a service-side answer) are measurements, not something to deploy: their
export is refused, saying so.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..checkpoint import load_checkpoint
from ..cloak import Cloak
from ..data import Workdir
from ..designs.split.network import load_split
from ..features import mel_filterbank
from ..folds import DEFAULT_PROTOCOL
from ..results import comparison_file, read_results
from ..voicenorm import SETTINGS as VOICENORM_SETTINGS
from .bundle import (
    BACK,
    BUNDLE_FORMAT,
    CLOAK,
    DEVICE_MODEL,
    EMBEDDING,
    EMOTION_MODEL,
    FILTERBANK,
    FRONT,
    MANIFEST,
    ONNX_TOLERANCE,
    VOICENORM,
    bundle_id,
    find_entry,
    open_bundle,
    protection_of,
    sha256,
    sign,
    staging,
)

CHECK_SEGMENTS = 64  # real protected test segments on which ONNX must agree with torch


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path,
                 names: tuple[str, str]) -> None:
    out.parent.mkdir(exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript-based exporter warns it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(out), input_names=[names[0]],
                          output_names=[names[1]], dynamo=False,
                          dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}})


def _check_onnx(onnx_file: Path, model: torch.nn.Module, inputs: torch.Tensor) -> float:
    """Largest |output difference| between ONNX (onnxruntime) and torch on `inputs`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    ours = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0]
    with torch.no_grad():
        theirs = model(inputs).numpy()
    difference = float(np.abs(ours - theirs).max())
    if difference > ONNX_TOLERANCE:
        raise ValueError(f"{onnx_file.name} differs from torch by {difference:.2g} on real "
                         f"segments (tolerance {ONNX_TOLERANCE}); bundle not written")
    return difference


def _test_segments(wd: Workdir, fold: int, transform: str | None) -> torch.Tensor:
    """Test segments of the fold as the design's features read them."""
    if transform is not None:
        from ..experiment import protected_workdir  # the transformed features, built once

        wd = protected_workdir(wd, transform, show_progress=False)
    return wd.segments(fold, "test", "emotion", train=False).x[:CHECK_SEGMENTS]


def _spectrogram(wd: Workdir, protocol: str, seed: int, fold: int, entry: dict, point: dict,
                 tmp: Path) -> dict:
    """The cloak and the voice normalisation settings (what the method has) and the emotion
    model; returns the manifest's part."""
    spec = entry["spec"]
    transform, cloaked = spec["transform"], spec["cloak"] is not None
    files = wd.layout.entry_setting(entry["cloak_dir"], seed, fold, point["name"])
    model_file = (files.adapted(entry["adapt_epochs"]) if entry.get("adapt_epochs")
                  else wd.layout.model(protocol, entry["emotion_model"], seed, fold, "emotion"))
    for needed in [model_file] + ([files.cloak] if cloaked else []):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed}: missing for seed {seed}, fold {fold} (was it "
                                    f"run?)")
    model, _ = load_checkpoint(model_file, wd.cfg)
    segments = _test_segments(wd, fold, transform)
    cloak = None
    if cloaked:
        cloak = Cloak.load(files.cloak, wd.cfg).eval()
        shutil.copyfile(files.cloak, tmp / CLOAK)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            segments = cloak(segments)
    if transform is not None:
        (tmp / VOICENORM).write_text(json.dumps(VOICENORM_SETTINGS, indent=1))
    onnx = tmp / EMOTION_MODEL
    _export_onnx(model, torch.zeros(1, wd.cfg.segment_frames, wd.cfg.n_mels), onnx,
                 ("features", "logits"))
    return {"design": "spectrogram", "transform": transform,
            "protection": {"kind": protection_of("spectrogram", transform, cloaked)},
            "cloak": None if cloak is None else cloak.cfg.to_dict(),
            "onnx_check": {"segments": len(segments),
                           "max_abs_logit_difference": _check_onnx(onnx, model, segments)}}


def _embedding(wd: Workdir, protocol: str, seed: int, fold: int, entry: dict, point: dict,
               tmp: Path) -> dict:
    """The split network's device part, its noise scales and its server part (and voice
    normalisation's settings, when the device normalises the voice first)."""
    transform = entry["spec"]["transform"]
    files = wd.layout.entry_setting(entry["cloak_dir"], seed, fold, point["name"])
    f_theta, _ = load_checkpoint(wd.layout.model(protocol, entry["emotion_model"], seed, fold,
                                                 "emotion"), wd.cfg)
    net = load_split(files.network, f_theta)
    if net is None:
        raise FileNotFoundError(f"{files.network}: no split network for seed {seed}, fold "
                                f"{fold} (was it run?)")
    segments = _test_segments(wd, fold, transform)
    if transform is not None:
        (tmp / VOICENORM).write_text(json.dumps(VOICENORM_SETTINGS, indent=1))
    with torch.no_grad():
        clean = net.front(segments)
    sigma = net.sigma().detach().numpy().astype(np.float32)
    np.savez(tmp / EMBEDDING, sigma=sigma)
    front, back = tmp / FRONT, tmp / BACK
    _export_onnx(net.front, segments[:1], front, ("features", "embedding"))
    _export_onnx(net.back, clean[:1], back, ("embedding", "logits"))
    draws = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    noisy = clean + torch.from_numpy(sigma) * draws
    return {"design": "embedding", "transform": transform,
            "protection": {"kind": protection_of("embedding", transform, False)},
            "embedding": {"dims": int(clean.shape[2]), "steps": int(clean.shape[1]),
                          "sigma_max": float(sigma.max())},
            "onnx_check": {"segments": len(segments),
                           "max_abs_embedding_difference": _check_onnx(front, net.front,
                                                                       segments),
                           "max_abs_logit_difference": _check_onnx(back, net.back, noisy)}}


def _label(wd: Workdir, protocol: str, seed: int, fold: int, entry: dict, point: dict,
           tmp: Path) -> dict:
    """The emotion model itself, for the device: it answers each utterance's label (the
    argmax of its windows' mean probability, as `designs.posteriors.labels_only`) and sends
    that alone."""
    model, _ = load_checkpoint(wd.layout.model(protocol, entry["emotion_model"], seed, fold,
                                               "emotion"), wd.cfg)
    segments = _test_segments(wd, fold, None)
    onnx = tmp / DEVICE_MODEL
    _export_onnx(model, segments[:1], onnx, ("features", "logits"))
    return {"design": "label", "transform": None,
            "protection": {"kind": protection_of("label", None, False)},
            "onnx_check": {"segments": len(segments),
                           "max_abs_logit_difference": _check_onnx(onnx, model, segments)}}


def _design_part(spec: dict):
    """What writes the design part of a bundle of the method `spec`, or None: it ships none."""
    if spec["design"] == "embedding":
        return _embedding
    if spec["design"] == "spectrogram" and spec["transform"] in (None, "voicenorm"):
        return _spectrogram
    if spec["design"] == "posteriors" and spec["output"] == "label":
        return _label
    return None


def exportable(spec: dict) -> bool:
    """Whether a bundle ships the method of results.json's `spec` (what a deployable design
    is)."""
    return _design_part(spec) is not None


def _maker(spec: dict, method: str):
    """What writes the design part of `spec`'s bundle, or ValueError saying why it has none."""
    make = _design_part(spec)
    if make is not None:
        return make
    raise ValueError(f"{method} is not exported: a bundle carries a cloak, voice "
                     f"normalisation, a split network or the label-only emotion model "
                     f"(posteriors_label); the floor's probabilities are what every design "
                     f"leaks, calibration per user is the service's answer, and the waveform "
                     f"baselines have no client here")


def export_bundle(wd: Workdir, fold: int, setting: str, out: Path | str,
                  protocol: str = DEFAULT_PROTOCOL, seed: int | None = None,
                  sign_key: Path | None = None, results_file: Path | None = None) -> dict:
    """Write the bundle of `setting` (METHOD, METHOD:SR or METHOD:K of a comparison's
    results.json: `results_file`, default the protocol's only one) for `fold` and `seed`
    (default: the run's first seed), signed with the Ed25519 private key file `sign_key`
    when given."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose another --out or remove it")
    results = read_results(results_file or comparison_file(wd.layout, protocol))
    config = results["config"]
    seed = config["seeds"][0] if seed is None else seed
    if fold not in config["folds"] or seed not in config["seeds"]:
        raise ValueError(f"fold {fold}, seed {seed} was not run (results.json has folds "
                         f"{config['folds']}, seeds {config['seeds']})")
    entry, point = find_entry(results, setting, config["folds"].index(fold))
    make = _maker(entry["spec"], entry["method"])
    tmp = staging(out)
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / FILTERBANK).parent.mkdir(parents=True)
    np.save(tmp / FILTERBANK, mel_filterbank(wd.cfg).astype(np.float32))
    design = make(wd, protocol, seed, fold, entry, point, tmp)
    files = {str(p.relative_to(tmp)): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "format": BUNDLE_FORMAT, "bundle_id": bundle_id(files), "files": files,
        "sercloak_version": __version__, "features": wd.cfg.to_dict(),
        "labels": load_checkpoint(wd.layout.model(protocol, entry["emotion_model"], seed, fold,
                                                  "emotion"))[1]["labels"],
        "setting": {"method": entry["method"], "setting": point["name"],
                    "suppression_ratio": point["suppression_ratio"], "protocol": protocol,
                    "seed": seed, "fold": fold, "workdir": str(wd.root)},
        "measured": _measured(entry, config["folds"].index(fold)),
        **design,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if sign_key is not None:
        sign(tmp, sign_key)
    open_bundle(tmp)  # what every reader will check
    tmp.rename(out)
    return manifest


def _measured(entry: dict, position: int) -> dict:
    """The setting's test figures from results.json: means over seeds and folds, 95%
    intervals where there are, and this fold's (`position`: its place in the run's folds)."""
    def pick(stat: dict) -> dict:
        return {"mean": stat["mean"], "std": stat["std"], "this_fold": stat["folds"][position],
                **({"ci95": stat["ci95"]} if "ci95" in stat else {})}

    measured = {"emotion_uar": pick(entry["emotion"]["uar"]),
                "emotion_uar_speaker": pick(entry["emotion"]["uar_speaker"]),
                "emotion_drop": pick(entry["emotion_drop"])}
    figures = entry["gender_privacy"]
    measured["gender_uar_speaker"] = {**pick(figures["uar_speaker"]),
                                      "chance": figures["uar_speaker"]["chance"]}
    measured["gender_uar_speaker_upper_bound"] = pick(figures["upper_bound"]["uar_speaker"])
    measured["gender_attacker"] = figures["attacker"]
    if "speaker_eer" in entry:
        measured["speaker_eer"] = pick(entry["speaker_eer"])
    return measured
