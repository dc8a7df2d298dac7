"""Process-wide settings for a long-running switch."""

from __future__ import annotations

import gc

# Young collections every 50k allocations instead of 700. The switch keeps many long-lived
# objects (lingering UDP transactions, legs, prompts) that the default settings rescan
# constantly, and those pauses show up as late RTP packets and SIP retransmissions. Nearly
# all garbage here is freed by reference counting anyway.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Move what exists now (config, prompts, restored state) out of the collector's way."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
