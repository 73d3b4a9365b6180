"""genzoo race: the models a --models value names, a race's files and table, and a killed race resuming with the
model it was on (finished entries kept as they were)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import genzoo
from genzoo.cli import main
from genzoo.cli.race import PROBE_IMAGES, chosen, families, family_of, readme_tables, table

RACE = ["race", "--data", "digits", "--minutes", "0.02", "--models", "nade,made", "--threads", "1"]


def test_models_are_named_by_model_family_or_all_in_the_registrys_order():
    assert chosen("all") == genzoo.models.names()
    assert set(families()) == {family_of(n) for n in genzoo.models.names()}
    for family in families():
        assert chosen(family) == [n for n in genzoo.models.names() if family_of(n) == family]
    assert chosen("made,nade") == ["nade", "made"]  # the registry's order, each once
    both = [f for f in families() if f in genzoo.models.names()]  # diffusion: a family and a model
    for name in both:
        assert chosen(f"model:{name}") == [name] and len(chosen(name)) > 1
    with pytest.raises(genzoo.GenzooError, match="neither a model nor a family"):
        chosen("nade,wavenet")


def test_a_race_trains_and_scores_each_model_and_writes_its_table(tmp_path, capsys):
    out = tmp_path / "race"
    assert main([*RACE, "--out", str(out)]) == 0
    race = json.loads((out / "race.json").read_text())
    assert race["data"] == "digits" and race["minutes"] == 0.02 and race["threads"] == 1
    assert race["machine"]["threads"] == 1 and race["machine"]["cpu"]
    assert list(race["entries"]) == ["nade", "made"]
    for name, e in race["entries"].items():
        assert e["likelihood_kind"] == "exact" and e["count"] == 297 and e["nll_nats"] > 0
        assert e["images_per_s"] > 0 and e["sample_64_s"] > 0 and e["parameters"] > 0
        assert 0 < e["forward_64_s"] < e["sample_64_s"]  # a sampler pixel by pixel is slower than one pass
        run = genzoo.runs.open_run(out / name, need_record=True)
        assert run.record["data"]["name"] == "digits"
    table = (out / "race.md").read_text()
    assert "| `nade` |" in table and "| `made` |" in table and "0.02 min" in table and "x its floor" in table
    assert (out / "report.html").stat().st_size > 1000
    assert main([*RACE[:4], "0.05", *RACE[5:], "--out", str(out)]) == 2  # other terms: refused, nothing touched
    assert "other terms (minutes 0.02)" in capsys.readouterr().err
    assert json.loads((out / "race.json").read_text()) == race
    older = {k: v for k, v in race.items() if k != "eval_minutes"}  # a race from before --eval-minutes
    (out / "race.json").write_text(json.dumps(older))
    assert main([*RACE, "--out", str(out)]) == 0  # its default stands for the missing term: it resumes
    assert main([*RACE, "--eval-minutes", "5", "--out", str(out)]) == 2
    assert "other terms (eval_minutes 10.0)" in capsys.readouterr().err


def test_an_estimator_too_slow_for_the_evaluation_budget_scores_a_seeded_subset_with_its_standard_error(tmp_path):
    out = tmp_path / "race"
    assert main([*RACE[:6], "model:nade", *RACE[7:], "--eval-minutes", "1e-7", "--out", str(out)]) == 0
    e = json.loads((out / "race.json").read_text())["entries"]["nade"]
    assert e["count"] == PROBE_IMAGES and e["subset_of"] == 297 and e["subset_standard_error"] > 0
    assert f"({PROBE_IMAGES} of 297 images, SE " in (out / "race.md").read_text()
    assert "--eval-minutes" in (out / "race.md").read_text()


def test_a_monte_carlo_figure_is_raced_with_its_standard_error(tmp_path):
    # one time per image (the default) gives no standard error; the race scores with the model's with_standard_error
    out = tmp_path / "race"
    assert main([*RACE[:6], "masked-diffusion", *RACE[7:], "--eval-limit", "24", "--out", str(out)]) == 0
    e = json.loads((out / "race.json").read_text())["entries"]["masked-diffusion"]
    assert e["likelihood_kind"] == "bound" and e["count"] == 24 and 0 < e["standard_error"] < e["nll_nats"]
    assert f"SE {e['standard_error']:.2f})" in (out / "race.md").read_text()


def test_fid_is_asked_of_the_models_that_sample_only(tmp_path):
    # an autoencoder defines no distribution: eval --fid refuses it, so the race must not ask (it once stopped there)
    out = tmp_path / "race"
    assert main([*RACE[:6], "autoencoder,made", *RACE[7:], "--fid", "20", "--out", str(out)]) == 0
    entries = json.loads((out / "race.json").read_text())["entries"]
    assert "fid" not in entries["autoencoder"] and "mse" in entries["autoencoder"]
    assert entries["made"]["fid"] >= 0


KILL_WHILE_SCORING = textwrap.dedent("""
    import os, signal, sys
    from genzoo.cli import main, race
    scored = race._score
    def score(args, name, folder, device):
        if name == sys.argv[1]:
            os.kill(os.getpid(), signal.SIGKILL)
        return scored(args, name, folder, device)
    race._score = score
    sys.exit(main(sys.argv[2:]))
""")


def test_a_killed_race_resumes_with_the_model_it_was_on(tmp_path):
    out = tmp_path / "race"
    script = tmp_path / "kill.py"
    script.write_text(KILL_WHILE_SCORING)
    p = subprocess.run([sys.executable, str(script), "made", *RACE, "--out", str(out)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]
    first = json.loads((out / "race.json").read_text())
    assert list(first["entries"]) == ["nade"] and (out / "made" / "run.json").exists()
    assert main([*RACE, "--out", str(out)]) == 0
    race = json.loads((out / "race.json").read_text())
    assert list(race["entries"]) == ["nade", "made"] and race["entries"]["nade"] == first["entries"]["nade"]


def test_the_readmes_race_tables_are_the_race_json_they_name(tmp_path):
    root = Path(genzoo.__file__).resolve().parents[2]
    text = (root / "README.md").read_text()
    assert readme_tables(text, root) == text  # python bench/race_tables.py makes them agree
    # a block is the table of the JSON it names, whatever stood there before
    race = {"data": "digits", "minutes": 0.2, "threads": 1, "machine": {"cpu": "X", "flags": [], "torch": "2"},
            "entries": {"nade": {"model": "nade", "family": "autoregressive", "likelihood_kind": "exact",
                                 "nll_nats": 100.0, "bits_per_dim": 2.25, "parameters": 10, "images_per_s": 5.0,
                                 "epochs": 1}}}
    (tmp_path / "r.json").write_text(json.dumps(race))
    stale = "before\n<!-- race: r.json -->\n| stale |\n<!-- /race -->\nafter\n"
    assert readme_tables(stale, tmp_path) == f"before\n<!-- race: r.json -->\n{table(race)}<!-- /race -->\nafter\n"
