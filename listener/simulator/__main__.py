"""`python -m listener.simulator`: the same as `ha-ingestor simulate`."""

from __future__ import annotations

import sys

from listener.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
