"""The emulated boards: which QEMU machine stands for which target CPU, and its memory map.

Both boards are Arm MPS2 FPGA images that QEMU 7.2 models with the AN385 memory map (checked with ``info mtree``):
4 MiB of ZBT SSRAM1 at 0x00000000 (code; the vector table is read from address 0 at reset) and 4 MiB of ZBT SSRAM2/3
at 0x20000000 (data), both plain RAM in QEMU. mcc's linker script places a "flash" region at the first and an
"SRAM" region at the second, each sized from the target's budget (capped at the board's 4 MiB), so a model that
does not fit the real part does not link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.errors import MccError
from compiler.targets import TARGETS, Target

MIB = 1024 * 1024


@dataclass(frozen=True)
class Board:
    """A QEMU machine that runs code built for one Cortex-M target."""

    target: str
    """mcc target name (``cortex-m7``)."""
    machine: str
    """``qemu-system-arm -M`` name."""
    cpu_flags: tuple[str, ...]
    """arm-none-eabi-gcc flags selecting the core and its FPU."""
    code_base: int
    code_size: int
    ram_base: int
    ram_size: int


BOARDS: dict[str, Board] = {
    b.target: b for b in (
        Board("cortex-m7", "mps2-an500", ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
              0x0000_0000, 4 * MIB, 0x2000_0000, 4 * MIB),
        Board("cortex-m4", "mps2-an386", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
              0x0000_0000, 4 * MIB, 0x2000_0000, 4 * MIB),
    )
}

C_OPT_LEVELS = ("O0", "Os", "O2", "O3")
"""The C optimisation levels the emulation builds accept (``-O3`` etc.)."""


def get_board(name: str) -> Board:
    """The board emulating target ``name`` (a CPU name, or an mcc target with that CPU such as ``stm32h743``)."""
    cpu = TARGETS[name].cpu if name in TARGETS else name
    if cpu not in BOARDS:
        known = [t for t, tgt in TARGETS.items() if tgt.cpu in BOARDS]
        raise MccError(f"cannot emulate '{name}': emulated targets are {', '.join(known)}")
    return BOARDS[cpu]


def c_opt_flag(level: str) -> str:
    """``O3`` or ``-O3`` → ``-O3``; a clear error for anything else."""
    flag = level if level.startswith("-") else f"-{level}"
    if flag[1:] not in C_OPT_LEVELS:
        raise MccError(f"unknown C optimisation level '{level}': use one of {', '.join(C_OPT_LEVELS)}")
    return flag


def memory_budget(name: str, project_target: dict[str, Any] | None) -> tuple[int, int]:
    """Flash and SRAM bytes of the emulated part, capped at what its board has.

    A named part (``stm32h743``) gives its own budgets. A bare CPU name (``cortex-m7``) gives the project's target
    when that has the same CPU (a project compiled for ``stm32h743`` keeps its 512 KB), else the CPU's default part.
    """
    board = get_board(name)
    target: Target = TARGETS.get(name, TARGETS[board.target])
    flash, sram = target.flash_bytes, target.sram_bytes
    if name == board.target and project_target and project_target.get("cpu") == board.target:
        flash = int(project_target.get("flash_bytes", flash))
        sram = int(project_target.get("sram_bytes", sram))
    return min(flash, board.code_size), min(sram, board.ram_size)
