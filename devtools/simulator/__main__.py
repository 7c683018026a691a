"""`python -m devtools.simulator`: the same as `ha-ingestor simulate`."""

from __future__ import annotations

import sys

from devtools.simulate_command import main

if __name__ == "__main__":
    sys.exit(main())
