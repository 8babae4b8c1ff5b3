"""``python -m flext_ctx_aspects``: the same verbs as the ``flext-ctx`` console script."""

from __future__ import annotations

import sys

from flext_ctx_aspects.cli import main

if __name__ == "__main__":
    sys.exit(main())
