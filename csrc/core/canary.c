/* canary.c - the optional canary after each block (M_CANARY, off by default): what it
 * looks like in memory, stamping, verifying and retiring it. malloc.c decides when.
 *
 * With the canary on, a request of n bytes is served by a block at least
 * PRM_CANARY_EXTRA (16) bytes larger. Its usable memory then reads
 *
 *   mem -> | n bytes for the program | pattern bytes ... | n ^ key (one word) | end of usable
 *
 * The pattern byte and the key derive from the block's address, so a block copied or
 * stamped elsewhere does not pass. A write past the n bytes changes a pattern byte
 * (caught with its offset) or the last word (the size then decodes to nonsense). A
 * freed block's last word holds the retired marker instead, which is how a second free
 * is recognised and how prm_check tells cached chunks (which look in use) apart.
 * The pattern bytes are never text, 0 or 0xff (canary_byte), so an overflow of those is
 * caught whatever the block's address. */
#include "prm.h"
#include "internal.h"

#include <string.h>

#define CANARY_RETIRED (~(size_t)0)

static inline size_t canary_key(const void *mem)
{
    return ((uintptr_t)mem * (uintptr_t)0x9e3779b97f4a7c15u) ^ (uintptr_t)0x5a17c0de0ddba11u;
}

/* The pattern byte at offset i: it varies along the block, and always has its top bit
 * set and its low bit clear, so it is never text, never 0 and never 0xff, the bytes an
 * overflow most often writes (a fixed byte from the key matched 'A' once in 128 runs). */
static inline unsigned char canary_byte(const void *mem, size_t i)
{
    return (unsigned char)(0x80 | ((canary_key(mem) >> ((i & 7) * 8)) & 0x7e));
}

/* The bytes the block really has: the allocator's view, not the program's. */
static inline size_t raw_usable(void *mem)
{
    prm_chunk *p = mem2chunk(mem);
    return chunk_size(p) - (chunk_is_mmapped(p) ? PRM_CHUNK_HDR : PRM_SIZE_SZ);
}

static inline size_t *tail_word(void *mem, size_t usable)
{
    return (size_t *)((char *)mem + usable - sizeof(size_t));
}

void prmi_canary_stamp(void *mem, size_t requested)
{
    size_t usable = raw_usable(mem);
    /* invariant: the block was allocated PRM_CANARY_EXTRA larger than the request */
    unsigned char *bytes = mem;
    for (size_t i = requested; i < usable - sizeof(size_t); i++)
        bytes[i] = canary_byte(mem, i);
    *tail_word(mem, usable) = requested ^ canary_key(mem);
}

void prmi_canary_retire(void *mem)
{
    *tail_word(mem, raw_usable(mem)) = CANARY_RETIRED ^ canary_key(mem);
}

enum prmi_canary_state prmi_canary_inspect(void *mem, size_t *requested, size_t *bad_offset)
{
    size_t usable = raw_usable(mem);
    size_t n = *tail_word(mem, usable) ^ canary_key(mem);
    *requested = n;
    if (n == CANARY_RETIRED)
        return PRMI_CANARY_RETIRED;
    if (n > usable - PRM_CANARY_EXTRA) {
        *bad_offset = usable - sizeof(size_t);
        return PRMI_CANARY_DAMAGED;
    }
    const unsigned char *bytes = mem;
    for (size_t i = n; i < usable - sizeof(size_t); i++) {
        if (bytes[i] != canary_byte(mem, i)) {
            *bad_offset = i;
            return PRMI_CANARY_DAMAGED;
        }
    }
    return PRMI_CANARY_INTACT;
}

size_t prmi_canary_requested(void *mem)
{
    size_t n, bad;
    return prmi_canary_inspect(mem, &n, &bad) == PRMI_CANARY_INTACT ? n : 0;
}

int prmi_canary_verify(void *mem, const char *overwritten_check, const char *freed_check)
{
    size_t n, bad = 0;
    switch (prmi_canary_inspect(mem, &n, &bad)) {
    case PRMI_CANARY_INTACT:
        return PRM_OK;
    case PRMI_CANARY_RETIRED:
        return prmi_fail_pointer(freed_check, "the block's canary says it was freed already", mem);
    case PRMI_CANARY_DAMAGED:
        break;
    }
    char detail[160];
    prmi_text t = { detail, sizeof detail, 0 };
    if (bad == raw_usable(mem) - sizeof(size_t)) {
        prmi_text_str(&t, "the word after the canary no longer holds the block's size: "
                          "a write ran past the end of the block");
    } else {
        prmi_text_str(&t, "a write past the end of the ");
        prmi_text_dec(&t, n);
        prmi_text_str(&t, "-byte block changed byte ");
        prmi_text_dec(&t, bad);
    }
    return prmi_fail_block(overwritten_check, detail, mem);
}
