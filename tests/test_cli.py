"""The command line: the demo's smaller work stays in the demo."""

from sercloak.attacks.suite import AttackConfig
from sercloak.cli import build_parser, experiment_config


def test_the_demo_does_less_work_and_the_real_protocol_does_not():
    demo = build_parser().parse_args(["demo"])
    assert (demo.folds, demo.ratios, demo.epochs) == ("0-1", "60", 8)
    attacks = experiment_config(demo).attacks
    assert attacks.dvector_max_per_speaker == attacks.tuned_max_per_speaker == 8
    assert attacks.tuned_epochs == AttackConfig().tuned_epochs  # 1 epoch left it at chance
    assert attacks.informed_draws == 1
    real = build_parser().parse_args(["experiment", "--workdir", "w"])
    assert (real.folds, real.ratios, real.epochs) == ("0-4", "0,20,40,60", None)
    assert experiment_config(real).attacks == AttackConfig()
    assert real.executor == "local" and real.device == "auto"
