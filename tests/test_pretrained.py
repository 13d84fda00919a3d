"""The artifacts shipped inside the package: they match their manifest, load, agree with each other, and
the used-by commands run on them right after install, from any working folder, writing nothing into
the package."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from predictnas import pretrained
from predictnas.bundle import Bundle
from predictnas.data.corpus import get_recipe, plan_corpus
from predictnas.decoding import LexiconDecoder, lexicon_of
from predictnas.experiment import get_preset
from predictnas.latency.table import LatencyTable
from predictnas.predictor import AccuracyPredictor
from predictnas.predictor.calibrate import FinetuneCalibration
from predictnas.predictor.sample import supernet_fingerprint
from predictnas.space import SPACES, SearchSpace
from predictnas.supernet import load_supernet

from commandline import one_error_line

SHIPPED = pretrained.artifact("supernet") is not None


def test_every_shipped_file_matches_its_manifest_entry():
    entries = pretrained.manifest()["artifacts"]
    assert pretrained.check_manifest() == []
    shipped = {str(p.relative_to(pretrained.root())) for p in pretrained.root().rglob("*")
               if p.is_file() and p.suffix in (".json", ".pt", ".sqlite") and p.name != pretrained.MANIFEST}
    assert shipped == set(entries), "every shipped artifact has a manifest entry, and only those"
    for entry in entries.values():
        assert {"sha256", "command", "seed", "versions"} <= set(entry)


def test_shipped_tables_and_baselines_load_in_their_spaces():
    tables = sorted(pretrained.tables_dir().glob("*.json"))
    assert tables
    for path in tables:
        table = LatencyTable.load(path)
        assert table.space == SPACES[table.space.name]
    for space_name in ("speech-v1", "speech-tiny"):
        space = SearchSpace(SPACES[space_name])
        files = pretrained.baselines(space_name)
        assert files
        for path in files:
            space.from_json(json.loads(open(path).read()), source=path)


@pytest.mark.skipif(not SHIPPED, reason="no pretrained supernet in this checkout")
def test_shipped_artifacts_agree_on_space_features_decoder_and_supernet():
    supernet = load_supernet(pretrained.artifact("supernet"))
    predictor = AccuracyPredictor.load(pretrained.artifact("predictor"))
    calibration = FinetuneCalibration.load(pretrained.artifact("finetune"))
    digest = supernet_fingerprint(pretrained.artifact("supernet"))
    assert supernet.space == SPACES[pretrained.DEFAULT] == predictor.space.config
    assert predictor.supernet["path"] == pretrained.reference()
    assert predictor.supernet["hash"] == calibration.supernet_hash == digest
    assert predictor.supernet["features"] == supernet.metadata["features"]
    assert predictor.supernet["sample_rate"] == supernet.metadata["sample_rate"]
    # the decoder every number was scored with is the lexicon of the corpus's training transcripts, which
    # the corpus recipe determines without synthesizing a sound
    data = supernet.metadata["data"]
    recipe = get_recipe(get_preset(supernet.metadata["preset"]).corpus, sample_rate=supernet.metadata["sample_rate"])
    assert recipe.recipe_hash == data["recipe_hash"] and recipe.dirname == data["path"]
    words = lexicon_of(u.text for u in plan_corpus(recipe) if u.split == "train")
    assert predictor.supernet["decoder"] == LexiconDecoder(words).spec()
    db = sqlite3.connect(f"file:{pretrained.artifact('store')}?mode=ro", uri=True)
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    rows = db.execute("SELECT COUNT(*) FROM evals WHERE protocol = 'dev'").fetchone()[0]
    db.close()
    assert meta["fingerprint.supernet"] == digest and json.loads(meta["info.path"]) == pretrained.reference()
    assert json.loads(meta["fingerprint.decoder"]) == predictor.supernet["decoder"]
    assert rows >= predictor.n_rows  # the sample it was fitted on, then the finalists and baselines measured later
    # the supernet's weights are stored in half precision: what ships is what every number was measured with
    import torch

    state = torch.load(pretrained.artifact("supernet"), weights_only=True)
    assert {v.dtype for v in state["weights"].values() if v.is_floating_point()} == {torch.float16}


@pytest.fixture(scope="module")
def user_cache(tmp_path_factory):
    """A fresh user cache, as on a new machine (shared by this module's commands: one corpus synthesis)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def elsewhere(tmp_path, user_cache):
    """A working folder outside the repository, and the fresh user cache."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    return cwd, {**os.environ, "PREDICTNAS_CACHE": str(user_cache)}


def predictnas(cwd, env, *args):
    return subprocess.run([sys.executable, "-m", "predictnas", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def package_files():
    return {p: p.stat().st_mtime_ns for p in pretrained.root().rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.skipif(not SHIPPED, reason="no pretrained supernet in this checkout")
def test_search_right_after_install_uses_the_shipped_artifacts(elsewhere):
    cwd, env = elsewhere
    before = package_files()
    result = predictnas(cwd, env, "search", "--budget", "40ms", "--seconds", 3, "--no-progress")
    assert result.returncode == 0, result.stderr
    bundle = Bundle.load(cwd / "runs" / "default" / "top.json")
    assert bundle.model["supernet"]["path"] == pretrained.reference()
    assert bundle.predictor["target"].startswith("finetuned wer/all")  # the shipped calibration is applied
    assert all(c.predicted["latency_ms"] <= 40 for c in bundle.candidates)
    assert (cwd / "runs" / "default" / "pareto.png").exists()
    shared = predictnas(cwd, env, "search", "--budget", "40ms", "--seconds", 1, "--shared-weight-wer",
                        "--no-progress", "--out", cwd / "shared" / "top.json")
    assert shared.returncode == 0, shared.stderr
    assert Bundle.load(cwd / "shared" / "top.json").predictor["target"] == "wer/all"
    assert package_files() == before, "nothing is written into the installed package"


@pytest.mark.skipif(not SHIPPED, reason="no pretrained supernet in this checkout")
@pytest.mark.slow
def test_verify_of_a_shipped_pick_synthesizes_the_corpus_into_the_user_cache(elsewhere):
    """verify needs the corpus the shipped supernet was trained on: it is synthesized into the user cache
    from the recipe the supernet records (deterministic), then the pick is measured for real."""
    cwd, env = elsewhere
    before = package_files()
    assert predictnas(cwd, env, "search", "--budget", "20ms", "--seconds", 2, "--top-k", 1,
                      "--no-progress").returncode == 0
    top = cwd / "runs" / "default" / "top.json"
    result = predictnas(cwd, env, "verify", top, "--finetune-steps", 0, "--protocol", "quick",
                        "--latency-repeats", 1, "--allow-hardware-gap", "--no-progress")
    assert result.returncode == 0, result.stderr
    verified = json.loads((top.parent / "verify" / "verify.json").read_text())["models"]
    assert [m["name"] for m in verified] == ["nas-1"]
    measured = verified[0]["measured"]
    assert set(measured["wer"]) == {"quiet_home", "industrial_warehouse", "all"}
    assert 0 <= measured["wer"]["all"] < 1 and measured["latency"]["ms"] > 0
    assert any((Path(env["PREDICTNAS_CACHE"]) / "corpus").glob("small-*/corpus.json"))
    assert package_files() == before


@pytest.mark.skipif(not SHIPPED, reason="no pretrained supernet in this checkout")
@pytest.mark.slow
def test_run_starts_from_the_shipped_artifacts(elsewhere):
    """``run`` without --train searches for the WER after fine-tuning with the shipped predictor and
    calibration, and verifies the pick. No finalists (a run's copy of the shipped store is made for them):
    run times them on this machine, and with the machine's own table the few a short search finds sit at
    the budget's edge, where timing noise alone can fail them all (it did in CI). Finalists measured and
    timed are tested on the tiny space in test_pipeline."""
    cwd, env = elsewhere
    before = package_files()
    result = predictnas(cwd, env, "run", "--budget", "40ms", "--search-seconds", 2, "--rescore", 0, "--top-k", 1,
                        "--finetune-steps", 1, "--no-baselines", "--protocol", "quick", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "the shipped supernet, predictor and fine-tuning calibration" in result.stderr
    run_dir = cwd / "runs" / "default"
    assert not (run_dir / "supernet.pt").exists() and not (run_dir / "predictor.json").exists()
    assert Bundle.load(run_dir / "top.json").predictor["target"].startswith("finetuned wer/all")
    assert (run_dir / "verify" / "verify.json").exists()
    assert "verify measured" in result.stdout.splitlines()[-1]
    assert package_files() == before


def test_a_supernet_reference_to_a_pretrained_set_that_is_not_shipped_is_one_error_line(elsewhere, tmp_path):
    cwd, env = elsewhere
    arch = pretrained.baselines("speech-v1")[0]
    one_error_line(predictnas(cwd, env, "eval", arch, "--supernet", "pretrained:no-such-set"),
                   "ships no supernet named 'no-such-set'")
