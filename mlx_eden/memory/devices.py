"""Device profiles: how much memory a training run may use on a given machine.

Apple Silicon. CPU and GPU share the RAM, but macOS lets the GPU keep only part of it wired: Metal
reports that part as the device's `recommendedMaxWorkingSetSize` (MLX: mx.device_info()
["max_recommended_working_set_size"]); past it, Metal pages and a training run stalls or fails.
On a Mac, `eden-mlx plan` reads the real value from MLX. For planning on another machine the
profiles below use the default macOS applies, found in published Metal logs (llama.cpp / whisper.cpp
print "recommendedMaxWorkingSetSize = X MB"):

    RAM     working set           source (log line, machine)
    16 GB   11453.25 MB = 2/3     llama.cpp logs, M1 Pro / M2 16 GB
    24 GB   17179.89 MB = 2/3     llama.cpp issue log, M2 24 GB
    32 GB   21845.34 MB = 2/3     ollama issue #434, M2 Max 32 GB
    36 GB   28991.03 MB = 3/4     llama.cpp log, M4 Max 36 GB
    48 GB   38654.71 MB = 3/4     llama.cpp log, M3 Max 48 GB
    64 GB   51539.61 MB = 3/4     whisper.cpp / llama.cpp logs, M2 Max 64 GB
    128 GB  103079.22 MB = 3/4    llama.cpp log, M3 Max 128 GB
            (macOS 26 on an M5 Max 128 GB reports 107.52 GiB: antirez/ds4 PR #893)

So: two thirds of the RAM below 36 GB, three quarters from 36 GB up (Apple's "36 GB" is 36 GiB).
`sudo sysctl iogpu.wired_limit_mb=N` raises the limit until the next reboot (N in MiB; leave
macOS a few GB), and Metal then reports the raised value; plan for it with --budget-gb.

Plain RAM (x86 servers such as EPYC boxes, this Linux machine): the budget is 90% of the RAM, the
rest left to the OS and page cache. That is a policy, not a measurement; use --budget-gb to set
your own.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass

from ..errors import UserError
from ..units import GIB

OS_RESERVE_FRACTION = 0.10  # plain-RAM machines keep 10% for the OS and page cache
APPLE_SIZES = (16, 18, 24, 32, 36, 48, 64, 96, 128, 192)
SERVER_SIZES = (32, 64, 128, 256, 512, 768, 1024)


@dataclass(frozen=True)
class Device:
    name: str
    kind: str           # "apple" (unified memory, GPU working-set limit) or "ram"
    ram_bytes: int
    budget_bytes: int
    source: str         # where the budget comes from

    @property
    def ram_gb(self) -> float:
        return self.ram_bytes / GIB

    def raise_hint(self, peak_bytes: int | None = None) -> str | None:
        """How to give the GPU more of the RAM (Apple only), when that is enough for a plan
        with this peak (a 341 GiB plan on a 36 GB Mac gets no hint: no limit helps)."""
        if self.kind != "apple":
            return None
        mb = int(self.ram_bytes / (1 << 20)) - 8 * 1024  # leave macOS 8 GiB
        if mb << 20 <= self.budget_bytes:  # small Macs: the default already leaves less
            return None
        if peak_bytes is not None and peak_bytes > mb << 20:
            return None
        return (f"on macOS, `sudo sysctl iogpu.wired_limit_mb={mb}` lets the GPU use "
                f"{mb / 1024:.0f} GiB (until reboot); then plan with --budget-gb {mb / 1024:.0f}")


def apple_default_fraction(ram_gib: float) -> float:
    """macOS's default GPU working set as a fraction of RAM (see the table above)."""
    return 0.75 if ram_gib >= 36 else 2 / 3


def apple(ram_gib: int, name: str | None = None) -> Device:
    f = apple_default_fraction(ram_gib)
    return Device(name or f"mac-{ram_gib}gb", "apple", ram_gib * GIB, int(ram_gib * GIB * f),
                  f"macOS default GPU working set: {'3/4' if f == 0.75 else '2/3'} of "
                  f"{ram_gib} GB")


def ram(ram_bytes: int, name: str, source: str = "") -> Device:
    return Device(name, "ram", ram_bytes, int(ram_bytes * (1 - OS_RESERVE_FRACTION)),
                  source or f"90% of {ram_bytes / GIB:.0f} GB RAM (10% left to the OS)")


_APPLE = re.compile(r"^(?:mac|apple|m\d(?:-(?:pro|max|ultra))?)-(\d+)gb$")
_SERVER = re.compile(r"^(?:cpu|ram|epyc|xeon|server|linux)-(\d+)gb$")


def profile_names() -> list[str]:
    return (["this"] + [f"mac-{g}gb" for g in APPLE_SIZES]
            + [f"epyc-{g}gb" for g in SERVER_SIZES])


def _total_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def this_machine(live_limit: int | None = None) -> Device:
    """This machine: on Apple Silicon the working set MLX reports (`live_limit`, from
    backends/mlx/memory.py) or the default for its RAM; elsewhere 90% of the RAM."""
    total = _total_ram()
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        gib = round(total / GIB)
        if live_limit:
            return Device(f"this Mac ({gib} GB)", "apple", total, int(live_limit),
                          "Metal's recommended working set, read from MLX")
        return apple(gib, f"this Mac ({gib} GB)")
    return ram(total, f"this machine ({total / GIB:.0f} GB RAM)")


def get_device(name: str | None, live_limit: int | None = None) -> Device:
    """A profile by name: "this" (default), mac-36gb, m3-max-36gb, epyc-256gb, cpu-64gb..."""
    key = (name or "this").strip().lower()
    if key in ("this", "auto", "local"):
        return this_machine(live_limit)
    if m := _APPLE.match(key):
        return apple(int(m.group(1)), key)
    if m := _SERVER.match(key):
        return ram(int(m.group(1)) * GIB, key)
    raise UserError(f"unknown device {name!r}",
                    hint="use this, mac-16gb ... mac-192gb (or m3-max-36gb), epyc-256gb, cpu-64gb")


def with_budget(device: Device, budget_gb: float | None) -> Device:
    """The device with the budget overridden by --budget-gb."""
    if budget_gb is None:
        return device
    if budget_gb <= 0:
        raise UserError("--budget-gb must be positive")
    return Device(device.name, device.kind, device.ram_bytes, int(budget_gb * GIB),
                  f"--budget-gb {budget_gb:g}")
