/* A QEMU TCG plugin (plugin API version 1, QEMU 7.2) that counts executed guest instructions exactly and records
   the running count each time the instruction at one address (the entry of mcc_emu_layer_hook) executes.

   Debian's QEMU supports -plugin but ships no qemu-plugin.h, so the few API functions used here are declared
   below from their documented signatures; QEMU resolves them when it loads this shared object.

   Arguments: mark=ADDRESS (hex, Thumb bit cleared), out=PATH. On exit PATH receives one line per mark hit,
   "mark COUNT", and a last line "total COUNT" (instructions from reset to exit). COUNT is the number of
   instructions in translation blocks entered so far, the block containing the marked instruction included;
   every block runs to its end in the harness (no interrupts, no faults), so differences between marks are exact
   instruction counts. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t insn_count;
static uint64_t mark_addr;
static char *out_path;
static uint64_t *hits;
static size_t n_hits, cap_hits;
static int overflow;

static void on_mark(unsigned int vcpu_index, void *userdata) {
    (void)vcpu_index;
    (void)userdata;
    if (n_hits == cap_hits) {
        size_t cap = cap_hits ? 2 * cap_hits : 4096;
        uint64_t *grown = realloc(hits, cap * sizeof *hits);
        if (!grown) {
            overflow = 1;
            return;
        }
        hits = grown;
        cap_hits = cap;
    }
    hits[n_hits++] = insn_count;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insn_count, n);
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (qemu_plugin_insn_vaddr(insn) == mark_addr) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
        }
    }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    FILE *f = fopen(out_path, "w");
    if (!f) {
        fprintf(stderr, "mcc insn-count plugin: cannot write %s\n", out_path);
        return;
    }
    for (size_t i = 0; i < n_hits; ++i) {
        fprintf(f, "mark %" PRIu64 "\n", hits[i]);
    }
    if (overflow) {
        fprintf(f, "overflow\n");
    }
    fprintf(f, "total %" PRIu64 "\n", insn_count);
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                                int argc, char **argv) {
    (void)info;
    int have_mark = 0;
    for (int i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "mark=", 5) == 0) {
            char *end = NULL;
            mark_addr = strtoull(argv[i] + 5, &end, 16);
            have_mark = end && *end == '\0';
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = argv[i] + 4;
        }
    }
    if (!have_mark || !out_path) {
        fprintf(stderr, "mcc insn-count plugin: usage: -plugin PLUGIN.so,mark=HEXADDR,out=PATH\n");
        return 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
