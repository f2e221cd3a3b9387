/* Arm semihosting calls (BKPT 0xAB on M-profile) used by the mcc emulation harness. */
#ifndef MCC_EMU_SEMIHOST_H
#define MCC_EMU_SEMIHOST_H

#include <stdint.h>

/* SYS_OPEN modes: ISO C fopen modes "rb" and "wb". */
#define MCC_SH_MODE_RB 1u
#define MCC_SH_MODE_WB 5u

/* Returns a handle, or -1. */
int32_t mcc_emu_sh_open(const char *path, uint32_t mode);
int32_t mcc_emu_sh_close(int32_t handle);
/* Length of an open file in bytes, or -1. */
int32_t mcc_emu_sh_flen(int32_t handle);
/* Both return the number of bytes NOT transferred (0 on success). */
uint32_t mcc_emu_sh_read(int32_t handle, void *buf, uint32_t len);
uint32_t mcc_emu_sh_write(int32_t handle, const void *buf, uint32_t len);
/* Writes a NUL-terminated string to the debug console (QEMU's stderr/stdout). */
void mcc_emu_sh_write0(const char *text);
/* SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit: QEMU exits with `status`. */
void mcc_emu_sh_exit(uint32_t status) __attribute__((noreturn));

#endif /* MCC_EMU_SEMIHOST_H */
