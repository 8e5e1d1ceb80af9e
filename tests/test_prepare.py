import csv
import json

import numpy as np
import pytest
import soundfile as sf

from sercloak import cache as cache_module
from sercloak.cache import FeatureCache
from sercloak.cli import main
from sercloak.corpora.synthetic import SyntheticSpec
from sercloak.data import Workdir
from sercloak.features import FeatureConfig, LogMel
from sercloak.folds import PARTS
from sercloak.prepare import MANIFEST_COLUMNS, prepare, read_manifest

SMALL = {"synthetic": {"spec": SyntheticSpec(n_speakers=10, utterances_per_emotion=2)}}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """A small synthetic corpus, generated once for this module."""
    from sercloak.corpora import synthetic
    folder = tmp_path_factory.mktemp("synth") / "corpus"
    synthetic.generate(folder, SMALL["synthetic"]["spec"])
    return folder


def run(corpus_dir, workdir, **kw):
    return prepare({"synthetic": corpus_dir}, workdir, loader_options=SMALL,
                   show_progress=False, **kw)


def test_prepare_writes_manifest_folds_summary_and_cache(corpus_dir, tmp_path):
    result = run(corpus_dir, tmp_path)
    with open(tmp_path / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    assert len(rows) == 10 * 4 * 2
    assert {r["emotion"] for r in rows} == {"neutral", "happy", "sad", "angry"}
    folds = json.loads((tmp_path / "folds.json").read_text())
    assert isinstance(folds, list) and len(folds) == 5
    assert all(set(PARTS) <= set(f) for f in folds)
    summary = json.loads((tmp_path / "summary.json").read_text())["corpus_summary"]["synthetic"]
    assert summary["utterances"] == {"neutral": 20, "happy": 20, "sad": 20, "angry": 20}
    assert summary["speakers"] == {"female": 5, "male": 5}
    assert sum(summary["segments"].values()) >= 80
    assert "| synthetic | 20 (" in (tmp_path / "summary.md").read_text()
    # the cache returns exactly what the extractor computes from the audio
    cache = FeatureCache(tmp_path).open(["synthetic"])
    utt = result.utterances[0]
    wave, _ = sf.read(utt.path, dtype="float32")
    np.testing.assert_array_equal(cache.get(utt.utt_id), LogMel()(wave))
    assert read_manifest(tmp_path / "manifest.csv") == result.utterances


def test_bad_files_are_reported_and_the_rest_is_prepared(corpus_dir, tmp_path):
    import shutil
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_dir, corpus)
    wavs = sorted(corpus.glob("spk00/*.wav"))
    wavs[0].write_bytes(b"not audio at all")
    sf.write(wavs[1], np.zeros(16000, np.float32), 16000)
    sf.write(wavs[2], np.zeros(0, np.float32), 16000)
    result = prepare({"synthetic": corpus}, tmp_path / "work", loader_options=SMALL,
                     show_progress=False)
    reasons = {p: r for _, p, r in result.skipped}
    assert "unreadable" in reasons[str(wavs[0])]
    assert "silent" in reasons[str(wavs[1])]
    assert "empty" in reasons[str(wavs[2])]
    assert len(result.utterances) == 80 - 3
    skipped_md = (tmp_path / "work" / "summary.md").read_text()
    assert "Skipped files: 3" in skipped_md and wavs[0].name in skipped_md


def test_rerun_reuses_cache_and_interrupted_run_resumes(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "SHARD_SIZE", 16)  # 80 utterances -> 5 shards
    calls = {"n": 0}
    real_call = LogMel.__call__

    def counting(self, wave):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt  # the user presses Ctrl-C in shard 3
        return real_call(self, wave)

    monkeypatch.setattr(LogMel, "__call__", counting)
    with pytest.raises(KeyboardInterrupt):
        run(corpus_dir, tmp_path)
    assert len(list((tmp_path / "features" / "synthetic").glob("shard_*.json"))) == 2
    calls["n"] = 1000  # no more interruptions
    run(corpus_dir, tmp_path)
    assert calls["n"] == 1000 + 80 - 32, "the two finished shards were reused"
    run(corpus_dir, tmp_path)
    assert calls["n"] == 1000 + 80 - 32, "a complete cache is reused whole"


def test_changed_feature_settings_recompute(corpus_dir, tmp_path):
    run(corpus_dir, tmp_path)
    result = run(corpus_dir, tmp_path, cfg=FeatureConfig(n_mels=64))
    cache = FeatureCache(tmp_path, FeatureConfig(n_mels=64)).open(["synthetic"])
    assert cache.get(result.utterances[0].utt_id).shape[1] == 64
    with pytest.raises(ValueError, match="n_mels"):
        FeatureCache(tmp_path).open(["synthetic"])


def test_cli_reports_wrong_layout_clearly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", "--corpus", f"ravdess={tmp_path}", "--workdir", str(tmp_path / "w")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "RAVDESS" in err and "Actor_01" in err


def test_cli_prepare_prints_summary(corpus_dir, tmp_path, capsys):
    main(["prepare", "--corpus", f"mine={corpus_dir / 'manifest.csv'}",
          "--workdir", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert "| mine | 20 (" in out and "Skipped files: 0" in out
    # per-user normalisation is the command's default (it won on validation speakers)
    assert Workdir.open(tmp_path).cfg.normalise == "user"
