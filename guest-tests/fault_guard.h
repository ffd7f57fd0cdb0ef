/*
 * fault_guard.h - run a piece of test code with SIGBUS/SIGSEGV turned into a
 * return value instead of a dead test program.
 *
 * A BAR mapping can fault for reasons the test wants to report, not die of:
 * the vfio-user server went away, the kernel revoked a DMABUF-backed mapping,
 * a region turned out smaller than advertised. A killed test binary prints
 * nothing more, and every later case would be lost from the console.
 */
#ifndef EDU_PLUS_FAULT_GUARD_H
#define EDU_PLUS_FAULT_GUARD_H

#include <stdint.h>

/*
 * Call fn(arg) with SIGBUS and SIGSEGV caught. Returns 0 if fn returned,
 * or the number of the signal that interrupted it. On a fault, fn is
 * abandoned mid-way: anything it wants reported about its progress must be
 * stored in *arg through volatile fields as it goes. Not reentrant.
 */
int fault_guard_run(void (*fn)(void *arg), void *arg);

/* The faulting address of the last caught signal (si_addr). */
uintptr_t fault_guard_addr(void);

#endif /* EDU_PLUS_FAULT_GUARD_H */
