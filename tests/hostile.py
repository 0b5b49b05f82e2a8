"""Shared by the property-based tests of readers fed hostile files."""

from __future__ import annotations

import tracemalloc

from hypothesis import event


def bounded(call, where: str, refused: type[Exception], max_peak: int):
    """Run ``call()``; return its result or the ``refused`` exception it raised. Fails on any other
    exception, on a message that does not name ``where`` or spans lines, and on a peak
    allocation above ``max_peak`` bytes."""
    tracemalloc.start()
    try:
        result = call()
    except refused as exc:
        result = exc
        message = str(exc)
        assert message and "\n" not in message, message
        assert where in message, f"the message does not name {where}: {message}"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < max_peak, f"allocated {peak / 2**20:.0f} MiB"
    try:  # the share of refused inputs, for --hypothesis-show-statistics
        event("refused" if isinstance(result, refused) else "accepted")
    except Exception:  # not inside a hypothesis test
        pass
    return result
