"""Task kinds: what a task asks of a model, derived from its data spec and loss (minbert.tasks.kinds.base says what
every kind answers). A kind is one module here that registers itself (`@KINDS.register("name")`) and one import
line below; `kind_of` picks it for a task."""

from __future__ import annotations

from types import SimpleNamespace

from minbert.data.spec import DataSpec, builtin_name, resolve_spec
from minbert.errors import ConfigError
from minbert.options import Chosen, chosen_name
from minbert.tasks.kinds import choice, classify, regress, span, tag  # noqa: F401  (each registers its kind)
from minbert.tasks.kinds.base import KINDS, TaskKind
from minbert.tasks.losses import LOSSES

__all__ = ["KINDS", "TaskKind", "builtin_kind", "kind_name", "kind_of", "refuse"]


def kind_name(spec: DataSpec, where: str) -> str:
    """The registered kind a spec asks for: the one it names (a `kind` key, once specs have one), else the first
    kind that serves its labels (classes: classify; a score range: regress)."""
    named = getattr(spec, "kind", "")
    if named:
        KINDS.lookup(named, f"{where}.kind")
        return named
    served = [name for name, unit in KINDS.items() if unit.serves(spec)]
    if not served:
        raise ConfigError(f"{where}: no task kind serves this spec; name one with `kind` ({', '.join(KINDS)})")
    return served[0]


def kind_of(name: str, task: object, where: str | None = None) -> TaskKind:
    """The kind of task `name` with config `task` (a TaskConfig: its `data` and `loss`)."""
    where = where or f"tasks.{name}.data"
    spec = resolve_spec(task.data, where)
    unit = KINDS[kind_name(spec, where)]
    chosen = LOSSES.resolve(task.loss) if chosen_name(task.loss) in LOSSES else Chosen(chosen_name(task.loss))
    loss = chosen.name or spec.loss or unit.default_loss
    options = chosen.options if chosen.name else (LOSSES.options_of(loss)() if loss in LOSSES else None)
    return unit(name, builtin_name(task.data), spec, loss, options, unit.outputs(spec, loss),
                getattr(task, "helper", False))


def builtin_kind(name: str, loss: str = "") -> TaskKind:
    """A task named after a built-in data set (sst, cfimdb, quora, sts), with its default loss or `loss`."""
    return kind_of(name, SimpleNamespace(data=name, loss=loss))


def refuse(kind: TaskKind, what: str) -> None:
    """One line naming the task and its kind where `what` (ensembles, distillation, serve, export) is not built for
    the kind yet (TaskKind.not_yet): asked before any work."""
    if what in kind.not_yet:
        registered = next(name for name, unit in KINDS.items() if isinstance(kind, unit))
        raise ConfigError(f"task {kind.name} is a {kind.described} task (kind {registered!r}): {what} cannot take "
                          "it yet")
