"""Methods as data: every name and label built from the configuration, none parsed."""

import json
from dataclasses import replace

from sercloak.cloak import CloakConfig
from sercloak.cloak.training import CloakTrainConfig
from sercloak.experiment import ExperimentConfig, method_of
from sercloak.methods import Method
from sercloak.points import Point


def names(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    return [(method_of(cfg, p).name, method_of(cfg, p).label) for p in cfg.points()]


def test_names_and_labels_of_every_kind_of_method():
    paper = ExperimentConfig(ratios=(0,))
    assert names(paper) == [("cloak", "Cloak"), ("cloak_adversarial", "Cloak + adversarial")]
    minmax = replace(paper, cloak=CloakConfig(kind="temporal", warp=0.2),
                     cloak_train=CloakTrainConfig(game="minmax"), variants=("adversarial",),
                     adapt_epochs=3)
    assert names(minmax) == [("cloak_temporal_warp_minmax_adapted",
                              "Cloak (temporal, warp) + min–max, adapted")]
    assert names(replace(paper, transform="mcadams")) == [("mcadams", "McAdams (VPC B2)")]
    both = replace(paper, transform="voicenorm", cloak_after=True, variants=("plain",),
                   cloak=CloakConfig(mask_by="saliency"))
    assert names(both) == [("voicenorm_cloak_saliency",
                            "Voice normalisation + Cloak (saliency mask)")]
    assert names(ExperimentConfig(design="posteriors")) == [
        ("posteriors", "Posteriors only (floor)")]
    split = ExperimentConfig(design="embedding")
    assert [p.name for p in split.points()] == ["embedding_k8", "embedding_k16", "embedding_k32"]
    assert {method_of(split, p).name for p in split.points()} == {"embedding"}
    # issue 30's: the split network's game, with voice normalisation first, and the
    # posteriors service's answers
    from sercloak.designs.split.training import SplitConfig
    game = replace(split, transform="voicenorm", split=SplitConfig.playing("attackers"))
    assert {method_of(game, p).name for p in game.points()} == {"voicenorm_embedding_attackers"}
    # another grid of k is another method (its own entry beside the default grid's)
    small = replace(split, split=SplitConfig.playing("attackers", dims=(4, 8, 16)))
    assert set(names(small)) == {("embedding_attackers_k4-8-16",
                                  "Split network (embedding), attackers game, k ∈ {4, 8, 16}")}
    assert {n for n, _ in names(replace(split, split=SplitConfig(dims=(8, 16, 32))))} == {
        "embedding"}
    assert names(ExperimentConfig(design="posteriors", output="label")) == [
        ("posteriors_label", "Label only (f_θ on the device)")]


def test_a_method_record_round_trips_through_results_json():
    method = method_of(ExperimentConfig(transform="voicenorm", cloak_after=True,
                                        cloak=CloakConfig(kind="temporal")),
                       Point("adversarial_sr0", 0, True))
    spec = method.to_dict()
    assert spec == {"design": "spectrogram", "transform": "voicenorm", "cloak": ["temporal"],
                    "game": "adversarial", "adapted": False, "output": None,
                    "debiased": False, "dims": None}
    assert Method.from_dict(json.loads(json.dumps(spec))) == method
    split = Method("embedding", dims=(4, 8, 16))
    assert Method.from_dict(json.loads(json.dumps(split.to_dict()))) == split


def test_every_key_of_the_privacy_benchmark_is_the_name_its_options_make():
    """bench/privacy.sh names each method as results.json does: its options, parsed as the
    command parses them, make a method of exactly that name at every operating point."""
    import shlex
    import subprocess
    from pathlib import Path

    from sercloak.cli import build_parser, experiment_config

    script = Path(__file__).resolve().parents[1] / "bench" / "privacy.sh"
    listing = subprocess.run(
        ["bash", "-c", 'eval "$(sed -n "/^minmax=/,/^)/p" "$0")"; '
                       'for k in "${!options[@]}"; do printf "%s|%s\\0" "$k" "${options[$k]}"; '
                       'done', str(script)],
        capture_output=True, text=True, check=True).stdout
    keys = dict(item.split("|", 1) for item in listing.split("\0") if item)
    assert len(keys) > 20 and "cloak_adversarial" in keys
    for key, options in keys.items():
        args = build_parser().parse_args(["experiment", "--workdir", "w", "--select-on-valid",
                                          *shlex.split(options)])
        cfg = experiment_config(args)
        assert {method_of(cfg, p).name for p in cfg.points()} == {key}, (key, options)
