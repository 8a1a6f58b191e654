"""`python -m scripts.bench` (what `make bench` runs)."""

import sys

from scripts.bench.cli import main

sys.exit(main())
