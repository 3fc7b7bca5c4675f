"""``python -m core``: see :mod:`core.cli`.

The CLI is imported under the main guard: a process pool's workers (``spawn``) import this
module again as ``__mp_main__``, and they need none of it (the video ingest's decoders
import only :mod:`core.video_decode`)."""

import sys

if __name__ == "__main__":
    from core.cli import main

    sys.exit(main())
