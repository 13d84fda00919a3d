"""Supernet training: CTC + intent on the shared trunk, the sandwich rule, in-place distillation.

Training has three phases. The first ``largest_only_steps`` train the largest subnet alone: a teacher
that still outputs noise only drags the others along, and on a CPU budget a full-size net learns
about twice as fast per second when it is the only model (once-for-all also trains the full network
first). Until ``full_size_steps`` the largest then alternates with full-size variants whose structural
choices (front-end kind and kernel, connectivity, downsampling, conv modules) are partly redrawn: those
choices select separate weights or a different data path, and in earlier runs switching them on
weights trained for the largest alone left subnets on the blank-only CTC plateau (once-for-all's elastic
kernel stage, widened to every structural choice). Drawn from the first step instead, the variants did
not leave that plateau and held the largest on it too (one run, with the earlier post-norm blocks).
Afterwards every step trains the largest subnet on the labels, then the smallest and ``random_subnets``
others on the labels plus the largest's soft outputs (in-place distillation, as in once-for-all and
BigNAS; its weight ramps up over ``distill_ramp_steps``), accumulating gradients into the shared weights
before one optimizer step. Variants and others are the largest with a random share of its choices
redrawn (:func:`near_largest`), so they lie at every distance from it, not only at the farthest
(``subnet_draw="uniform"``: every choice redrawn, as before). From the second phase on, a front-end of
another kind than the largest's learns only by matching the largest's kind of front-end at its own
kernel and width (``frontend_match_weight``; see :func:`frontend_match_loss`).
Matrix work runs in bfloat16 where ``precision`` asks for it (about 1.8x faster on a CPU with AVX512-BF16).
Training runs on the CPU unless a ``device`` is given (``cuda`` where PyTorch sees a GPU); the artifacts
are device-independent and a checkpoint resumes on either.

Resumable and reproducible: the subnets, the batch order, SpecAugment and dropout of step ``s`` are all
drawn from generators seeded by ``(seed, s)``, and a checkpoint holds the weights, the optimizer and the
step. A run killed at any point and started again ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from .errors import PredictnasError, one_line
from .io import atomic_path, write_json
from .rundir import TrainingFiles
from .space import NO_CONV, Arch, Block, SearchSpace, largest_arch, smallest_arch
from .supernet import Supernet, SubnetOutput, save_supernet
from .supernet.subnet import MODEL_VERSION, frame_mask, output_lengths
from .supernet.supernet import check_model_version

# per draw: the share of the largest's choices redrawn (None: drawn per subnet), and whether the sandwich's
# others alternate with uniformly scaled ones (uniformly_scaled): "mixed" near the largest, "spread" uniform
SUBNET_DRAWS = {"near_largest": (None, False), "uniform": (1.0, False), "mixed": (None, True), "spread": (1.0, True)}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (with the data and the space)."""

    steps: int = 2000
    batch_seconds: float = 32.0  # padded audio per batch
    peak_lr: float = 1.5e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-2
    grad_clip: float = 5.0
    random_subnets: int = 2
    subnet_draw: str = "near_largest"  # a key of SUBNET_DRAWS: how variants and the sandwich's others are drawn
    distill_weight: float = 1.0
    intent_weight: float = 0.5
    dropout: float = 0.1
    spec_augment: bool = True
    spec_augment_from: int = 0  # first step with SpecAugment (it slows the first descent)
    largest_only_steps: int = 0  # first phase: the largest alone
    full_size_steps: int = 0  # end of the second phase: the largest alternating with full-size variants
    distill_ramp_steps: int = 0
    # after the first phase, front-ends of another kind than the teacher's learn by matching its output
    frontend_match_weight: float = 0.0
    precision: str = "fp32"  # "bf16": autocast matrix work to bfloat16; "auto": bf16 where the CPU has it
    seed: int = 0
    init_from: str = ""  # a supernet file whose weights a fresh run starts from (a second stage of training)
    checkpoint_minutes: float = 3.0
    checkpoint_every_steps: int = 0  # 0: by time only; tests use steps to make the kill point exact
    snapshot_every_steps: int = 0  # > 0: keep the weights every that many steps (for WER against compute)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def full_size_variant(space: SearchSpace, rng: np.random.Generator, redraw: float | None = None) -> Arch:
    """The largest widths, depth, heads and FFN dims; each structural choice (front-end kernel and kind,
    connectivity, downsampling point, each block's conv module) redrawn with probability ``redraw``
    (default: drawn uniformly from [0, 1] per variant, so variants lie at every distance from the largest)."""
    c = space.config
    teacher = largest_arch(space)
    redraw = rng.random() if redraw is None else redraw

    def pick(choices, teachers):
        return choices[rng.integers(len(choices))] if rng.random() < redraw else teachers

    blocks = []
    for block in teacher.blocks:
        kind = pick(c.conv_kinds, block.conv_kind)
        if kind == NO_CONV:
            conv = ()
        else:
            conv = (pick(c.conv_kernels, block.conv_kernel), pick(c.dilations, block.dilation),
                    pick(c.conv_placements, block.conv_placement))
        blocks.append(Block(block.heads, block.ffn_dim, kind, *conv))
    return Arch(pick(c.frontend_kernels, teacher.frontend_kernel), pick(c.frontend_kinds, teacher.frontend_kind),
                teacher.width, pick(c.connectivities, teacher.connectivity),
                pick((None,) + tuple(range(1, c.max_depth)), teacher.downsample_after), tuple(blocks))


