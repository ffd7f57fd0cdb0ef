/*
 * ktap.h - a tiny KTAP v1 emitter for the statically linked guest tests.
 *
 * The guest console is a serial port and the guest powers off as soon as
 * /init is done, so every line is flushed the moment it is written: a
 * result still sitting in a stdio buffer at poweroff is a result lost.
 *
 * Usage: one case at a time.
 *
 *	ktap_plan(3);
 *	ktap_begin("first_case");
 *	ktap_expect_eq("identification", 0x010000ed, value);
 *	ktap_end();                       // "ok 1 first_case" or "not ok 1 ..."
 *	ktap_skip("second_case", "needs %s", "first_case");
 *	...
 *	return ktap_finish();             // 0 if nothing failed, else 1
 *
 * Expectations record a failure with a "# ..." diagnostic and return false;
 * they never abort, so one broken register does not hide the others. The
 * first failure's message is repeated on the "not ok" line as KTAP
 * diagnostic data, so a single grep of the console shows why a case failed.
 */
#ifndef EDU_PLUS_KTAP_H
#define EDU_PLUS_KTAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KTAP_PRINTF(fmt_idx, arg_idx) \
	__attribute__((format(printf, fmt_idx, arg_idx)))

/* Print the "KTAP version 1" header and the "1..n" plan. Call once, first. */
void ktap_plan(int n);

/* A "# ..." diagnostic line (no newline needed in fmt). */
void ktap_diag(const char *fmt, ...) KTAP_PRINTF(1, 2);

/* Start the next numbered case. */
void ktap_begin(const char *name);

/* Record a failure of the current case: prints "# <message>". */
void ktap_fail(const char *fmt, ...) KTAP_PRINTF(1, 2);

/* Failure helpers: each returns cond (true = passed). */
bool ktap_expect(bool cond, const char *fmt, ...) KTAP_PRINTF(2, 3);
bool ktap_expect_eq(const char *what, uint64_t expected, uint64_t seen);
bool ktap_expect_bits(const char *what, uint64_t required, uint64_t seen);
bool ktap_expect_ge(const char *what, uint64_t minimum, uint64_t seen);

/* True while the current case has recorded no failure. */
bool ktap_case_ok(void);

/*
 * Finish the current case: "ok N name", or "not ok N name # <first failure>".
 * Returns true if it passed, so callers can gate later cases on it.
 */
bool ktap_end(void);

/*
 * Finish the current case as skipped ("ok N name # SKIP reason"). Only
 * valid while nothing has failed yet; a case that already failed stays
 * failed and is reported as such.
 */
void ktap_end_skip(const char *fmt, ...) KTAP_PRINTF(1, 2);

/* Report a whole case as skipped without running it. */
void ktap_skip(const char *name, const char *fmt, ...) KTAP_PRINTF(2, 3);

/*
 * A numbered test case: run() returns NULL when it ran (its checks decide
 * ok / not ok) or the reason it was skipped.
 */
struct ktap_case {
	const char *name;
	const char *(*run)(void);
};

/* Run the cases in order, each as one numbered KTAP result. */
void ktap_run_cases(const struct ktap_case *cases, size_t n);

/*
 * Print a summary diagnostic and return the process exit code: 0 when every
 * planned case ran and none failed, 1 otherwise (a plan that does not match
 * the number of reported cases is a test bug and counts as a failure).
 */
int ktap_finish(void);

#endif /* EDU_PLUS_KTAP_H */
