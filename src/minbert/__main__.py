"""`python -m minbert ...` (and `torchrun ... -m minbert train ...`) is the `minbert` command."""

from minbert.cli import entry

entry()
