"""`sercloak export`: a bundle from a tiny fixture experiment, read back by the client."""

import json
import shutil

import numpy as np
import pytest

from sercloak.cli import main as cli_main
from sercloak.features import LogMel
from sercloak.serving.bundle import (
    BundleError,
    bundle_id,
    open_bundle,
    read_public_key,
    sha256,
    sign,
)
from sercloak.serving.client import CloakArrays, UnprotectedBundle, check_protection


def test_export_writes_a_checked_bundle_the_client_can_read(tiny_experiment, tmp_path):
    out = tmp_path / "bundle"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "1",
              "--setting", "cloak_adversarial:40", "--out", str(out)])
    manifest = open_bundle(out).manifest
    assert set(manifest["files"]) == {"client/cloak.npz", "client/mel_filterbank.npy",
                                      "server/emotion.onnx"}
    assert manifest["setting"]["method"] == "cloak_adversarial"
    assert manifest["setting"]["fold"] == 1
    assert manifest["labels"] == ["neutral", "happy", "sad", "angry"]
    assert manifest["onnx_check"]["max_abs_logit_difference"] < 1e-3
    assert manifest["setting"]["protocol"] == "paper" and manifest["setting"]["seed"] == 0
    results = json.loads(tiny_experiment.layout.results("paper", [0, 1], [0]).read_text())
    entry = next(e for e in results["cloak"] if e["method"] == "cloak_adversarial"
                 and round(e["points"][1]["suppression_ratio"]) == 40)
    assert manifest["measured"]["emotion_uar"]["mean"] == entry["emotion"]["uar"]["mean"]
    assert manifest["measured"]["emotion_uar"]["this_fold"] == entry["emotion"]["uar"]["folds"][1]
    figure = entry["gender_privacy"]["uar_speaker"]
    assert manifest["measured"]["gender_uar_speaker"]["mean"] == figure["mean"]
    assert manifest["measured"]["gender_uar_speaker"]["chance"] == figure["chance"]
    assert manifest["measured"]["emotion_drop"]["ci95"] == entry["emotion_drop"]["ci95"]
    # the client part is plain NumPy: the same cloak as the experiment's
    cloak = CloakArrays.load(out / "client" / "cloak.npz")
    assert cloak.suppressed and 0.35 < (cloak.mask == 0).mean() < 0.45
    assert np.allclose(np.load(out / "client" / "mel_filterbank.npy", allow_pickle=False),
                       LogMel(tiny_experiment.cfg).fb_t.numpy().T)
    # the ONNX model runs without torch's help
    import onnxruntime
    session = onnxruntime.InferenceSession(str(out / "server" / "emotion.onnx"))
    logits = session.run(None, {"features": np.zeros((3, 200, 128), np.float32)})[0]
    assert logits.shape == (3, 4)


def test_a_tampered_or_incomplete_bundle_is_refused(tiny_experiment, tmp_path):
    out = tmp_path / "bundle"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0",
              "--setting", "cloak_adversarial:0", "--out", str(out), "--quiet"])
    open_bundle(out)
    cloak = out / "client" / "cloak.npz"
    original = cloak.read_bytes()
    data = bytearray(original)
    data[-10] ^= 0xFF
    cloak.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="client/cloak.npz does not match its hash"):
        open_bundle(out)
    cloak.write_bytes(original)
    (out / "extra.onnx").write_bytes(b"x")  # a file some part might load, not listed
    with pytest.raises(BundleError, match="not in the manifest: extra.onnx"):
        open_bundle(out)
    (out / "extra.onnx").unlink()
    (out / "server" / "emotion.onnx").unlink()
    with pytest.raises(ValueError, match="server/emotion.onnx is missing"):
        open_bundle(out)


