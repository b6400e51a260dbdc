"""Schedules: how the tasks' batches of one epoch become optimizer steps.

A plan is a list of steps; a step is a list of (task, example positions) batches whose weighted losses are summed
before one optimizer update.
"""

from __future__ import annotations

import numpy as np

Step = list[tuple[str, list[int]]]


class Sequential:
    """All batches of the first task, then all of the next (in config order)."""

    def plan(self, batches: dict[str, list[list[int]]], epoch: int, epochs: int, rng: np.random.Generator,
             ) -> list[Step]:
        return [[(task, b)] for task, task_batches in batches.items() for b in task_batches]


SAMPLERS = {"sequential": Sequential}
