"""``python -m jaxmamba.convert IN --out DIR``: the same as ``jaxmamba convert IN --out DIR``."""

import sys

from jaxmamba.convert.cli import main

if __name__ == "__main__":
    sys.exit(main())