def near_largest(space: SearchSpace, n: int, rng: np.random.Generator, redraw: float | None = None) -> list[Arch]:
    """``n`` architectures, each the largest with every gene redrawn with probability ``redraw`` (default:
    drawn uniformly from [0, 1] for each architecture; 1 is a uniform draw from the space).

    Why: a uniform draw changes nearly every choice of the teacher at once, so every subnet the sandwich
    trained sat at the greatest distance from the largest, where its distillation targets meant least.
    Those subnets' losses stayed flat through the sandwich, and the largest with a single choice changed
    (kernel 3, dilation 2, grouped conv, downsampling after block 1) lost 30-40 WER points: the weights of
    each choice had only learned to work among random others. Drawn at every distance instead, each
    choice is trained both next to the teacher's and among random ones (once-for-all shrinks the network
    in stages for the same reason).
    """
    teacher = space.encode(largest_arch(space))[None]
    rates = [float(rng.random()) if redraw is None else redraw for _ in range(n)]
    return [space.decode(space.mutate(teacher, rng, rate=rate)[0]) for rate in rates]


def uniformly_scaled(space: SearchSpace, rng: np.random.Generator) -> Arch:
    """A hand-design-like subnet: width, depth, front-end, connectivity and downsampling drawn uniformly, and
    one block configuration (heads, FFN, conv module) drawn once and repeated in every block.

    Why: the Conformers people build scale every block alike, and independent draws per block almost never
    give that: with subnets near the largest only, conformer-s (width 96, six alike blocks) stayed at 67 %
    dev WER with the shared weights after 4,000 steps, against 20 % trained alone.
    """
    c = space.config

    def pick(choices):
        return choices[rng.integers(len(choices))]

    kind = pick(c.conv_kinds)
    conv = () if kind == NO_CONV else (pick(c.conv_kernels), pick(c.dilations), pick(c.conv_placements))
    depth = pick(c.depths)
    block = Block(pick(c.heads), pick(c.ffn_dims), kind, *conv)
    arch = Arch(pick(c.frontend_kernels), pick(c.frontend_kinds), pick(c.widths), pick(c.connectivities),
                pick((None,) + tuple(range(1, depth))), (block,) * depth)
    return space.check(arch)


