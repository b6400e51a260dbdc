"""Training techniques: units that act on the loop across tasks, each a hook with its own options table, chosen
by name under `[train.techniques]`:

    [train.techniques.pcgrad]                 # gradient surgery (needs steps with several tasks)
    [train.techniques.bregman]                # SMART's Bregman proximal point
    weight = 1.0
    [train.techniques.layerwise_lr_decay]     # lower layers learn more slowly
    decay = 0.9
    [train.techniques.ema]                    # an exponential moving average of the weights (minbert.training
    decay = 0.999                             # .averaging): chosen at an epoch's end where it scores better
    [train.techniques.swa]                    # stochastic weight averaging over each stage's last epoch(s)
    epochs = 1

They run in this registry's order, whatever order a config lists them in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from minbert.data.batching import Batch
from minbert.errors import ConfigError
from minbert.options import NoOptions, Registry, option
from minbert.tasks.losses import TaskOutput
from minbert.training.averaging import ExponentialMovingAverage, StochasticWeightAveraging
from minbert.training.hooks import Hook, TrainerView
from minbert.training.layerwise_lr_decay import LayerwiseLRDecay
from minbert.training.samplers import SAMPLERS


class BregmanProximal:
    """SMART's momentum Bregman proximal point (Jiang et al. 2020): a slow copy of the model, theta~ <- beta *
    theta~ + (1 - beta) * theta after every update, whose predictions the model is pulled towards with
    weight * D(f(x; theta), f(x; theta~)) (the kind's `divergence`). It keeps each update near where training has
    been, so aggressive steps cannot wander far from the pretrained solution. Unlike a task's regularizers it spans
    every task, so it is a training technique; it restarts from the model at the start of every stage."""

    def __init__(self, model, weight: float, momentum: float):
        self.weight, self.momentum = weight, momentum
        self.teacher = copy.deepcopy(model).requires_grad_(False).eval()  # no dropout: a fixed target

    def __call__(self, batch: Batch, output: TaskOutput) -> Tensor:
        with torch.no_grad():
            target = self.teacher(batch)
        kind = self.teacher.heads[batch.task].kind
        return kind.divergence(output, TaskOutput(target.logits.float(), target.score.float()))

    @torch.no_grad()
    def update(self, model) -> None:
        pairs = [(t, p) for t, p in zip(self.teacher.parameters(), model.parameters(), strict=True) if p.requires_grad]
        if pairs:
            torch._foreach_lerp_([t for t, _ in pairs], [p.detach() for _, p in pairs], 1.0 - self.momentum)




def pcgrad(gradients: list[Tensor], rng: np.random.Generator) -> Tensor:
    """PCGrad (Yu et al. 2020): project each task's gradient off the others it conflicts with (negative dot
    product), visiting the others in random order, then sum. `gradients` are flat vectors, one per task."""
    projected = []
    for i, g in enumerate(gradients):
        g = g.clone()
        for j in rng.permutation(len(gradients)):
            if j == i:
                continue
            other = gradients[j]
            dot = torch.dot(g, other)
            # selected on the device (an `if dot < 0` would wait for it); the kept side is bit for bit the same
            g = torch.where(dot < 0, g - dot / other.dot(other).clamp_min(1e-20) * other, g)
        projected.append(g)
    return torch.stack(projected).sum(dim=0)


class GradientSurgery(Hook):
    """PCGrad (`[train.techniques.pcgrad]`) on steps with two or more tasks: each task's gradient of the shared
    parameters is kept apart, projected off the others it conflicts with (`pcgrad`), and the projections summed."""

    Options = NoOptions

    def __init__(self, options: NoOptions):
        self.gradients: list[Tensor] = []

    @classmethod
    def check(cls, options: NoOptions, context: Any) -> None:
        sampler = context.config.train.sampler
        if not SAMPLERS[sampler.name].mixes_tasks(sampler.options):
            raise ConfigError(f"{context.where}: PCGrad needs steps that hold several tasks' batches: use "
                              "[train.sampler] name = 'round_robin', update = 'global'")

    def before_step(self, trainer: TrainerView, step_batches: list) -> None:
        self.active = len(step_batches) > 1
        self.shared = [p for p in [*trainer.model.encoder.parameters(), *trainer.model.common.parameters()]
                       if p.requires_grad]
        self.gradients: list[Tensor] = []

    def after_backward(self, trainer: TrainerView, task: str) -> None:
        if self.active:
            self.gradients.append(torch.cat([torch.zeros(p.numel(), device=p.device) if p.grad is None
                                             else p.grad.reshape(-1) for p in self.shared]))
            for p in self.shared:
                p.grad = None

    def before_update(self, trainer: TrainerView) -> None:
        if self.gradients:
            # its own seeded order per step: resumable, and the sampler's stream is untouched
            combined = pcgrad(self.gradients, np.random.default_rng([trainer.config.seed, trainer.step]))
            for p, chunk in zip(self.shared, combined.split([p.numel() for p in self.shared]), strict=True):
                p.grad = chunk.view_as(p).to(p.dtype)


class Bregman(Hook):
    """SMART's Bregman proximal point (`[train.techniques.bregman]`): a slow copy of the model, restarted at every
    stage, whose predictions every batch is pulled towards; updated after each optimizer step and checkpointed."""

    @dataclass
    class Options:
        weight: float = option(1.0, low=0, low_open=True)
        momentum: float = option(0.99, low=0, high=1, high_open=True)  # the slow copy's EMA decay per step

    def __init__(self, options: Options):
        self.weight, self.momentum = options.weight, options.momentum
        self.proximal: BregmanProximal | None = None

    def stage_starting(self, trainer: TrainerView, index: int, from_best: bool) -> None:
        self.proximal = None  # rebuilt from the stage's starting weights in loss_terms

    def loss_terms(self, trainer: TrainerView) -> list[tuple[float, Callable]]:
        self.proximal = BregmanProximal(trainer.model, self.weight, self.momentum)
        return [(self.weight, self.proximal)]

    def after_update(self, trainer: TrainerView, losses: dict[str, Tensor]) -> None:
        self.proximal.update(trainer.model)

    def state(self) -> tuple[dict, dict[str, Tensor]]:
        return {}, {f"proximal.{k}": v for k, v in self.proximal.teacher.checkpoint_state().items()}

    def load_state(self, state: dict, tensors: dict[str, Tensor]) -> None:
        self.proximal.teacher.load_state({k.removeprefix("proximal."): v for k, v in tensors.items()
                                          if k.startswith("proximal.")})


TECHNIQUES = Registry("training technique", {"pcgrad": GradientSurgery, "bregman": Bregman,
                                             "layerwise_lr_decay": LayerwiseLRDecay,
                                             "ema": ExponentialMovingAverage, "swa": StochasticWeightAveraging})


def build_techniques(chosen: dict[str, Any]) -> list[Hook]:
    """The hooks of `[train.techniques.*]`, in the registry's order."""
    return [unit(chosen[name]) for name, unit in TECHNIQUES.items() if name in chosen]
