"""Run the spatialx CLI and signal it at a chosen point, for tests/test_output_policy.py.

    python interrupt_driver.py POINT SIGNAL spatialx-arguments...

POINT is where the process sends SIGNAL (INT, TERM, or KILL for kill -9) to itself:

* ``tiles``: from a tile worker thread, on the third window written (tile processing under way);
* ``cog`` / ``cog:N``: right after the COG of the N-th product (default 1) was assembled, before its rename;
* ``cog-blocked``: from a timer while the main thread is inside a C call that does not return to Python for
  many seconds (as a long COG copy of a large scene), so that only the watchdog can act.

The hooks are patched in here, so the product code carries none; then ``spatialx.cli.main.run()`` runs as the
console script does.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
import time


def _block_in_c(seconds: float) -> None:
    """Keep the main thread inside one C call (OpenSSL's PBKDF2 releases the GIL and ignores signals)."""
    started = time.perf_counter()
    hashlib.pbkdf2_hmac("sha256", b"spatialx", b"salt", 20_000)
    rate = 20_000 / max(time.perf_counter() - started, 1e-6)
    hashlib.pbkdf2_hmac("sha256", b"spatialx", b"salt", int(rate * seconds))


def main() -> None:
    point, name, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    signum = signal.Signals[f"SIG{name}"]
    pid = os.getpid()

    import spatialx.io.outputs as outputs
    import spatialx.io.write as write
    from spatialx.io.write import RasterWriter

    outputs.HARD_EXIT_AFTER_S = 0.5  # the default (2 s) would only make the blocked case slower to test

    if point == "tiles":
        original_write = RasterWriter.write
        calls = {"n": 0}

        def write(self: RasterWriter, data, window) -> None:
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(pid, signum)
            original_write(self, data, window)

        RasterWriter.write = write
    elif point.startswith("cog"):
        original_assemble = write.assemble_cog
        target = int(point.partition(":")[2] or 1) if point != "cog-blocked" else 1
        copies = {"n": 0}

        def assemble(base, overviews, output):
            original_assemble(base, overviews, output)
            copies["n"] += 1
            if copies["n"] == target:
                if point == "cog-blocked":
                    threading.Timer(0.2, os.kill, (pid, signum)).start()
                    _block_in_c(30.0)
                else:
                    os.kill(pid, signum)

        write.assemble_cog = assemble
    else:
        raise SystemExit(f"unknown point {point!r}")

    from spatialx.cli.main import run

    sys.argv = ["spatialx", *args]
    run()


if __name__ == "__main__":
    main()
