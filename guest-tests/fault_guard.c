/*
 * fault_guard.c - catch SIGBUS/SIGSEGV around test code (see fault_guard.h).
 */
#include "fault_guard.h"

#include <setjmp.h>
#include <signal.h>
#include <stddef.h>

static sigjmp_buf fault_env;
static volatile uintptr_t fault_addr;

static void on_fault(int sig, siginfo_t *info, void *ucontext)
{
	(void)ucontext;
	fault_addr = (uintptr_t)info->si_addr;
	/* sigsetjmp(.., 1) saved the mask, so this also unblocks sig. */
	siglongjmp(fault_env, sig);
}

int fault_guard_run(void (*fn)(void *arg), void *arg)
{
	struct sigaction sa = { 0 }, old_bus, old_segv;
	int sig;

	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);

	sig = sigsetjmp(fault_env, 1);
	if (sig == 0)
		fn(arg);

	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
	return sig;
}

uintptr_t fault_guard_addr(void)
{
	return fault_addr;
}
