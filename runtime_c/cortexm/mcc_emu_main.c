/* main() of the mcc emulation harness. Reads "in.bin" (COUNT samples of the model's concatenated raw inputs,
   COUNT = file length / input bytes) through semihosting, runs the model on each sample between two marks and
   writes "out.bin" (the concatenated raw outputs), "marks.bin" (every mark: id and SysTick value, 8 bytes each)
   and "stats.bin" (uint32 fields, see below). Before each inference the free stack is painted; afterwards the
   lowest overwritten word gives the stack depth of the inference. */
#include <stdint.h>

#include "mcc_emu.h"
#include "mcc_emu_semihost.h"

extern uint32_t __mcc_stack_limit[];
extern uint32_t __mcc_stack_top[];

#define MCC_EMU_PAINT 0xA5C3E1F0u
#define MCC_EMU_STATS_MAGIC 0x4543434Du /* "MCCE" */
#define MCC_EMU_STATS_VERSION 1u

#define MCC_EMU_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define MCC_EMU_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define MCC_EMU_SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* stats.bin: magic, version, samples, stack region bytes, deepest stack of one inference (bytes below the stack
   pointer at the call), deepest stack of the whole program, SysTick fallback used (0/1). */
typedef struct {
    uint32_t magic;
    uint32_t version;
    uint32_t samples;
    uint32_t stack_region_bytes;
    uint32_t stack_inference_bytes;
    uint32_t stack_program_bytes;
    uint32_t systick;
} mcc_emu_stats;

static mcc_emu_stats stats;

static uint32_t *current_sp(void) {
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* Fill the free stack below the caller's frame with the paint word (volatile: no memset call below the sp). */
__attribute__((noinline)) void mcc_emu_paint_stack(void) {
    volatile uint32_t *end = current_sp();
    for (volatile uint32_t *p = __mcc_stack_limit; p < end; ++p) {
        *p = MCC_EMU_PAINT;
    }
}

/* Lowest stack word that no longer holds the paint word (the stack top when none changed). */
static uint32_t *lowest_used(void) {
    volatile uint32_t *p = __mcc_stack_limit;
    while (p < __mcc_stack_top && *p == MCC_EMU_PAINT) {
        ++p;
    }
    return (uint32_t *)p;
}

static void fail(const char *message, uint32_t status) {
    mcc_emu_sh_write0(message);
    mcc_emu_sh_exit(status);
}

static void write_all(int32_t handle, const void *buf, uint32_t len) {
    if (len && mcc_emu_sh_write(handle, buf, len) != 0) {
        fail("mcc-emu: write failed\n", MCC_EMU_EXIT_IO);
    }
}

int main(void) {
    uint32_t *program_low = __mcc_stack_top;
    stats.magic = MCC_EMU_STATS_MAGIC;
    stats.version = MCC_EMU_STATS_VERSION;
    stats.stack_region_bytes = (uint32_t)((uintptr_t)__mcc_stack_top - (uintptr_t)__mcc_stack_limit);
#ifdef MCC_EMU_SYSTICK
    stats.systick = 1;
    MCC_EMU_SYST_RVR = 0x00FFFFFFu;
    MCC_EMU_SYST_CVR = 0;
    MCC_EMU_SYST_CSR = 0x5u; /* enabled, processor clock, no interrupt */
#endif
    int32_t fin = mcc_emu_sh_open("in.bin", MCC_SH_MODE_RB);
    if (fin < 0) {
        fail("mcc-emu: cannot open in.bin\n", MCC_EMU_EXIT_NO_INPUT);
    }
    int32_t len = mcc_emu_sh_flen(fin);
    if (len <= 0 || (uint32_t)len % mcc_emu_in_bytes != 0) {
        fail("mcc-emu: in.bin is not a whole number of samples\n", MCC_EMU_EXIT_BAD_INPUT_SIZE);
    }
    uint32_t count = (uint32_t)len / mcc_emu_in_bytes;
    int32_t fout = mcc_emu_sh_open("out.bin", MCC_SH_MODE_WB);
    int32_t fmarks = mcc_emu_sh_open("marks.bin", MCC_SH_MODE_WB);
    if (fout < 0 || fmarks < 0) {
        fail("mcc-emu: cannot create the output files\n", MCC_EMU_EXIT_IO);
    }
    for (uint32_t i = 0; i < count; ++i) {
        if (mcc_emu_sh_read(fin, mcc_emu_in_buf, mcc_emu_in_bytes) != 0) {
            fail("mcc-emu: short read from in.bin\n", MCC_EMU_EXIT_IO);
        }
        mcc_emu_stage_inputs();
        uint32_t *low = lowest_used();
        program_low = low < program_low ? low : program_low;
        mcc_emu_paint_stack();
        uint32_t *sp = current_sp();
        mcc_emu_mark_count = 0;
        mcc_emu_layer_hook(MCC_EMU_MARK_RUN_BEGIN);
        int rc = mcc_emu_invoke();
        mcc_emu_layer_hook(MCC_EMU_MARK_RUN_END);
        low = lowest_used();
        if (low == __mcc_stack_limit) {
            fail("mcc-emu: stack overflow (the whole stack region was used)\n", MCC_EMU_EXIT_STACK_OVERFLOW);
        }
        uint32_t depth = (uint32_t)((uintptr_t)sp - (uintptr_t)low);
        stats.stack_inference_bytes = depth > stats.stack_inference_bytes ? depth : stats.stack_inference_bytes;
        program_low = low < program_low ? low : program_low;
        if (rc != 0) {
            fail("mcc-emu: the model returned an error\n", MCC_EMU_EXIT_MODEL_FAILED);
        }
        if (mcc_emu_mark_count > MCC_EMU_MAX_MARKS) {
            fail("mcc-emu: too many marks in one inference\n", MCC_EMU_EXIT_TOO_MANY_MARKS);
        }
        write_all(fout, mcc_emu_out_buf, mcc_emu_out_bytes);
        write_all(fmarks, mcc_emu_marks, mcc_emu_mark_count * (uint32_t)sizeof(mcc_emu_mark));
    }
    stats.samples = count;
    stats.stack_program_bytes = (uint32_t)((uintptr_t)__mcc_stack_top - (uintptr_t)program_low);
    int32_t fstats = mcc_emu_sh_open("stats.bin", MCC_SH_MODE_WB);
    if (fstats < 0) {
        fail("mcc-emu: cannot create stats.bin\n", MCC_EMU_EXIT_IO);
    }
    write_all(fstats, &stats, (uint32_t)sizeof stats);
    mcc_emu_sh_close(fstats);
    mcc_emu_sh_close(fmarks);
    mcc_emu_sh_close(fout);
    mcc_emu_sh_close(fin);
    return MCC_EMU_OK;
}
