/*
 * The part of benchmark 2's loops (ssl_loop.c, gnutls_loop.c) that times
 * calls: prints "ready", then for each line "N" on stdin times N calls of
 * call(arg) and prints "ns_per_call=X"; returns at EOF.
 */
#ifndef LOOP_TIMER_H
#define LOOP_TIMER_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void time_calls(void (*call)(void *), void *arg)
{
	char line[64];

	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		long n = atol(line);
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		for (long i = 0; i < n; i++)
			call(arg);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);

		printf("ns_per_call=%.1f\n", n > 0 ? ns / n : 0.0);
		fflush(stdout);
	}
}

#endif
