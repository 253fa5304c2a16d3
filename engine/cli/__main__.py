"""`python -m engine.cli`: the same as the `makeitmove` console script."""

import sys

from engine.cli import main

sys.exit(main())
