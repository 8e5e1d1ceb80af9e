"""The README's first command: the demo shows the paper's effect and ends on a screen a person
reads. It runs the whole demo (two to four minutes on 2 cores)."""

from __future__ import annotations

import json

from sercloak.cli import main as cli_main
from sercloak.cli.experiment import DEMO_WORKDIR
from sercloak.data import Workdir
from sercloak.report.screen import COLUMNS


def test_the_demo_shows_the_papers_effect_on_a_screen_that_fits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the README's first command, in a fresh folder
    cli_main(["demo", "--quiet"])
    printed = capsys.readouterr().out.splitlines()
    wide = [line for line in printed if len(line) > COLUMNS]
    assert not wide, f"lines wider than {COLUMNS} columns:\n" + "\n".join(wide)
    last_screen = printed[next(i for i, line in enumerate(printed) if line.startswith("setting")):]
    assert any(line.startswith("Every table: runs/demo/") for line in last_screen)
    assert len(last_screen) <= 24  # one terminal screen: the table, its note, what next
    wd = Workdir.open(DEMO_WORKDIR)
    results = json.loads(wd.layout.results("paper", [0, 1], [0]).read_text())
    figure = {e["method"]: e["gender_privacy"]["uar_speaker"]["mean"] for e in results["cloak"]}
    clean = results["baseline"]["gender_privacy"]["uar_speaker"]["mean"]
    # the cloak lowers the chosen attacker's gender UAR; adversarial training lowers it more
    assert figure["cloak_adversarial"] < figure["cloak"] < clean, (figure, clean)
