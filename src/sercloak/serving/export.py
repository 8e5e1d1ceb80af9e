"""Writing a bundle (`sercloak export`): the torch side of `bundle.py`."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..cloak import Cloak
from ..data import Workdir
from ..features import mel_filterbank
from ..folds import DEFAULT_PROTOCOL
from ..layout import setting_name
from ..train import load_checkpoint
from .bundle import BUNDLE_FORMAT, ONNX_TOLERANCE, bundle_id, find_entry, sha256

CHECK_SEGMENTS = 64  # real cloaked test segments on which ONNX must agree with torch


def _files_of(wd: Workdir, protocol: str, seed: int, fold: int,
              entry: dict) -> tuple[Path, Path]:
    """The setting's cloak file and the emotion model that reads it (adapted or not)."""
    if not entry["method"].startswith("cloak"):
        raise ValueError(f"{entry['method']} is a waveform baseline: a bundle carries a cloak")
    name = setting_name(round(entry["suppression_ratio"]), entry["adversarial"])
    files = wd.layout.setting(wd.root / entry["cloak_dir"], seed, fold, name)
    if not files.cloak.is_file():
        raise FileNotFoundError(f"{files.cloak}: no cloak for seed {seed}, fold {fold} "
                                f"(was it run?)")
    if entry.get("adapt_epochs"):
        adapted = files.adapted(entry["adapt_epochs"])
        if not adapted.is_file():
            raise FileNotFoundError(f"{adapted}: no adapted emotion model for {name}")
        return files.cloak, adapted
    return files.cloak, wd.layout.model(protocol, entry["emotion_model"], seed, fold, "emotion")


def _export_onnx(model: torch.nn.Module, n_frames: int, n_mels: int, out: Path) -> None:
    example = torch.zeros(1, n_frames, n_mels)
    with warnings.catch_warnings():  # the TorchScript-based exporter warns it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(out), input_names=["features"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}})


def _check_onnx(onnx_file: Path, model: torch.nn.Module, segments: torch.Tensor) -> float:
    """Largest |logit difference| between ONNX (onnxruntime) and torch on `segments`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    ours = session.run(None, {"features": segments.numpy()})[0]
    with torch.no_grad():
        theirs = model(segments).numpy()
    return float(np.abs(ours - theirs).max())


def export_bundle(wd: Workdir, fold: int, setting: str, out: Path | str,
                  protocol: str = DEFAULT_PROTOCOL, seed: int | None = None) -> dict:
    """Write the bundle of `setting` (METHOD or METHOD:SR of the protocol's results.json)
    for `fold` and `seed` (default: the run's first seed)."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose another --out or remove it")
    results_file = wd.layout.results(protocol)
    if not results_file.is_file():
        raise FileNotFoundError(f"{results_file} not found: run `sercloak experiment "
                                f"--protocol {protocol}` first")
    results = json.loads(results_file.read_text())
    entry = find_entry(results, setting)
    config = results["config"]
    seed = config["seeds"][0] if seed is None else seed
    if fold not in config["folds"] or seed not in config["seeds"]:
        raise ValueError(f"fold {fold}, seed {seed} was not run (results.json has folds "
                         f"{config['folds']}, seeds {config['seeds']})")
    cloak_file, model_file = _files_of(wd, protocol, seed, fold, entry)
    cloak = Cloak.load(cloak_file, wd.cfg).eval()
    model, ckpt = load_checkpoint(model_file, wd.cfg)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "client").mkdir(parents=True)
    (tmp / "server").mkdir()
    shutil.copyfile(cloak_file, tmp / "client" / "cloak.npz")
    np.save(tmp / "client" / "mel_filterbank.npy", mel_filterbank(wd.cfg).astype(np.float32))
    _export_onnx(model, wd.cfg.segment_frames, wd.cfg.n_mels, tmp / "server" / "emotion.onnx")

    test = wd.segments(fold, "test", "emotion", train=False)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        segments = cloak(test.x[:CHECK_SEGMENTS])
    difference = _check_onnx(tmp / "server" / "emotion.onnx", model, segments)
    if difference > ONNX_TOLERANCE:
        raise ValueError(f"the ONNX model differs from torch by {difference:.2g} on real "
                         f"segments (tolerance {ONNX_TOLERANCE}); bundle not written")

    files = {str(p.relative_to(tmp)): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "format": BUNDLE_FORMAT, "bundle_id": bundle_id(files), "files": files,
        "sercloak_version": __version__, "features": wd.cfg.to_dict(),
        "labels": list(ckpt["labels"]),
        "setting": {"method": entry["method"], "suppression_ratio": entry["suppression_ratio"],
                    "protocol": protocol, "seed": seed, "fold": fold, "workdir": str(wd.root),
                    "cloak": cloak.cfg.to_dict()},
        "measured": _measured(entry, config["folds"].index(fold)),
        "onnx_check": {"segments": len(segments), "max_abs_logit_difference": difference},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
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
    if "gender_worst" in entry:
        measured["worst_gender_uar"] = pick(entry["gender_worst"]["uar"])
        measured["worst_gender_uar_speaker"] = pick(entry["gender_worst"]["uar_speaker"])
        measured["worst_attacker"] = entry["gender_worst"]["attacker"]
    if "speaker_eer" in entry:
        measured["speaker_eer"] = pick(entry["speaker_eer"])
    return measured
