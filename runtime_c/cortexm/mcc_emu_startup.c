/* Start-up code of the mcc emulation harness: the vector table, the reset handler (FPU on, .data copied from
   flash, .bss zeroed, stack painted) and a fault handler that reports through semihosting. The linker script
   written by mcc (mcc_emu.ld) provides the symbols below and places .mcc_vectors at the start of flash. */
#include <stdint.h>

#include "mcc_emu.h"
#include "mcc_emu_semihost.h"

extern uint32_t __mcc_data_load[];
extern uint32_t __mcc_data_start[];
extern uint32_t __mcc_data_end[];
extern uint32_t __mcc_bss_start[];
extern uint32_t __mcc_bss_end[];
extern uint32_t __mcc_stack_limit[];
extern uint32_t __mcc_stack_top[];

int main(void);
void mcc_emu_reset(void) __attribute__((noreturn));
void mcc_emu_fault(void) __attribute__((noreturn));

/* Initial stack pointer and the 15 system exception vectors of ARMv7-M (no external interrupts are enabled). */
typedef struct {
    uint32_t *initial_sp;
    void (*handlers[15])(void);
} mcc_emu_vector_table;

__attribute__((section(".mcc_vectors"), used)) const mcc_emu_vector_table mcc_emu_vectors = {
    .initial_sp = __mcc_stack_top,
    .handlers = {
        mcc_emu_reset, /* Reset */
        mcc_emu_fault, /* NMI */
        mcc_emu_fault, /* HardFault */
        mcc_emu_fault, /* MemManage */
        mcc_emu_fault, /* BusFault */
        mcc_emu_fault, /* UsageFault */
        0, 0, 0, 0,    /* reserved */
        mcc_emu_fault, /* SVCall */
        mcc_emu_fault, /* DebugMonitor */
        0,             /* reserved */
        mcc_emu_fault, /* PendSV */
        mcc_emu_fault, /* SysTick */
    },
};

#define MCC_EMU_CPACR (*(volatile uint32_t *)0xE000ED88u)

void mcc_emu_reset(void) {
    /* Full access to CP10/CP11 (the FPU): code built with -mfloat-abi=hard may use FP registers anywhere. */
    MCC_EMU_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    const uint32_t *src = __mcc_data_load;
    for (uint32_t *dst = __mcc_data_start; dst < __mcc_data_end; ++dst) {
        *dst = *src++;
    }
    for (uint32_t *dst = __mcc_bss_start; dst < __mcc_bss_end; ++dst) {
        *dst = 0;
    }
    mcc_emu_paint_stack();
    mcc_emu_sh_exit((uint32_t)main());
}

void mcc_emu_fault(void) {
    mcc_emu_sh_write0("mcc-emu: fault exception (bad memory access, undefined instruction or stack overflow)\n");
    mcc_emu_sh_exit(MCC_EMU_EXIT_FAULT);
}
