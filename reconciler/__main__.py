"""Lets `python -m reconciler` behave exactly like the `mico-reconciler` console script."""

import sys

from reconciler.cli import main

sys.exit(main())
