"""The report of a finished run: drawn whatever the operating points, never failing the run
for a figure, and a last screen that fits a terminal."""

from __future__ import annotations

import copy
import json

from sercloak.cli import main as cli_main
from sercloak.report import write_report
from sercloak.report.screen import COLUMNS, summary, verdict


def chosen_per_fold(results: dict) -> dict:
    """`results` as if `--select-on-valid` had chosen SR 0 on fold 0 and SR 40 on fold 1 for
    the adversarial cloak (the tiny experiment's grid scored both on every fold)."""
    results = copy.deepcopy(results)
    by_ratio = {e["points"][0]["suppression_ratio"]: e for e in results["cloak"]
                if e["method"] == "cloak_adversarial"}
    low, high = by_ratio[0], by_ratio[40]
    low["points"] = [low["points"][0], high["points"][1]]
    low["settings"] = [low["settings"][0], high["settings"][1]]
    low["validation"] = copy.deepcopy({k: low[k] for k in ("emotion_drop", "gender_privacy")})
    results["cloak"] = [e for e in results["cloak"] if e is not high]
    return results


def test_a_run_whose_folds_chose_different_points_gets_its_report_and_figures(
        tiny_experiment, tmp_path, capsys):
    results = json.loads(tiny_experiment.layout.results("paper", [0, 1], [0]).read_text())
    file = tmp_path / "results.json"
    file.write_text(json.dumps(chosen_per_fold(results)))
    cli_main(["report", "--workdir", str(tiny_experiment.root), "--results", str(file)])
    report = tiny_experiment.layout.report(file).read_text()
    assert "SR 0 ×1, SR 40 ×1" in report and "could not be drawn" not in report
    for name in ("tradeoff", "pareto"):
        assert tiny_experiment.layout.figure(file, name).read_bytes()[:4] == b"\x89PNG"
    assert "warning" not in capsys.readouterr().err


def test_a_figure_that_fails_is_reported_and_the_report_still_written(
        tiny_experiment, tmp_path, monkeypatch, capsys):
    results = json.loads(tiny_experiment.layout.results("paper", [0, 1], [0]).read_text())
    file = tmp_path / "results.json"

    def broken(*args, **kwargs):
        raise ValueError("no room for the legend")

    monkeypatch.setattr("sercloak.report.pareto_figure", broken)
    stale = tiny_experiment.layout.figure(file, "pareto")
    stale.write_bytes(b"an earlier run's figure")
    report = write_report(tiny_experiment, results, file).read_text()
    assert not stale.exists()  # never shown beside figures it does not match
    assert "The pareto figure could not be drawn: ValueError: no room for the legend" in report
    assert "pareto.png" not in report and "tradeoff.png" in report
    assert "| clean |" in report  # the tables are all there
    assert "pareto figure could not be drawn" in capsys.readouterr().err


def test_the_last_screen_has_a_line_per_setting_within_100_columns(tiny_experiment, tmp_path):
    results = json.loads(tiny_experiment.layout.results("paper", [0, 1], [0]).read_text())
    long = copy.deepcopy(results["cloak"][0])
    long["spec"] = {**long["spec"], "transform": "voicenorm", "cloak": ["temporal", "warp"],
                    "game": "minmax", "adapted": True}
    results["cloak"].append(long)
    screen = summary(results, tmp_path / "report.md")
    lines = screen.splitlines()
    assert max(len(line) for line in lines) <= COLUMNS
    rows = [line for line in lines if line.endswith((" chance", " leaks"))]
    assert len(rows) == 1 + len(results["cloak"])  # the clean reference, then every setting
    assert rows[0].startswith("clean") and "Cloak + adv., SR 40" in screen
    assert "…" in rows[-1]  # a label too long for its column is cut, not wrapped
    for row, entry in zip(rows, [results["baseline"], *results["cloak"]], strict=True):
        figure = entry["gender_privacy"]["uar_speaker"]
        assert f"{figure['mean']:.1f} [" in row and f"p={figure['chance']['p']:.2g}" in row
        assert row.endswith(verdict(figure))
    assert screen.endswith(f"Every table: {tmp_path / 'report.md'}")


def test_the_verdict_reads_the_chance_test():
    assert verdict({"indistinguishable_from_chance": True}) == "chance"
    assert verdict({"indistinguishable_from_chance": False}) == "leaks"
