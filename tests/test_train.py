"""Supernet training and evaluation on the tiny corpus, through the command line as a user runs it."""

import dataclasses
import json
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from predictnas.space import get_space
from predictnas.supernet import SubnetOutput, Supernet, load_supernet
from predictnas.errors import PredictnasError
from predictnas.space import largest_arch, smallest_arch
from predictnas.train import (SandwichObjective, TrainConfig, autocast_dtype, distillation_loss, frontend_match_loss,
                              full_size_variant, learning_rate, near_largest, sandwich, subnets_of_step)

from commandline import REPO, one_error_line, run, start


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run(env, "train", "--preset", "tiny", "--run-dir", run_dir, "--steps", 60)
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.slow
def test_a_killed_training_run_resumes_and_ends_like_an_uninterrupted_one(env, trained, tmp_path):
    proc = start(env, "train", "--preset", "tiny", "--run-dir", tmp_path, "--steps", 60)
    checkpoint = tmp_path / "train_checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < killed_at < 60 and not (tmp_path / "supernet.pt").exists()

    resumed = run(env, "train", "--preset", "tiny", "--run-dir", tmp_path, "--steps", 60)
    assert resumed.returncode == 0, resumed.stderr
    history = json.loads((tmp_path / "train.json").read_text())["history"]
    assert [h["step"] for h in history] == list(range(60))
    a, b = load_supernet(trained / "supernet.pt"), load_supernet(tmp_path / "supernet.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-5), name


def test_a_checkpoint_from_another_configuration_is_refused(env, tmp_path, trained):
    (tmp_path / "train_checkpoint.pt").write_bytes((trained / "train_checkpoint.pt").read_bytes())
    result = run(env, "train", "--preset", "tiny", "--run-dir", tmp_path, "--steps", 60, "--seed", 9)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "another configuration" in result.stderr


def test_an_unusable_training_device_is_one_error_line(env, tmp_path):
    unusable = ["tpu"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in unusable:
        result = run(env, "train", "--preset", "tiny", "--run-dir", tmp_path, "--steps", 2, "--device", device)
        one_error_line(result, f"device {device!r}")
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: device")
    assert not (tmp_path / "supernet.pt").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_gives_a_cpu_artifact_and_a_checkpoint_the_cpu_picks_up(env, trained, tmp_path):
    """The GPU run of the same seed learns like the CPU run (not bit-equal: other kernels), its artifact
    loads on the CPU, and the CPU picks up its checkpoint."""
    gpu = run(env, "train", "--preset", "tiny", "--run-dir", tmp_path, "--steps", 60, "--device", "cuda")
    assert gpu.returncode == 0, gpu.stderr
    cpu_history = json.loads((trained / "train.json").read_text())["history"]
    gpu_history = json.loads((tmp_path / "train.json").read_text())["history"]
    assert np.mean([h["loss"] for h in gpu_history[-10:]]) < 0.8 * np.mean([h["loss"] for h in gpu_history[:5]])
    assert abs(gpu_history[0]["loss"] - cpu_history[0]["loss"]) < 1e-2 * cpu_history[0]["loss"]
    supernet = load_supernet(tmp_path / "supernet.pt")
    assert all(p.device.type == "cpu" for p in supernet.parameters())
    (tmp_path / "supernet.pt").unlink()  # the checkpoint holds the last step: the CPU rewrites the artifact from it
    on_cpu = run(env, "train", "--preset", "tiny", "--run-dir", tmp_path, "--steps", 60, "--device", "cpu")
    assert on_cpu.returncode == 0, on_cpu.stderr
    for (name, x), (_, y) in zip(supernet.state_dict().items(), load_supernet(tmp_path / "supernet.pt").state_dict().items()):
        assert torch.equal(x, y), name


def test_training_learns_and_records_its_metadata(trained):
    log = json.loads((trained / "train.json").read_text())
    losses = [h["loss"] for h in log["history"]]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    net = load_supernet(trained / "supernet.pt")
    assert net.space.name == "speech-tiny" and net.space.n_intents == len(net.metadata["intents"]) == 24
    assert net.metadata["sample_rate"] == 16000 and net.metadata["data"]["kind"] == "corpus"
    assert Path(net.metadata["data"]["path"]).is_absolute()  # later stages may run from another directory


def test_eval_reports_wer_cer_and_intent_accuracy_per_environment(env, trained, tmp_path):
    arch = get_space("speech-tiny").covering()[2]
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(arch.to_json())
    result = run(env, "eval", arch_path, "--run-dir", trained, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["wer"]) == {"quiet_home", "industrial_warehouse", "all"}
    assert report["utterances"]["quiet_home"] == report["utterances"]["industrial_warehouse"] > 0
    assert all(0 <= report["cer"][k] and 0 <= report["intent_accuracy"][k] <= 1 for k in report["wer"])
    one = json.loads(run(env, "eval", arch_path, "--run-dir", trained, "--environment", "quiet_home", "--json").stdout)
    assert set(one["wer"]) == {"quiet_home", "all"} and one["wer"]["quiet_home"] == report["wer"]["quiet_home"]
    bad = run(env, "eval", arch_path, "--run-dir", trained, "--environment", "space_station")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "space_station" in bad.stderr
    wrong_space = tmp_path / "big.json"
    wrong_space.write_text((REPO / "predictnas" / "pretrained" / "archs" / "speech-v1" / "conformer-m.json").read_text())
    refused = run(env, "eval", wrong_space, "--run-dir", trained)
    assert refused.returncode == 2 and "width: 128 is not one of 32, 48" in refused.stderr


def test_user_manifests_train_and_the_sample_rate_guard_names_both_rates(env, trained, tmp_path):
    corpus = Path(load_supernet(trained / "supernet.pt").metadata["data"]["path"])
    args = ("train", "--preset", "tiny", "--train-data", corpus / "train.jsonl", "--dev-data", corpus / "dev.jsonl")
    wrong_rate = run(env, *args, "--run-dir", tmp_path / "a", "--steps", 2, "--sample-rate", 8000)
    assert wrong_rate.returncode == 2
    error = wrong_rate.stderr.strip().splitlines()[-1]
    assert "16000 Hz" in error and "8000 Hz" in error and "--resample" in error
    resampled = run(env, *args, "--run-dir", tmp_path / "b", "--steps", 2, "--sample-rate", 8000, "--resample")
    assert resampled.returncode == 0, resampled.stderr
    meta = load_supernet(tmp_path / "b" / "supernet.pt").metadata
    assert meta["sample_rate"] == 8000 and meta["data"]["kind"] == "user" and len(meta["intents"]) == 24


def test_sandwich_schedule_and_distillation(space):
    archs = sandwich(space, 3, np.random.default_rng(0))
    assert len(archs) == 5 and archs[0].width == max(space.config.widths) and archs[1].depth == min(space.config.depths)
    config = TrainConfig(steps=100, warmup_steps=10, peak_lr=1e-3)
    rates = [learning_rate(config, s) for s in range(100)]
    assert rates[9] == pytest.approx(1e-3) and rates[0] < rates[5] < rates[9] and rates[-1] < 0.1 * rates[9]
    logits = torch.randn(2, 7, 29)
    out = SubnetOutput(logits, torch.randn(2, 24), torch.tensor([7, 4]))
    assert distillation_loss(out, out).item() == pytest.approx(0.0, abs=1e-6)
    other = SubnetOutput(logits.flip(-1), out.intent_logits, out.lengths)
    assert distillation_loss(other, out).item() > 0


def test_phases_of_the_schedule_and_the_precision_setting(space):
    config = TrainConfig(steps=20, largest_only_steps=4, full_size_steps=10, random_subnets=2)
    phases = [subnets_of_step(config, space, step, np.random.default_rng(step)) for step in range(20)]
    largest = largest_arch(space)
    assert all(p == [largest] for p in phases[:4])
    assert all(p == [largest] for p in phases[4:10:2]) and all(len(p) == 1 for p in phases[5:10:2])
    assert all(len(p) == 4 and p[0] == largest for p in phases[10:])
    variants = [full_size_variant(space, np.random.default_rng(seed)) for seed in range(40)]
    for arch in variants:
        space.check(arch)
        assert arch.width == largest.width and arch.depth == largest.depth
        assert all(b.heads == largest.blocks[0].heads and b.ffn_dim == largest.blocks[0].ffn_dim for b in arch.blocks)
    assert len({a.frontend_kind for a in variants}) == 2 and len({a.connectivity for a in variants}) == 2
    assert full_size_variant(space, np.random.default_rng(0), redraw=0.0) == largest
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16") == torch.bfloat16
    assert autocast_dtype("auto") in (None, torch.bfloat16)
    with pytest.raises(PredictnasError, match="precision"):
        autocast_dtype("fp16")


def test_the_sandwich_draws_subnets_at_every_distance_from_the_largest(space):
    """Near the largest and far from it (a share of its genes redrawn, the share uniform per subnet)."""
    teacher = space.encode(largest_arch(space))
    rng = np.random.default_rng(0)
    archs = near_largest(space, 200, rng)
    changed = np.array([(space.encode(a) != teacher).sum() for a in archs])
    uniform = np.array([(space.encode(a) != teacher).sum() for a in near_largest(space, 200, rng, redraw=1.0)])
    assert (changed <= 3).sum() >= 10 and changed.max() >= np.median(uniform)
    assert np.median(changed) < 0.75 * np.median(uniform)
    assert near_largest(space, 3, rng, redraw=0.0) == [largest_arch(space)] * 3
    with pytest.raises(PredictnasError, match="subnet_draw"):
        subnets_of_step(TrainConfig(subnet_draw="nearest"), space, 0, rng)


def test_front_end_matching_trains_the_depthwise_front_end_towards_the_full_one(space):
    torch.manual_seed(0)
    net = Supernet(space.config).train()
    arch = dataclasses.replace(largest_arch(space), frontend_kind="dwsep", frontend_kernel=5, width=96)
    reference = dataclasses.replace(arch, frontend_kind="full")
    features, lengths = torch.randn(3, 83, space.config.n_mels), torch.tensor([83, 60, 31])
    out, out_lengths = net.frontend(features, arch, lengths)
    alone = net.extract(arch).frontend(features, lengths)
    assert torch.allclose(out, alone[0], atol=1e-6) and torch.equal(out_lengths, alone[1])
    full = net.frontend(features, reference, lengths)
    assert frontend_match_loss(full[0], *full).item() == 0
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        with torch.no_grad():
            target = net.frontend(features, reference, lengths)
        loss = frontend_match_loss(net.frontend(features, arch, lengths)[0], *target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    untouched = [p for name, p in net.shared.items() if name.startswith("frontend/conv")]
    assert untouched and all(p.grad is None or not p.grad.any() for p in untouched)  # the reference is held fixed

    # Given the front-end's output, a subnet computes the same and sends no gradient into the front-end.
    net.zero_grad(set_to_none=True)
    given = net.frontend(features, arch, lengths)
    started = net(features, arch, lengths, frontend_output=(given[0].detach(), given[1]))
    assert torch.allclose(started.ctc_logits, net(features, arch, lengths).ctc_logits.detach(), atol=1e-5)
    net.zero_grad(set_to_none=True)
    started.ctc_logits.sum().backward()
    frontend = [p for name, p in net.shared.items() if name.startswith("frontend/")]
    assert all(p.grad is None for p in frontend) and net.shared["ctc_head/weight"].grad.any()


def test_in_a_sandwich_step_the_depthwise_front_end_learns_from_matching_alone(space):
    torch.manual_seed(0)
    net = Supernet(space.config).train()
    features, lengths = torch.randn(3, 83, space.config.n_mels), torch.tensor([83, 60, 31])
    batch = SimpleNamespace(feature_lengths=lengths, targets=torch.randint(1, space.config.vocab_size, (3, 9)),
                            target_lengths=torch.tensor([9, 7, 4]), intents=torch.tensor([0, 1, -1]))
    config = TrainConfig(random_subnets=0, frontend_match_weight=1.0)  # the sandwich from step 0
    record = SandwichObjective(space)(net, features, batch, 0, config, np.random.default_rng(0))
    smallest = smallest_arch(space)
    assert smallest.frontend_kind == "dwsep" and record["frontend_match"] > 0
    names = [name for name in net.shared if name.startswith(("frontend/dw", "frontend/pw"))]
    from_the_step = [net.shared[name].grad.clone() for name in names]
    net.zero_grad(set_to_none=True)
    with torch.no_grad():
        target = net.frontend(features, dataclasses.replace(smallest, frontend_kind="full"), lengths)
    frontend_match_loss(net.frontend(features, smallest, lengths)[0], *target).backward()
    for name, grad in zip(names, from_the_step):
        assert torch.allclose(grad, net.shared[name].grad, atol=1e-6), name


def test_user_data_has_a_test_split_and_unlabelled_environments_count_under_all_only(env, trained, tmp_path):
    """--test-data beside --train-data/--dev-data: eval --split test scores the user's held-out speakers;
    utterances without an environment are reported under "all" only; a supernet trained without a test
    set says how to give one."""
    corpus = Path(load_supernet(trained / "supernet.pt").metadata["data"]["path"])
    held_out = tmp_path / "held_out.jsonl"
    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()][:40]
    held_out.write_text("".join(json.dumps({"audio_filepath": str(corpus / r["audio_filepath"]), "text": r["text"],
                                            "duration": r["duration"], "intent": r["intent"]}) + "\n" for r in rows))
    args = ("train", "--preset", "tiny", "--train-data", corpus / "train.jsonl", "--dev-data", corpus / "dev.jsonl",
            "--steps", 2, "--no-progress")
    assert run(env, *args, "--run-dir", tmp_path / "with", "--test-data", held_out).returncode == 0
    assert run(env, *args, "--run-dir", tmp_path / "without").returncode == 0
    arch = tmp_path / "arch.json"
    arch.write_text(get_space("speech-tiny").covering()[1].to_json())
    result = run(env, "eval", arch, "--run-dir", tmp_path / "with", "--split", "test", "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["wer"]) == {"all"} and report["utterances"]["all"] == 40
    one_error_line(run(env, "eval", arch, "--run-dir", tmp_path / "without", "--split", "test"), "--test-data")
    given = run(env, "eval", arch, "--run-dir", tmp_path / "without", "--split", "test", "--test-data", held_out,
                "--json", "--no-progress")
    assert given.returncode == 0, given.stderr
    assert json.loads(given.stdout)["utterances"]["all"] == 40


def test_snapshots_keep_the_weights_every_n_steps_and_the_last_equals_the_artifact(tmp_path):
    from predictnas.data.dataset import Batch
    from predictnas.rundir import TrainingFiles
    from predictnas.train import Trainer

    space = get_space("speech-tiny")
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([120, 90])
    batch = Batch(torch.randn(2, 120, space.config.n_mels, generator=generator), lengths,
                  torch.randint(1, space.config.vocab_size, (2, 6), generator=generator), torch.tensor([6, 4]),
                  torch.tensor([0, -1]), ["quiet_home", None], ["", ""], torch.tensor([0, 1]))
    config = TrainConfig(steps=6, warmup_steps=1, random_subnets=1, snapshot_every_steps=2)
    torch.manual_seed(0)
    Trainer(Supernet(space.config), config, batches=lambda epoch, g: [batch], files=tmp_path).fit(progress=False)
    snapshots = sorted(p.name for p in TrainingFiles(tmp_path).snapshots.iterdir())
    assert snapshots == ["step-000002.pt", "step-000004.pt", "step-000006.pt"]
    first, last = (load_supernet(TrainingFiles(tmp_path).snapshots / name) for name in (snapshots[0], snapshots[-1]))
    final = load_supernet(tmp_path / "supernet.pt")
    assert all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), final.state_dict().values()))
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), final.state_dict().values()))