def sandwich(space: SearchSpace, n_random: int, rng: np.random.Generator, redraw: float | None = None,
             mixed: bool = False) -> list[Arch]:
    """Largest first (the teacher), then the smallest and ``n_random`` architectures from
    :func:`near_largest` (``mixed``: every second one from :func:`uniformly_scaled` instead)."""
    if not mixed:
        return [largest_arch(space), smallest_arch(space)] + near_largest(space, n_random, rng, redraw)
    others = [uniformly_scaled(space, rng) if i % 2 else near_largest(space, 1, rng, redraw)[0] for i in range(n_random)]
    return [largest_arch(space), smallest_arch(space)] + others


def subnets_of_step(config: TrainConfig, space: SearchSpace, step: int, rng: np.random.Generator) -> list[Arch]:
    if config.subnet_draw not in SUBNET_DRAWS:
        raise PredictnasError(f"subnet_draw {config.subnet_draw!r}: choose {' or '.join(SUBNET_DRAWS)}")
    redraw, mixed = SUBNET_DRAWS[config.subnet_draw]
    if step < config.largest_only_steps:
        return [largest_arch(space)]
    if step < config.full_size_steps:
        return [largest_arch(space) if step % 2 == 0 else full_size_variant(space, rng, redraw)]
    return sandwich(space, config.random_subnets, rng, redraw, mixed=mixed)


