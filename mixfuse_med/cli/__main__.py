"""``python -m mixfuse_med.cli``: same as the ``mixfuse`` command."""

import sys

from . import main

sys.exit(main())
