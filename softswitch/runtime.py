"""Process-wide settings for a long-running switch."""

from __future__ import annotations

import gc
import os

# Young collections every 50k allocations instead of 700. The switch keeps many long-lived
# objects (lingering UDP transactions, legs, prompts) that the default settings rescan
# constantly, and those pauses show up as late RTP packets and SIP retransmissions. Nearly
# all garbage here is freed by reference counting anyway.
GC_THRESHOLDS = (50_000, 20, 100)


def set_realtime(priority: int) -> str | None:
    """Run this process's main thread under SCHED_RR at ``priority`` (1-99) so media ticks are not
    delayed by ordinary processes sharing the cores; returns why not (e.g. not permitted) or None.

    The kernel's RT throttling (sched_rt_runtime_us, 95 % by default) still leaves the rest of the
    machine some CPU if the engine ever spins.
    """
    if priority <= 0:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
    except (OSError, AttributeError) as e:
        return str(e)
    return None


def tune_gc() -> None:
    """Move what exists now (config, prompts, restored state) out of the collector's way."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