def distill_weight(config: TrainConfig, step: int) -> float:
    """Ramps linearly from 0 to ``distill_weight`` over the first ``distill_ramp_steps`` sandwich steps."""
    into_sandwich = step - max(config.largest_only_steps, config.full_size_steps) + 1
    return config.distill_weight * min(1.0, into_sandwich / max(1, config.distill_ramp_steps))


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < config.warmup_steps:
        return config.peak_lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.peak_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def autocast_dtype(precision: str, device: torch.device = torch.device("cpu")) -> torch.dtype | None:
    """The dtype that matrix work is autocast to, or None for float32 throughout."""
    if precision not in ("fp32", "bf16", "auto"):
        raise PredictnasError(f"precision {precision!r}: choose fp32, bf16 or auto")
    if precision == "auto":  # bf16 only where the hardware computes it natively
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported()
        else:  # AVX512-BF16 or AMX
            native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        precision = "bf16" if native else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def training_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``), or ``auto``: a GPU where PyTorch sees one, else the CPU."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PredictnasError(f"device {name!r}: choose cpu, cuda or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PredictnasError(f"device {name!r}: PyTorch sees no CUDA GPU on this machine; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise PredictnasError(f"device {name!r}: choose cpu, cuda or auto")
    return device


# Losses take the logits in float32: softmax over 29 symbols and the CTC recursion lose too much in bf16.
def ctc_loss(out: SubnetOutput, targets: Tensor, target_lengths: Tensor) -> Tensor:
    log_probs = out.ctc_logits.float().log_softmax(-1).transpose(0, 1)
    return F.ctc_loss(log_probs, targets, out.lengths, target_lengths, blank=0, zero_infinity=True)


def distillation_loss(student: SubnetOutput, teacher: SubnetOutput) -> Tensor:
    """KL from the teacher's frame posteriors (valid frames only) and intent distribution."""
    mask = frame_mask(student.lengths, student.ctc_logits.shape[1])
    kl = F.kl_div(student.ctc_logits.float().log_softmax(-1), teacher.ctc_logits.float().log_softmax(-1),
                  log_target=True, reduction="none").sum(-1)
    frames = (kl * mask).sum() / mask.sum()
    intents = F.kl_div(student.intent_logits.float().log_softmax(-1), teacher.intent_logits.float().log_softmax(-1),
                       log_target=True, reduction="batchmean")
    return frames + intents


def frontend_match_loss(output: Tensor, target: Tensor, target_lengths: Tensor) -> Tensor:
    """Mean squared error between a front-end's output and the target front-end's (the largest's kind at
    the same kernel and width, computed without gradients), relative to the target's mean square.

    Why: the trunk is trained mostly on the teacher's front-end kind. Through the CTC loss alone, a
    depthwise-separable front-end never learned to give the trunk what it reads (its output stayed near
    std 0.4 against 56, and every subnet using it emitted blanks only); matching gives it a direct target
    (relative error 1.0 -> 0.15-0.2 within 1,300 steps of the small recipe, and those subnets output text).
    """
    mask = frame_mask(target_lengths, target.shape[1])[..., None].float()
    target = target.float()
    error = ((output.float() - target) ** 2 * mask).sum()
    return error / (target ** 2 * mask).sum().clamp_min(1e-6)


def ctc_infeasible(feature_lengths: Tensor, targets: Sequence[Tensor]) -> Tensor:
    """Which utterances no CTC alignment fits: fewer output frames than labels plus one blank between each
    pair of equal neighbours. Their loss is zeroed (``zero_infinity``), so they teach nothing; fast speech
    or long transcripts in a user's data are the usual cause."""
    frames = output_lengths(feature_lengths)
    needed = torch.tensor([t.numel() + int((t[1:] == t[:-1]).sum()) for t in targets])
    return needed > frames


@dataclass
class TrainState:
    step: int
    history: list[dict]
    seconds: float


class SandwichObjective:
    """One supernet step: the subnets of the step's phase; distillation from the largest after the first;
    front-end matching for subnets whose front-end kind differs from the largest's."""

    label = "supernet"

    def __init__(self, space: SearchSpace):
        self.space = space
        self.reference_kind = largest_arch(space).frontend_kind  # the front-end kind others are matched to

    def __call__(self, net: Supernet, features: Tensor, batch, step: int, config: TrainConfig,
                 rng: np.random.Generator) -> dict:
        record: dict = {}
        teacher = None
        for i, arch in enumerate(subnets_of_step(config, self.space, step, rng)):
            out, loss, match = self.train_subnet(net, features, batch, arch, teacher, config, step)
            if teacher is None:
                teacher = SubnetOutput(out.ctc_logits.detach(), out.intent_logits.detach(), out.lengths)
                record["loss"] = loss
            else:
                record["loss_smallest" if i == 1 else f"loss_random{i - 2}"] = loss
            if match is not None:
                record["frontend_match"] = record.get("frontend_match", 0.0) + match
        return record

    def train_subnet(self, net: Supernet, features: Tensor, batch, arch: Arch, teacher: SubnetOutput | None,
                     config: TrainConfig, step: int) -> tuple[SubnetOutput, float, float | None]:
        """Forward, losses and backward of one subnet of a step (``teacher``: the largest's detached outputs,
        None for the largest itself); returns its output, its loss and its front-end matching loss (None
        where its front-end kind is the largest's)."""
        matched = bool(config.frontend_match_weight) and arch.frontend_kind != self.reference_kind
        frontend = None
        if matched:
            frontend = net.frontend(features, arch, batch.feature_lengths)
            with torch.no_grad():
                target = net.frontend(features, dataclasses.replace(arch, frontend_kind=self.reference_kind),
                                      batch.feature_lengths)
        # a matched front-end learns from matching alone (the trunk reads its output detached): through
        # the trunk, the CTC gradient on it was about 25x the matching gradient and pointed elsewhere,
        # and matching stalled at the start
        out = net(features, arch, batch.feature_lengths,
                  frontend_output=None if frontend is None else (frontend[0].detach(), frontend[1]))
        loss = labelled_loss(out, batch, config)
        if teacher is not None:
            loss = loss + distill_weight(config, step) * distillation_loss(out, teacher)
        reported, match_value = float(loss.detach()), None
        if matched:
            match = frontend_match_loss(frontend[0], *target)
            match_value = float(match.detach())
            loss = loss + config.frontend_match_weight * match
        _backward(loss, step)
        return out, reported, match_value


class SingleModelObjective:
    """One standalone model (a subnet fine-tuned or trained from scratch): labels only."""

    label = "subnet"

    def __call__(self, model, features: Tensor, batch, step: int, config: TrainConfig,
                 rng: np.random.Generator) -> dict:
        loss = labelled_loss(model(features, batch.feature_lengths), batch, config)
        _backward(loss, step)
        return {"loss": float(loss.detach())}


def labelled_loss(out: SubnetOutput, batch, config: TrainConfig) -> Tensor:
    loss = ctc_loss(out, batch.targets, batch.target_lengths)
    if (batch.intents >= 0).any():
        loss = loss + config.intent_weight * F.cross_entropy(out.intent_logits.float(), batch.intents, ignore_index=-1)
    return loss


def _backward(loss: Tensor, step: int) -> None:
    check_finite_loss(float(loss.detach()), step)
    loss.backward()


def check_finite_loss(loss: float, step: int) -> None:
    """Stop at a NaN or infinite loss, before the optimizer step: the weights and the last checkpoint are
    still the last good ones."""
    if not math.isfinite(loss):
        raise PredictnasError(f"training diverged at step {step} (loss {loss}); the checkpoint keeps the last "
                              "good step: lower the peak learning rate and start afresh")


class Trainer:
    """Trains ``model`` into ``files`` (a :class:`~predictnas.rundir.TrainingFiles`, or a folder for a
    supernet's); ``fit()`` resumes from the checkpoint there, if any.

    ``batches(epoch, generator)`` must return the list of training batches of that epoch in an order
    drawn from ``generator`` (so the order is reproducible); each batch has ``features``,
    ``feature_lengths``, ``targets``, ``target_lengths`` and ``intents`` (-1 where unknown).
    ``objective`` computes and back-propagates one step's losses (default: the supernet's sandwich);
    ``save(model, path)`` writes the final artifact ``files.artifact``. Steps run on ``device``
    (batches are built and augmented on the CPU, then moved); ``fit()`` leaves the model on the CPU.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, batches: Callable[[int, torch.Generator], Sequence],
                 files: TrainingFiles | str | Path, augment: Callable[[Tensor, Tensor, torch.Generator], Tensor] | None = None,
                 data_fingerprint: str = "", frames_per_second: float = 100.0, objective=None,
                 save: Callable = save_supernet, device: str | torch.device = "cpu"):
        self.device = training_device(device)
        self.net, self.config, self.batches, self.augment = model.to(self.device), config, batches, augment
        self.objective = objective or SandwichObjective(SearchSpace(model.space))
        self.save = save
        self.files = files if isinstance(files, TrainingFiles) else TrainingFiles(Path(files))
        self.files.folder.mkdir(parents=True, exist_ok=True)
        self.data_fingerprint = data_fingerprint
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.peak_lr, weight_decay=config.weight_decay)
        self.frames_per_second = frames_per_second
        self.autocast_dtype = autocast_dtype(config.precision, self.device)
        self._epoch_cache: tuple[int, Sequence] | None = None
        self._per_epoch: int | None = None

    def fit(self, progress: bool = True) -> TrainState:
        state = self._resume()
        if state.step >= self.config.steps and self.files.artifact.exists():
            self.net.to("cpu")
            return state  # finished before: the artifact, which later stages fingerprint, stays untouched
        bar = tqdm(total=self.config.steps, initial=state.step, disable=not progress, unit="step",
                   dynamic_ncols=True, desc=self.objective.label)
        last_save, started = time.monotonic(), time.monotonic() - state.seconds
        while state.step < self.config.steps:
            t0 = time.perf_counter()
            record = self._train_step(state.step)
            record["seconds"] = time.perf_counter() - t0
            state.history.append(record)
            state.step += 1
            state.seconds = time.monotonic() - started
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.1e}",
                            audio_s_per_s=f"{record['audio_seconds'] / record['seconds']:.0f}")
            by_steps = self.config.checkpoint_every_steps and state.step % self.config.checkpoint_every_steps == 0
            by_time = time.monotonic() - last_save >= 60 * self.config.checkpoint_minutes
            if by_steps or by_time:
                self._save_checkpoint(state)
                last_save = time.monotonic()
            if self.config.snapshot_every_steps and state.step % self.config.snapshot_every_steps == 0:
                self.save(self.net, self.files.snapshot(state.step))
        bar.close()
        self._save_checkpoint(state)
        self.net.to("cpu")
        self.save(self.net, self.files.artifact)
        write_json(self.files.summary, {"config": self.config.to_dict(), "steps": state.step,
                                                 "wall_seconds": state.seconds, "data": self.data_fingerprint,
                                                 "autocast": str(self.autocast_dtype or "none"),
                                                 "history": state.history})
        return state

    def _train_step(self, step: int) -> dict:
        cfg = self.config
        seed = [cfg.seed, step]
        torch.manual_seed(_seed_of(seed))  # the dropout masks of this step
        batch = self._batch(step)
        features = batch.features
        if cfg.spec_augment and self.augment is not None and step >= cfg.spec_augment_from:
            features = self.augment(features, batch.feature_lengths,
                                    torch.Generator().manual_seed(_seed_of(seed + [1])))
        if self.device.type != "cpu":
            features, batch = features.to(self.device), on_device(batch, self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        record = {"step": step, "lr": learning_rate(cfg, step),
                  "audio_seconds": float(batch.feature_lengths.sum()) / self.frames_per_second}
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16, enabled=self.autocast_dtype is not None):
            record.update(self.objective(self.net, features, batch, step, cfg, np.random.default_rng(seed)))
        for name, value in record.items():  # whatever the objective reports as a loss
            if name.startswith("loss"):
                check_finite_loss(value, step)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return record

    def _batch(self, step: int):
        """Batch ``step`` of the run: epochs are consecutive, each shuffled by its own seed."""
        if self._per_epoch is None:
            self._per_epoch = len(self._epoch(0))
            if not self._per_epoch:
                raise PredictnasError("no training batches: the training set is empty")
        epoch, index = divmod(step, self._per_epoch)
        return self._epoch(epoch)[index]

    def _epoch(self, epoch: int) -> Sequence:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            generator = torch.Generator().manual_seed(_seed_of([self.config.seed, epoch, 7]))
            self._epoch_cache = (epoch, self.batches(epoch, generator))
        return self._epoch_cache[1]

    def _save_checkpoint(self, state: TrainState) -> None:
        with atomic_path(self.files.checkpoint) as tmp:
            torch.save({"step": state.step, "seconds": state.seconds, "history": state.history,
                        "config": self.config.to_dict(), "data": self.data_fingerprint, "model_version": MODEL_VERSION,
                        "supernet": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}, tmp)

    def _resume(self) -> TrainState:
        path = self.files.checkpoint
        if not path.exists():
            return TrainState(0, [], 0.0)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a checkpoint is only ever replaced atomically, so this is foreign or corrupt
            raise PredictnasError(f"{path}: unreadable checkpoint ({one_line(e, 160)}); move it away to start afresh") from None
        check_model_version(ckpt, path)
        # fields added to TrainConfig since the checkpoint was written count at their defaults
        saved = {**TrainConfig().to_dict(), **ckpt["config"]}
        if saved != self.config.to_dict() or ckpt["data"] != self.data_fingerprint:
            raise PredictnasError(f"{path}: written by a run with another configuration or data; "
                                  "use another --run-dir or delete it to start afresh")
        try:
            self.net.load_state_dict(ckpt["supernet"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError) as e:  # written by another version of the model
            raise PredictnasError(f"{path}: its weights do not fit this version's model "
                                  f"({one_line(e, 160)}); move it away to start afresh") from None
        return TrainState(ckpt["step"], ckpt["history"], ckpt["seconds"])


def on_device(batch, device: torch.device):
    """The batch (a named tuple) with its tensors on ``device``."""
    return batch._replace(**{k: v.to(device) for k, v in batch._asdict().items() if isinstance(v, Tensor)})


def _seed_of(entropy: list[int]) -> int:
    """A well-mixed 32-bit seed from a list of integers (run seed, step, stream...)."""
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
