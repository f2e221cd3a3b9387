/* The layer hook of the mcc emulation harness, in its own translation unit so it is never inlined: the QEMU
   counting plugin watches the first instruction of mcc_emu_layer_hook. With MCC_EMU_SYSTICK (the fallback when
   the plugin is unavailable) it also records the SysTick counter, which QEMU with -icount shift=0 decrements
   once per 40 instructions on the mps2 boards. */
#include "mcc_emu.h"

mcc_emu_mark mcc_emu_marks[MCC_EMU_MAX_MARKS];
uint32_t mcc_emu_mark_count;

#ifdef MCC_EMU_SYSTICK
#define MCC_EMU_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#endif

void mcc_emu_layer_hook(uint32_t id) {
    uint32_t n = mcc_emu_mark_count;
    if (n < MCC_EMU_MAX_MARKS) {
        mcc_emu_marks[n].id = id;
#ifdef MCC_EMU_SYSTICK
        mcc_emu_marks[n].systick = MCC_EMU_SYST_CVR;
#endif
    }
    mcc_emu_mark_count = n + 1;
}
