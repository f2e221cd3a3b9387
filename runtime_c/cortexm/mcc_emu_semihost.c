/* Arm semihosting for the mcc emulation harness: operation number in r0, pointer to an argument block in r1,
   BKPT 0xAB traps into the debugger (here QEMU, with -semihosting-config enable=on,target=native). */
#include "mcc_emu_semihost.h"

#include <string.h>

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_FLEN = 0x0C,
    SYS_EXIT_EXTENDED = 0x20
};

#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int32_t semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

int32_t mcc_emu_sh_open(const char *path, uint32_t mode) {
    const uint32_t block[3] = {(uint32_t)(uintptr_t)path, mode, (uint32_t)strlen(path)};
    return semihost(SYS_OPEN, block);
}

int32_t mcc_emu_sh_close(int32_t handle) {
    const uint32_t block[1] = {(uint32_t)handle};
    return semihost(SYS_CLOSE, block);
}

int32_t mcc_emu_sh_flen(int32_t handle) {
    const uint32_t block[1] = {(uint32_t)handle};
    return semihost(SYS_FLEN, block);
}

uint32_t mcc_emu_sh_read(int32_t handle, void *buf, uint32_t len) {
    const uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, len};
    return (uint32_t)semihost(SYS_READ, block);
}

uint32_t mcc_emu_sh_write(int32_t handle, const void *buf, uint32_t len) {
    const uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, len};
    return (uint32_t)semihost(SYS_WRITE, block);
}

void mcc_emu_sh_write0(const char *text) {
    semihost(SYS_WRITE0, text);
}

void mcc_emu_sh_exit(uint32_t status) {
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, status};
    for (;;) {
        semihost(SYS_EXIT_EXTENDED, block);
    }
}
