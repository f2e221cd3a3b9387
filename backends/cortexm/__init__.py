"""Cortex-M execution without hardware: cross-compiled firmware run in QEMU with exact instruction counts.

``boards`` (emulated boards and memory maps) → ``firmware`` (harness, linker script, arm-none-eabi-gcc build)
→ ``qemu`` (run, semihosting files, the counting plugin) → ``footprint`` (flash, RAM and stack from the ELF).
``emulate`` ties them together for ``mcc run --emulate`` and ``mcc bench``.
"""
