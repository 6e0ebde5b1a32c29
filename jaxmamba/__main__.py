"""``python -m jaxmamba ...``: the ``jaxmamba`` command (:mod:`jaxmamba.cli`)."""

import sys

from jaxmamba.cli import main

if __name__ == "__main__":
    sys.exit(main())
