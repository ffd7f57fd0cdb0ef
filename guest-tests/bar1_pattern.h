/*
 * bar1_pattern.h - the values the guest writes into every 4 KiB page of
 * edu-plus BAR1 (64 MiB of RAM).
 *
 * Page i holds edu_plus_page_pattern(i) as a little-endian u32 at byte 0 of
 * the page and its bitwise inverse at byte 4092 (the page's last word), so
 * an observer can see both ends of every page arrived: a mapping that is
 * shifted, truncated or aliased shows up as a wrong value at one end.
 *
 * KEEP IN SYNC: the host side of the end-to-end test (tests/e2e/, in
 * TypeScript) checks the very same formula through the server's own mapping
 * of BAR1 after the guest has written it. Change both together. In
 * TypeScript, with u32 wrap-around multiplication:
 *     (0xb1000000 ^ Math.imul(i, 0x9e3779b1)) >>> 0
 * The multiplier (2^32 / golden ratio) spreads consecutive page numbers
 * over all bits, so neighbouring pages never hold similar values.
 */
#ifndef EDU_PLUS_BAR1_PATTERN_H
#define EDU_PLUS_BAR1_PATTERN_H

#include <stdint.h>

#define EDU_PLUS_BAR1_SIZE		(64u << 20)
#define EDU_PLUS_PATTERN_PAGE_SIZE	4096u	/* fixed, not the guest's */
#define EDU_PLUS_PATTERN_HEAD_OFFSET	0u	/* pattern */
#define EDU_PLUS_PATTERN_TAIL_OFFSET	4092u	/* ~pattern */

static inline uint32_t edu_plus_page_pattern(uint32_t i)
{
	return 0xb1000000u ^ (i * 0x9e3779b1u);
}

#endif /* EDU_PLUS_BAR1_PATTERN_H */
