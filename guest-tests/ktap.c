/*
 * ktap.c - KTAP v1 output for the guest tests (see ktap.h).
 *
 * Format reference: the kernel's Documentation/dev-tools/ktap.rst
 * ("KTAP version 1", "1..N", "ok|not ok N description [# directive/diag]").
 * Single-threaded by design: the guest tests run one case at a time.
 */
#include "ktap.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static struct {
	int planned;
	int reported;		/* cases with a result line so far */
	int failed;		/* cases reported "not ok" */
	int skipped;
	const char *name;	/* current case, NULL between cases */
	bool case_failed;
	char first_failure[160];
} k;

/* Every line goes out whole and immediately (see ktap.h). */
static void put_line(const char *line)
{
	fputs(line, stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

/* "# " before every line of msg, so a multi-line message stays diagnostic. */
static void put_diag(const char *msg)
{
	char line[512];
	const char *p = msg;

	do {
		size_t n = strcspn(p, "\n");

		snprintf(line, sizeof(line), "# %.*s", (int)n, p);
		put_line(line);
		p += n;
	} while (*p++ == '\n' && *p);
}

void ktap_plan(int n)
{
	char line[32];

	k.planned = n;
	put_line("KTAP version 1");
	snprintf(line, sizeof(line), "1..%d", n);
	put_line(line);
}

void ktap_diag(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	put_diag(msg);
}

void ktap_begin(const char *name)
{
	if (k.name) {
		ktap_diag("ktap: case '%s' never ended; ending it now", k.name);
		ktap_end();
	}
	k.name = name;
	k.case_failed = false;
	k.first_failure[0] = '\0';
}

static void record_failure(const char *msg)
{
	put_diag(msg);
	if (!k.case_failed) {
		/*
		 * Truncated copy; newlines become spaces so the result line
		 * stays one line.
		 */
		size_t i;

		for (i = 0; msg[i] && i < sizeof(k.first_failure) - 1; i++)
			k.first_failure[i] = msg[i] == '\n' ? ' ' : msg[i];
		k.first_failure[i] = '\0';
	}
	k.case_failed = true;
}

static void vfail(const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	record_failure(msg);
}

void ktap_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
}

bool ktap_expect(bool cond, const char *fmt, ...)
{
	va_list ap;

	if (cond)
		return true;
	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	return false;
}

bool ktap_expect_eq(const char *what, uint64_t expected, uint64_t seen)
{
	return ktap_expect(expected == seen,
			   "%s: expected 0x%" PRIx64 ", got 0x%" PRIx64,
			   what, expected, seen);
}

bool ktap_expect_bits(const char *what, uint64_t required, uint64_t seen)
{
	return ktap_expect((seen & required) == required,
			   "%s: expected bits 0x%" PRIx64 " set, got 0x%" PRIx64
			   " (missing 0x%" PRIx64 ")",
			   what, required, seen, required & ~seen);
}

bool ktap_expect_ge(const char *what, uint64_t minimum, uint64_t seen)
{
	return ktap_expect(seen >= minimum,
			   "%s: expected >= 0x%" PRIx64 ", got 0x%" PRIx64,
			   what, minimum, seen);
}

bool ktap_case_ok(void)
{
	return !k.case_failed;
}

/* "<status> N name", plus " # <suffix>" when there is one. */
static void result_line(const char *status, const char *suffix)
{
	char line[512];

	k.reported++;
	if (*suffix)
		snprintf(line, sizeof(line), "%s %d %s # %s", status,
			 k.reported, k.name, suffix);
	else
		snprintf(line, sizeof(line), "%s %d %s", status, k.reported,
			 k.name);
	put_line(line);
	k.name = NULL;
}

bool ktap_end(void)
{
	bool passed = !k.case_failed;

	if (!k.name) {
		ktap_diag("ktap: ktap_end() without ktap_begin()");
		return false;
	}
	if (passed) {
		result_line("ok", "");
	} else {
		k.failed++;
		result_line("not ok", k.first_failure);
	}
	return passed;
}

/* "ok N name # SKIP reason" for the current case. */
static void vskip(const char *fmt, va_list ap)
{
	static const char directive[] = "SKIP ";
	char suffix[256];
	size_t n = sizeof(directive) - 1;

	memcpy(suffix, directive, n);
	vsnprintf(suffix + n, sizeof(suffix) - n, fmt, ap);
	k.skipped++;
	result_line("ok", suffix);
}

void ktap_end_skip(const char *fmt, ...)
{
	va_list ap;

	if (!k.name) {
		ktap_diag("ktap: ktap_end_skip() without ktap_begin()");
		return;
	}
	if (k.case_failed) {
		ktap_end();
		return;
	}
	va_start(ap, fmt);
	vskip(fmt, ap);
	va_end(ap);
}

void ktap_skip(const char *name, const char *fmt, ...)
{
	va_list ap;

	ktap_begin(name);
	va_start(ap, fmt);
	vskip(fmt, ap);
	va_end(ap);
}

int ktap_finish(void)
{
	bool plan_ok;

	if (k.name)
		ktap_end();
	plan_ok = k.reported == k.planned;
	if (!plan_ok)
		ktap_diag("ktap: planned %d cases but reported %d", k.planned,
			  k.reported);
	ktap_diag("Totals: pass:%d fail:%d skip:%d",
		  k.reported - k.failed - k.skipped, k.failed, k.skipped);
	return (k.failed == 0 && plan_ok) ? 0 : 1;
}

void ktap_run_cases(const struct ktap_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *skip;

		ktap_begin(cases[i].name);
		skip = cases[i].run();
		if (skip)
			ktap_end_skip("%s", skip);
		else
			ktap_end();
	}
}
