"""``python -m napari_mlmi_interp.cli``: the same as the ``mlmi-interp`` command."""

import sys

from . import main

sys.exit(main())