def test_the_command_line_offers_every_training_preset():
    from predictnas.cli.options import TRAINING_PRESETS
    from predictnas.experiment import PRESETS

    assert TRAINING_PRESETS == tuple(PRESETS)


def test_utterances_too_short_for_ctc_are_found():
    from predictnas.train import ctc_infeasible

    # 20 feature frames give 5 output frames, 12 give 3; "abba" needs 5 (a blank between the b's), "abbba" 7
    targets = [torch.tensor([1, 2, 2, 1]), torch.tensor([1, 2, 2, 2, 1]), torch.tensor([1, 2, 3, 4, 5])]
    assert ctc_infeasible(torch.tensor([20, 20, 12]), targets).tolist() == [False, True, True]


def test_a_diverged_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    from predictnas.data.dataset import Batch
    from predictnas.rundir import TrainingFiles
    from predictnas.train import SingleModelObjective, Trainer
    from predictnas.supernet import Subnet

    space = get_space("speech-tiny")
    generator = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(2, 120, space.config.n_mels, generator=generator), torch.tensor([120, 90]),
                  torch.randint(1, space.config.vocab_size, (2, 6), generator=generator), torch.tensor([6, 4]),
                  torch.tensor([0, -1]), [None, None], ["", ""], torch.tensor([0, 1]))

    class DivergesAtStep3(SingleModelObjective):  # a real step, whose reported loss turns into NaN at step 3
        def __call__(self, model, features, batch, step, config, rng):
            record = super().__call__(model, features, batch, step, config, rng)
            return {**record, "loss": float("nan")} if step == 3 else record

    model = Subnet(largest_arch(space), space.config)
    trainer = Trainer(model, TrainConfig(steps=6, warmup_steps=1, checkpoint_every_steps=1),
                      batches=lambda epoch, g: [batch], files=tmp_path, objective=DivergesAtStep3(),
                      save=lambda net, path: None)
    with pytest.raises(PredictnasError, match="diverged at step 3"):
        trainer.fit(progress=False)
    checkpoint = torch.load(TrainingFiles(tmp_path).checkpoint, weights_only=True)
    assert checkpoint["step"] == 3  # steps 0-2 done, step 3 never applied
    assert all(torch.isfinite(v).all() for v in checkpoint["supernet"].values())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in checkpoint["supernet"].items())


