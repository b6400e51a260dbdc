"""Knowledge distillation: a student learns from a teacher's soft outputs mixed with the gold labels.

The teacher is a finished run or an ensemble (`[train.distillation] teacher`), or one per task (`tasks.X.teacher`):
with one single-task teacher per task and teacher annealing this is Born-Again Multi-Task Networks (BAM!, Clark et
al. 2019). A training example's target is

    (1 - s) * gold + s * teacher      s = `weight`, or with `annealing` 1 - progress through the stage

where gold is one-hot for SST (the teacher's class distribution is sharpened or softened at `temperature`), 0/1 for
paraphrase (the teacher's probability), and the score for STS (the teacher's score); each task's own loss then
takes the mixed target. Teacher outputs are computed once per training example and cached in the run directory
(`teacher/<task>.npy`, keyed by the teacher and the examples), so later epochs and a resumed run read the same
numbers: minbert.runs.teachers computes and attaches them before the loop starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from minbert.options import option
from minbert.tasks.kinds import TaskKind

log = logging.getLogger("minbert")


@dataclass(frozen=True)
class Distillation:
    """`[train.distillation]`: the teacher of every task without its own `tasks.X.teacher`, and the mix."""

    teacher: str = ""  # a finished run or ensemble directory; "" = none (unless a task names its own)
    weight: float = option(0.5, low=0, high=1)  # the teacher's share of the target without annealing
    annealing: bool = True  # the teacher's share falls linearly from 1 to 0 over each stage (BAM!)
    temperature: float = option(1.0, low=0, low_open=True)  # SST: p -> p ** (1 / T), renormalised

    def share(self, progress: float) -> float:
        """The teacher's share of the target at `progress` (0..1) through the stage."""
        return max(0.0, 1.0 - progress) if self.annealing else self.weight

    def targets(self, kind: TaskKind, gold: Tensor, teacher: Tensor, share: float) -> Tensor:
        """The mixed training target in the form the task's loss takes (class probabilities for SST)."""
        return kind.distillation_target(gold, teacher.to(gold.device, torch.float32), share, self.temperature)
