"""Weight averaging: a second copy of the model whose weights average the training model's over steps, evaluated
on dev at every epoch's end beside the raw weights; where it scores better, the epoch's weights are the average
(its record says `"weights": "ema"` and keeps the raw figures under "raw"), and that is what the best checkpoint
saves. Each is a training technique (`[train.techniques.ema]`, `[train.techniques.swa]`), restarted from the
model at every stage's start (a stage starts from the best checkpoint so far), and checkpointed: resume is exact.

- EMA: after every `every`-th update, avg <- decay * avg + (1 - decay) * theta (Polyak averaging as an
  exponential moving average; Tarvainen & Valpola 2017 and most fine-tuning recipes use decay 0.99-0.9999).
- SWA (Izmailov et al. 2018; for compact LMs Lu et al. 2022): the plain mean of the weights sampled every `every`
  updates over the last `epochs` epochs of each stage, under the stage's own schedule.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from minbert.options import option
from minbert.tasks.model import MultitaskModel
from minbert.training.hooks import Hook, TrainerView

log = logging.getLogger("minbert")


class AveragedWeights(Hook):
    """What EMA and SWA share: the copy, its evaluation and choice at epoch ends, its checkpointed state."""

    name = ""

    def __init__(self):
        self.average: MultitaskModel | None = None
        self.count = 0  # weights averaged in so far in this stage

    def restart(self, model: MultitaskModel) -> None:
        self.average = copy.deepcopy(model).requires_grad_(False).eval()
        self.count = 0

    def pairs(self, model: MultitaskModel) -> tuple[list[Tensor], list[Tensor]]:
        """(averaged, current) for every parameter that trains now (the others are the same in both)."""
        chosen = [(a, p.detach()) for a, p in zip(self.average.parameters(), model.parameters(), strict=True)
                  if p.requires_grad]
        return [a for a, _ in chosen], [p for _, p in chosen]

    def stage_started(self, trainer: TrainerView) -> None:
        self.restart(trainer.model)  # after BestCheckpoint loaded the best weights into the model
        trainer.candidates[self.name] = self.average

    def ready(self, trainer: TrainerView) -> bool:
        """Whether the average holds anything yet this stage (else the raw weights are all there is)."""
        return self.count > 0

    @torch.no_grad()
    def epoch_ended(self, trainer: TrainerView, record: dict) -> None:
        if not self.ready(trainer):
            return
        dev = trainer.evaluate("dev", self.average)
        score = trainer.selection_score(dev)
        record.setdefault("averages", {})[self.name] = {"dev": dev, "selection_score": score,
                                                        "weights_averaged": self.count}
        better = score > record["selection_score"]
        log.info("epoch %d: %s weights (%d averaged) selection %.4f, %s the epoch's %.4f%s", record["epoch"],
                 self.name, self.count, score, "above" if better else "not above", record["selection_score"],
                 f": the epoch's weights are the {self.name} average" if better else "")
        if better:
            record.setdefault("raw", {"dev": record["dev"], "selection_score": record["selection_score"]})
            record.update(dev=dev, selection_score=score, weights=self.name)

    def state(self) -> tuple[dict, dict[str, Tensor]]:
        return ({f"{self.name}_count": self.count},
                {f"{self.name}.{k}": v for k, v in self.average.checkpoint_state().items()})

    def load_state(self, state: dict, tensors: dict[str, Tensor]) -> None:
        prefix = f"{self.name}."
        self.average.load_state({k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)})
        self.count = state[f"{self.name}_count"]


class ExponentialMovingAverage(AveragedWeights):
    """`[train.techniques.ema]`: avg <- decay * avg + (1 - decay) * theta after every `every`-th update."""

    name = "ema"

    @dataclass
    class Options:
        decay: float = option(0.999, low=0, high=1, low_open=True, high_open=True)
        every: int = option(1, low=1)  # updates between two averaging steps

    def __init__(self, options: Options):
        super().__init__()
        self.decay, self.every = options.decay, options.every

    @torch.no_grad()
    def after_update(self, trainer: TrainerView, losses: dict[str, Tensor]) -> None:
        if trainer.stage_step % self.every == 0:
            averaged, current = self.pairs(trainer.model)
            if averaged:
                torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
            self.count += 1


class StochasticWeightAveraging(AveragedWeights):
    """`[train.techniques.swa]`: the running mean of the weights every `every` updates over the last `epochs`
    epochs of each stage."""

    name = "swa"

    @dataclass
    class Options:
        epochs: int = option(1, low=1)  # the stage's last this many epochs (a stage shorter than that: all of it)
        every: int = option(50, low=1)  # updates between two samples

    def __init__(self, options: Options):
        super().__init__()
        self.epochs, self.every = options.epochs, options.every

    def averaging(self, trainer: TrainerView) -> bool:
        return trainer.epoch >= trainer.stages[trainer.stage].epochs - self.epochs

    @torch.no_grad()
    def after_update(self, trainer: TrainerView, losses: dict[str, Tensor]) -> None:
        if not self.averaging(trainer) or trainer.stage_step % self.every:
            return
        averaged, current = self.pairs(trainer.model)
        if self.count == 0:  # the first sample replaces the stage's starting copy
            torch._foreach_copy_(averaged, current)
        elif averaged:
            torch._foreach_lerp_(averaged, current, 1.0 / (self.count + 1))
        self.count += 1
