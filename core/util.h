// Error reporting and checked allocation shared by every part of the program.
#pragma once
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

// Print "reformer: error: <file>:<line>: <message>" and exit(1). The hint
// (may be NULL) tells the user what to do about it.
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 4, 5)))
#endif
void fatal_at(const char *file, int line, const char *hint, const char *fmt, ...);
#define FATAL(hint, ...) fatal_at(__FILE__, __LINE__, hint, __VA_ARGS__)

// calloc that never returns NULL: reports the size and the caller on failure.
void *checked_calloc_at(size_t count, size_t size, const char *file, int line);
#define checked_calloc(count, size) checked_calloc_at((count), (size), __FILE__, __LINE__)

// Wall clock in seconds (monotonic).
double now_seconds(void);

// Peak resident set size of this process in MiB (getrusage).
double peak_rss_mib(void);

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
