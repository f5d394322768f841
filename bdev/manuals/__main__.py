"""``python -m bdev.manuals``: see :func:`bdev.manuals.build.main`."""

import sys

from .build import main

sys.exit(main())
