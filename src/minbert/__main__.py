"""`python -m minbert ...` (and `torchrun ... -m minbert train ...`) is the `minbert` command."""

import sys

from minbert.cli import main

sys.exit(main())
