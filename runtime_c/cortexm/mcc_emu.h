/* mcc emulation harness for Cortex-M under QEMU (used by `mcc run --emulate` and `mcc bench`; not part of a
   model's runtime). The build force-includes this header into every source so that the generated model calls
   mcc_emu_layer_hook() at its MCC_LAYER_HOOK(index) points.

   Marks: the hook records the id of every mark in mcc_emu_marks; the QEMU counting plugin records the number of
   guest instructions executed when mcc_emu_layer_hook is entered. Layer ids are those of MCC_LAYER_HOOK (0 after
   the inputs are copied into the arena, k after layer k of report.json's "layers"); the harness adds
   MCC_EMU_MARK_RUN_BEGIN / MCC_EMU_MARK_RUN_END around the whole model call. */
#ifndef MCC_EMU_H
#define MCC_EMU_H

#include <stdint.h>

#define MCC_LAYER_HOOK(index) mcc_emu_layer_hook((uint32_t)(index))

#define MCC_EMU_MARK_RUN_BEGIN 0xFFFF0000u
#define MCC_EMU_MARK_RUN_END 0xFFFF0001u
#define MCC_EMU_MAX_MARKS 2048u

/* One mark: its id and, in the SysTick fallback build, the SysTick current value read at the mark. */
typedef struct {
    uint32_t id;
    uint32_t systick;
} mcc_emu_mark;

extern mcc_emu_mark mcc_emu_marks[MCC_EMU_MAX_MARKS];
extern uint32_t mcc_emu_mark_count;

void mcc_emu_layer_hook(uint32_t id);
/* Paints the free stack below the caller's frame (start-up code and main call it). */
void mcc_emu_paint_stack(void);

/* Provided by the generated glue (mcc_emu_model.c): input/output sizes, buffers and the model call. */
extern const uint32_t mcc_emu_in_bytes;
extern const uint32_t mcc_emu_out_bytes;
extern int8_t mcc_emu_in_buf[];
extern int8_t mcc_emu_out_buf[];
/* Copies the inputs that live in the model's arena from mcc_emu_in_buf to their place (outside the measured run). */
void mcc_emu_stage_inputs(void);
/* One inference: NAME_run on the staged inputs, outputs into mcc_emu_out_buf. */
int mcc_emu_invoke(void);

/* Exit codes of the emulated program (the QEMU process exits with them). */
enum {
    MCC_EMU_OK = 0,
    MCC_EMU_EXIT_NO_INPUT = 2,
    MCC_EMU_EXIT_BAD_INPUT_SIZE = 3,
    MCC_EMU_EXIT_MODEL_FAILED = 4,
    MCC_EMU_EXIT_IO = 5,
    MCC_EMU_EXIT_TOO_MANY_MARKS = 6,
    MCC_EMU_EXIT_STACK_OVERFLOW = 7,
    MCC_EMU_EXIT_FAULT = 8
};

#endif /* MCC_EMU_H */
