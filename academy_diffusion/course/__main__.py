"""``python -m academy_diffusion.course``: run the lessons headless (see :mod:`.runner`)."""

import sys

from .runner import main

sys.exit(main())