def test_uniformly_scaled_subnets_repeat_one_block_and_the_mixed_sandwich_draws_them(space):
    from predictnas.train import uniformly_scaled

    rng = np.random.default_rng(0)
    scaled = [uniformly_scaled(space, rng) for _ in range(200)]
    assert all(len(set(a.blocks)) == 1 for a in scaled)  # one block configuration, repeated
    assert {a.width for a in scaled} == set(space.config.widths) and len({a.depth for a in scaled}) >= 8
    assert len({a.blocks[0].heads for a in scaled}) == len(space.config.heads)
    config = TrainConfig(random_subnets=2, subnet_draw="mixed")
    step = subnets_of_step(config, space, 0, np.random.default_rng(1))
    assert len(step) == 4 and step[:2] == [largest_arch(space), smallest_arch(space)]
    assert len(set(step[3].blocks)) == 1  # the second of the others is uniformly scaled


def test_the_spread_sandwich_draws_its_first_other_from_the_whole_space(space):
    """The share of the largest's genes a draw keeps: as in uniform draws from the space for "spread",
    far more for "mixed", whose first other lies near the largest."""
    teacher = space.encode(largest_arch(space))
    uniform = np.mean(space.sample(2000, np.random.default_rng(0)) == teacher)

    def shared_with_largest(draw):
        config = TrainConfig(random_subnets=2, subnet_draw=draw)
        steps = [subnets_of_step(config, space, 0, np.random.default_rng(seed)) for seed in range(200)]
        assert all(len(set(step[3].blocks)) == 1 for step in steps)  # the second other: uniformly scaled
        return np.mean([np.mean(space.encode(step[2]) == teacher) for step in steps])

    assert abs(shared_with_largest("spread") - uniform) < 0.05
    assert shared_with_largest("mixed") > uniform + 0.15


