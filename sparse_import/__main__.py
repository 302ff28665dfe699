"""``python -m sparse_import``: the ``sparse-import`` command line."""

import sys

from .cli import main

sys.exit(main())
