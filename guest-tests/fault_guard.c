/*
 * fault_guard.c - catch SIGBUS/SIGSEGV around test code (see fault_guard.h).
 */
#include "fault_guard.h"

#include <setjmp.h>
#include <signal.h>
#include <stddef.h>

static sigjmp_buf fault_env;
static volatile uintptr_t fault_addr;
static volatile sig_atomic_t fault_sig;

static void on_fault(int sig, siginfo_t *info, void *ucontext)
{
	(void)ucontext;
	fault_addr = (uintptr_t)info->si_addr;
	fault_sig = sig;
	/* sigsetjmp(.., 1) saved the mask, so this also unblocks sig. */
	siglongjmp(fault_env, 1);
}

int fault_guard_run(void (*fn)(void *arg), void *arg)
{
	struct sigaction sa = { 0 }, old_bus, old_segv;

	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);

	fault_sig = 0;
	/*
	 * C allows setjmp only as a whole controlling expression or compared
	 * with a constant (C11 7.13.1.1), not assigned: the signal number
	 * travels in fault_sig instead of the setjmp return value.
	 */
	if (sigsetjmp(fault_env, 1) == 0)
		fn(arg);

	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
	return fault_sig;
}

uintptr_t fault_guard_addr(void)
{
	return fault_addr;
}