def test_a_second_stage_starts_from_the_weights_it_is_given(env, trained, tmp_path):
    source = load_supernet(trained / "supernet.pt")
    result = run(env, "train", "--preset", "tiny", "--run-dir", tmp_path, "--steps", 1, "--seed", 5,
                 "--init-from", trained / "supernet.pt")
    assert result.returncode == 0, result.stderr
    continued = load_supernet(tmp_path / "supernet.pt")
    fresh = run(env, "train", "--preset", "tiny", "--run-dir", tmp_path / "fresh", "--steps", 1, "--seed", 5)
    assert fresh.returncode == 0, fresh.stderr
    restarted = load_supernet(tmp_path / "fresh" / "supernet.pt")

    def distance(a, b):
        return sum(float((x - y).norm() ** 2) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    assert distance(continued, source) < 0.01 * distance(restarted, source)
    assert json.loads((tmp_path / "train.json").read_text())["config"]["init_from"] == str(trained / "supernet.pt")
    for later_stage in ("refine", "spread"):
        one_error_line(run(env, "train", "--preset", later_stage, "--run-dir", tmp_path / later_stage), "--init-from")


def test_a_checkpoint_from_before_a_new_setting_resumes_at_its_default(env, trained, tmp_path):
    checkpoint = torch.load(trained / "train_checkpoint.pt", weights_only=True)
    del checkpoint["config"]["init_from"]  # written before the setting existed
    torch.save(checkpoint, tmp_path / "train_checkpoint.pt")
    result = run(env, "train", "--preset", "tiny", "--run-dir", tmp_path, "--steps", 60)
    assert result.returncode == 0, result.stderr  # finished before: resumed, nothing left to do
    assert (tmp_path / "supernet.pt").exists()