def rewrite(folder, change) -> None:
    """Change a bundle's manifest (and keep its hashes and id consistent, as a forger
    would)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    manifest["files"] = {n: sha256(folder / n) for n in manifest["files"]
                         if (folder / n).is_file()}
    manifest["bundle_id"] = bundle_id(manifest["files"])
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "client/../../x",
                                  "models/emotion.onnx", "client/sub/dir.npy"])
def test_names_outside_the_bundle_are_refused(bundle, tmp_path, name):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][name] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="outside the bundle"):
        open_bundle(copy)


def test_signed_bundles_refuse_tampering_and_unsigned_ones_refuse_a_trusted_key(
        tiny_experiment, tmp_path):
    key = tmp_path / "keys" / "exporter"
    cli_main(["keygen", "--out", str(key)])
    assert key.stat().st_mode & 0o077 == 0  # the private key: its owner's alone
    public = read_public_key(key.with_name("exporter.pub"))
    out = tmp_path / "signed"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0", "--setting",
              "cloak_adversarial:0", "--out", str(out), "--sign-key", str(key), "--quiet"])
    assert open_bundle(out, public).signed
    # another key does not verify it
    other = tmp_path / "other"
    cli_main(["keygen", "--out", str(other)])
    with pytest.raises(BundleError, match="does not verify"):
        open_bundle(out, read_public_key(tmp_path / "other.pub"))
    other.chmod(0o644)  # a private key others can read signs nothing
    with pytest.raises(BundleError, match="can be read by others"):
        sign(out, other)
    # a changed manifest (here: a σ = 0 cloak, hashes made consistent) no longer verifies
    forged = tmp_path / "forged"
    shutil.copytree(out, forged)
    rewrite(forged, lambda m: m["measured"].update(forged=True))
    open_bundle(forged)  # consistent hashes: only the signature tells
    with pytest.raises(BundleError, match="does not verify"):
        open_bundle(forged, public)
    # without its signature, a trusted key refuses it
    (forged / "manifest.sig").unlink()
    with pytest.raises(BundleError, match="unsigned"):
        open_bundle(forged, public)


def test_the_client_fails_closed_on_missing_or_degenerate_protection(bundle, tmp_path):
    from sercloak import cloakfile
    from sercloak.serving.client import Client

    assert check_protection(open_bundle(bundle)) == "cloak"
    # a σ = 0 cloak that suppresses nothing would send clean features
    zero = tmp_path / "zero"
    shutil.copytree(bundle, zero)
    meta, arrays = cloakfile.read(zero / "client" / "cloak.npz")
    arrays = {**arrays, "sigma": np.zeros_like(arrays["sigma"]),
              "offset_sigma": np.zeros_like(arrays["sigma"]),
              "mask": np.ones_like(arrays["mask"])}
    cloakfile.write(zero / "client" / "cloak.npz", {k: v for k, v in meta.items()
                                                     if k != "format"}, arrays)
    rewrite(zero, lambda m: None)
    with pytest.raises(UnprotectedBundle, match="adds no noise"):
        Client.from_bundle(zero)
    assert Client.from_bundle(zero, allow_unprotected=True).cloak is not None
    # no cloak at all, and a manifest that states no protection
    missing = tmp_path / "missing"
    shutil.copytree(bundle, missing)
    (missing / "client" / "cloak.npz").unlink()
    rewrite(missing, lambda m: None)
    with pytest.raises(UnprotectedBundle, match="lacks client/cloak.npz"):
        Client.from_bundle(missing)
    rewrite(missing, lambda m: m.update(protection=None))
    with pytest.raises(UnprotectedBundle, match="states no protection"):
        Client.from_bundle(missing)
    assert Client.from_bundle(missing, allow_unprotected=True).cloak is None


def forged(bundle, folder, **changes):
    """A copy of `bundle` whose cloak arrays are changed (hashes made to agree)."""
    from sercloak import cloakfile

    shutil.copytree(bundle, folder)
    meta, arrays = cloakfile.read(folder / "client" / "cloak.npz")
    arrays = {**arrays, **{k: change(arrays) for k, change in changes.items()}}
    cloakfile.write(folder / "client" / "cloak.npz", {k: v for k, v in meta.items()
                                                       if k != "format"}, arrays)
    rewrite(folder, lambda m: None)
    return folder


def one_bin(arrays):
    """σ in a single mel bin, none elsewhere (nor suppressed): the arrays' largest σ is
    real, what is sent is nearly clean."""
    sigma = np.zeros_like(arrays["sigma"])
    sigma[..., 0] = 1.0
    return sigma


def test_the_client_checks_what_it_sends_not_only_the_arrays(bundle, tmp_path):
    """A cloak whose arrays pass the first check but leave what is sent nearly clean (σ in
    one mel bin, a tiny feature scale) or not finite is refused when it would send."""
    from sercloak.serving.client import Client

    wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32)
    honest = Client.from_bundle(bundle, seed=0)
    assert not np.allclose(honest(wave), honest.features(wave))  # the real cloak sends
    no_suppression = {"mask": lambda a: np.ones_like(a["mask"]),
                      "offset_sigma": lambda a: np.zeros_like(a["sigma"])}
    cases = {"one-bin": {"sigma": one_bin, **no_suppression},
             "tiny-scale": {"feat_std": lambda a: np.full_like(a["feat_std"], 1e-6),
                            **no_suppression}}
    for name, changes in cases.items():
        client = Client.from_bundle(forged(bundle, tmp_path / name, **changes), seed=0)
        with pytest.raises(UnprotectedBundle, match="under noise of a tenth"):
            client(wave)
        sent = Client.from_bundle(tmp_path / name, seed=0, allow_unprotected=True)(wave)
        assert sent.shape[1] == honest.settings.n_mels  # allowed: sent as it is
    nan = forged(bundle, tmp_path / "nan", sigma=lambda a: np.where(
        np.arange(a["sigma"].size).reshape(a["sigma"].shape) == 0, np.nan, a["sigma"]))
    with pytest.raises(UnprotectedBundle, match="not finite in sigma"):
        Client.from_bundle(nan)


def test_a_protection_its_design_does_not_run_or_not_the_one_required_is_refused(
        bundle, tmp_path):
    from sercloak.serving.client import Client

    mismatch = tmp_path / "mismatch"
    shutil.copytree(bundle, mismatch)
    rewrite(mismatch, lambda m: m.update(protection={"kind": "split"}))
    with pytest.raises(UnprotectedBundle, match="not one its design 'spectrogram' runs"):
        Client.from_bundle(mismatch)
    assert Client.from_bundle(bundle, require="cloak").cloak is not None
    with pytest.raises(UnprotectedBundle, match="not the 'voicenorm\\+cloak' required"):
        Client.from_bundle(bundle, require="voicenorm+cloak")


def test_a_bundle_of_an_older_format_is_refused_saying_what_to_do(bundle, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format"] = "sercloak.bundle/2"
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="export the setting again"):
        open_bundle(old)


def test_export_refuses_unknown_settings_and_existing_folders(tiny_experiment, tmp_path, capsys):
    for setting, message in (("cloak_temporal", "names 0 entries"),
                             ("cloak_adversarial", "names 2 entries")):
        with pytest.raises(SystemExit):
            cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0",
                      "--setting", setting, "--out", str(tmp_path / "b")])
        assert message in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit):
        cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0",
                  "--setting", "cloak_adversarial:0", "--out", str(tmp_path / "taken")])
    assert "exists" in capsys.readouterr().err


def test_predict_refuses_a_bundle_its_trusted_key_did_not_sign(bundle, signed_bundle, signing_key,
                                                               tmp_path, capsys):
    from conftest import write_tone

    wav = write_tone(tmp_path / "a.wav", seconds=2.5)
    for folder, refused in ((bundle, True), (signed_bundle, False)):
        try:
            cli_main(["predict", str(wav), "--bundle", str(folder), "--trust-key",
                      str(signing_key[1]), "--seed", "0"])
            status = 0
        except SystemExit as exit:
            status = exit.code
        out, err = capsys.readouterr()
        if refused:
            assert status == 2 and "unsigned" in err and "a.wav:" not in out
        else:
            assert status == 0 and out.startswith(f"{wav}: ")
