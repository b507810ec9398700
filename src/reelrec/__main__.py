"""``python -m reelrec ...`` (and ``torchrun ... -m reelrec train ...``): the CLI."""

import sys

from reelrec.cli import main

sys.exit(main())
