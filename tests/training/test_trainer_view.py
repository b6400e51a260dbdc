"""Hooks see the trainer through minbert.training.hooks.TrainerView (so training/ has no ring of imports): the loop's
Trainer has everything the view declares, and the hooks read nothing of the trainer that the view does not."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import minbert.training
from minbert.training.hooks import TrainerView
from minbert.training.loop import Trainer

HOOK_MODULES = ("hooks.py", "techniques.py", "averaging.py", "layerwise_lr_decay.py")


def declared() -> set[str]:
    methods = {name for name, member in vars(TrainerView).items() if inspect.isfunction(member)}
    return set(TrainerView.__annotations__) | methods


def test_the_trainer_has_what_the_view_declares():
    source = inspect.getsource(Trainer)
    missing = {name for name in declared()  # a method or property of the class, or an attribute set in it
               if not (hasattr(Trainer, name) or f"self.{name} =" in source
                       or f"self.{name}: " in source or f"self.{name}, " in source)}
    assert missing == set()


def test_hooks_read_only_what_the_view_declares():
    folder = Path(minbert.training.__file__).parent
    read = {node.attr for module in HOOK_MODULES for node in ast.walk(ast.parse((folder / module).read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trainer"}
    assert read and read <= declared(), sorted(read - declared())
