"""Schedules: how the tasks' batches of one epoch become optimizer steps.

A plan is a list of steps; a step is a list of (task, example positions) batches whose weighted losses are summed
before one optimizer update. Balancing (which examples each task contributes to an epoch) happens before this, in
`balance`. Each sampler is chosen by name with its own options: `sampler = "mtdnn"`, or
`[train.sampler] name = "proportional", alpha = 0.5`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minbert.errors import ConfigError
from minbert.options import NoOptions, Registry, option

Batches = dict[str, list[list[int]]]
Step = list[tuple[str, list[int]]]


class Sequential:
    """All batches of the first task, then all of the next (in config order)."""

    Options = NoOptions
    # token budgets (train.max_tokens_per_batch): batches hold different numbers of examples (set by the trainer)
    uneven_batches = False

    def __init__(self, options: object):
        self.options = options

    @classmethod
    def mixes_tasks(cls, options: object) -> bool:
        """Whether a step can hold batches of several tasks (what gradient surgery needs)."""
        return False

    def plan(self, batches: Batches, epoch: int, epochs: int, rng: np.random.Generator) -> list[Step]:
        return [[(task, b)] for task, task_batches in batches.items() for b in task_batches]


class RoundRobin(Sequential):
    """One batch of each task in turn; a task that runs out drops out of the rotation. `update = "local"`: an
    optimizer step per batch; `"global"`: one step on the summed losses of each round."""

    @dataclass
    class Options:
        update: str = option("local", choices=("local", "global"))

    @classmethod
    def mixes_tasks(cls, options: Options) -> bool:
        return options.update == "global"

    def plan(self, batches: Batches, epoch: int, epochs: int, rng: np.random.Generator) -> list[Step]:
        rounds = max((len(b) for b in batches.values()), default=0)
        steps: list[Step] = []
        for r in range(rounds):
            turn = [(task, task_batches[r]) for task, task_batches in batches.items() if r < len(task_batches)]
            steps.extend([turn] if self.options.update == "global" else [[item] for item in turn])
        return steps


class Proportional(Sequential):
    """Each step draws a task with p_t ~ N_t ** alpha (1: proportional to size, 0.5: square root, 0: uniform) and
    takes that task's next batch, cycling through a fresh shuffle when the task runs out. With uneven batches (token
    budgets: a batch of short sentences holds more examples than one of long pairs), p_t ~ N_t ** alpha / b_t, b_t
    the task's mean examples per batch, so that the examples drawn, not the steps, follow N_t ** alpha."""

    @dataclass
    class Options:
        alpha: float = option(0.5, low=0)
        steps_per_epoch: int = option(0, low=0)  # 0 = as many steps as all tasks' batches

    def alpha(self, epoch: int, epochs: int) -> float:
        return self.options.alpha

    def probabilities(self, batches: Batches, epoch: int, epochs: int) -> np.ndarray:
        sizes = np.array([sum(len(b) for b in task_batches) for task_batches in batches.values()], dtype=float)
        weights = sizes ** self.alpha(epoch, epochs)
        if self.uneven_batches:
            weights = weights * np.array([len(b) for b in batches.values()], dtype=float) / np.maximum(sizes, 1)
        return weights / weights.sum()

    def plan(self, batches: Batches, epoch: int, epochs: int, rng: np.random.Generator) -> list[Step]:
        tasks = list(batches)
        total = self.options.steps_per_epoch or sum(len(b) for b in batches.values())
        draws = rng.choice(len(tasks), size=total, p=self.probabilities(batches, epoch, epochs))
        queues = {task: [] for task in tasks}
        steps: list[Step] = []
        for draw in draws:
            task = tasks[draw]
            if not queues[task]:
                queues[task] = [batches[task][i] for i in rng.permutation(len(batches[task]))]
            steps.append([(task, queues[task].pop())])
        return steps


class Annealed(Proportional):
    """Proportional sampling with alpha = 1 - 0.8 (e - 1) / (E - 1) at epoch e of E (Stickland & Murray 2019):
    from size-proportional towards uniform as training goes on."""

    @dataclass
    class Options:
        steps_per_epoch: int = option(0, low=0)  # 0 = as many steps as all tasks' batches

    def alpha(self, epoch: int, epochs: int) -> float:
        return 1.0 - 0.8 * epoch / (epochs - 1) if epochs > 1 else 1.0  # `epoch` counts from 0


class MTDNN(Sequential):
    """MT-DNN (Liu et al. 2019): every task's mini-batches merged and shuffled, each batch once per epoch."""

    def plan(self, batches: Batches, epoch: int, epochs: int, rng: np.random.Generator) -> list[Step]:
        merged = [[(task, b)] for task, task_batches in batches.items() for b in task_batches]
        return [merged[i] for i in rng.permutation(len(merged))]


SAMPLERS = Registry("sampler", {"sequential": Sequential, "round_robin": RoundRobin, "proportional": Proportional,
                                "annealed": Annealed, "mtdnn": MTDNN})


def parse_balancing(balancing: str, num_tasks: int) -> list[float] | None:
    """None for full / trimmed / padded; a list of per-task ratios for "1:2:1"."""
    if balancing in ("full", "trimmed", "padded"):
        return None
    try:
        ratios = [float(r) for r in balancing.split(":")]
    except ValueError:
        ratios = []
    if len(ratios) != num_tasks or any(r <= 0 for r in ratios):
        raise ConfigError(f"train.balancing = {balancing!r}: use full, trimmed, padded, or {num_tasks} positive "
                          f"ratios such as {':'.join(['1'] * num_tasks)}")
    return ratios


def balance(sizes: dict[str, int], balancing: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The example positions each task contributes to one epoch (re-drawn every epoch).
    full: all; trimmed: every task cut to the smallest; padded: smaller tasks re-sampled up to the largest;
    ratios "1:2:1": the largest draw without repeats whose sizes follow the ratios."""
    ratios = parse_balancing(balancing, len(sizes))
    if balancing == "full":
        return {task: np.arange(n) for task, n in sizes.items()}
    if balancing == "trimmed":
        smallest = min(sizes.values())
        return {task: rng.choice(n, size=smallest, replace=False) for task, n in sizes.items()}
    if balancing == "padded":
        largest = max(sizes.values())
        return {task: np.concatenate([np.arange(n), rng.choice(n, size=largest - n, replace=True)])
                for task, n in sizes.items()}
    unit = min(n / r for n, r in zip(sizes.values(), ratios, strict=True))
    return {task: rng.choice(n, size=min(n, max(1, round(r * unit))), replace=False)
            for (task, n), r in zip(sizes.items(), ratios, strict=True)}
