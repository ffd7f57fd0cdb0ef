/*
 * vfio_util_internal.h - what the vfio_util*.c files share and the tests
 * do not use: how a failing vu_* function leaves its message for
 * vu_error(). Tests include vfio_util.h only.
 */
#ifndef EDU_PLUS_VFIO_UTIL_INTERNAL_H
#define EDU_PLUS_VFIO_UTIL_INTERNAL_H

/* Store the formatted message for vu_error(). */
void vu_set_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/*
 * Like vu_set_error, then ": <strerror(errno)> (errno N)" for the errno at
 * entry, which it leaves as it found it.
 */
void vu_set_errno_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#endif /* EDU_PLUS_VFIO_UTIL_INTERNAL_H */
