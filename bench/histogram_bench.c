/*
 * histogram_bench — ns per histogram_record (the hot-path cost of admin.histograms), over N
 * pseudo-random latencies spread over every bucket, against an empty loop doing the same
 * arithmetic. Not a test: `build/histogram_bench [N]`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "histogram.h"

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 50000000;
	if (n <= 0)
		n = 50000000;
	static Histogram h[3]; /* query, transaction, wait: as the proxy keeps them */
	volatile uint64_t sink = 0;
	uint64_t x = 88172645463325252ULL, acc = 0;

	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		acc += x >> (40 + (x & 15)); /* 2^-? .. 2^24 µs */
	}
	double base = now_ns() - t0;
	sink = acc;

	x = 88172645463325252ULL;
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		histogram_record(&h[i % 3 == 0 ? 0 : 1], x >> (40 + (x & 15)));
	}
	double rec = now_ns() - t0;
	sink += h[0].count + h[1].count;

	double ns_clock;
	{
		struct timespec ts;
		t0 = now_ns();
		for (long i = 0; i < n / 10; i++) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			sink += (uint64_t)ts.tv_nsec;
		}
		ns_clock = (now_ns() - t0) / (double)(n / 10);
	}
	printf("histogram_record: %.2f ns per value (loop alone %.2f ns, with record %.2f ns), N = %ld\n",
	       (rec - base) / (double)n, base / (double)n, rec / (double)n, n);
	printf("clock_gettime(CLOCK_MONOTONIC): %.1f ns per call\n", ns_clock);
	printf("p50 %.0f us, p99 %.0f us of the synthetic values (sink %llu)\n", histogram_quantile_us(&h[1], 0.5),
	       histogram_quantile_us(&h[1], 0.99), (unsigned long long)(sink & 1));
	return 0;
}
