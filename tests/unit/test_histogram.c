/*
 * test_histogram — the log-spaced latency histogram: bucket edges (v <= bound goes in, bound + 1
 * goes to the next), 0 and huge values, every bucket against a slow reference, counts and sums,
 * merge, and the quantile estimate (Prometheus's linear interpolation).
 */
#include "histogram.h"
#include "unit.h"

#include <math.h>
#include <stdint.h>

/* The reference: the first bucket whose bound is >= v, by a linear search. */
static unsigned slow_bucket(uint64_t v)
{
	for (unsigned i = 0; i < HIST_BOUNDS; i++)
		if (v <= histogram_bound_us(i))
			return i;
	return HIST_BOUNDS;
}

TEST(bounds)
{
	CHECK_INT(histogram_bound_us(0), 32);
	CHECK_INT(histogram_bound_us(1), 64);
	CHECK_INT(histogram_bound_us(HIST_BOUNDS - 1), 1LL << 26); /* 67.1 s */
	CHECK(histogram_bound_us(HIST_BOUNDS) == UINT64_MAX);
	CHECK(histogram_bound_us(1000) == UINT64_MAX);
}

TEST(edges)
{
	CHECK_INT(histogram_bucket(0), 0);
	CHECK_INT(histogram_bucket(1), 0);
	CHECK_INT(histogram_bucket(31), 0);
	CHECK_INT(histogram_bucket(32), 0);
	CHECK_INT(histogram_bucket(33), 1);
	CHECK_INT(histogram_bucket(64), 1);
	CHECK_INT(histogram_bucket(65), 2);
	CHECK_INT(histogram_bucket(1000), 5);    /* 512 < 1000 <= 1024 */
	CHECK_INT(histogram_bucket(1000000), 15); /* 1 s: 2^19 < 1e6 <= 2^20 */
	CHECK_INT(histogram_bucket(1ULL << 26), HIST_BOUNDS - 1);
	CHECK_INT(histogram_bucket((1ULL << 26) + 1), HIST_BOUNDS);
	CHECK_INT(histogram_bucket(UINT64_MAX), HIST_BOUNDS);
	CHECK_INT(histogram_bucket(UINT64_MAX / 2 + 1), HIST_BOUNDS);
}

TEST(every_bucket_matches_reference)
{
	for (unsigned shift = 0; shift < 64; shift++) {
		uint64_t p = 1ULL << shift;
		uint64_t vals[] = {p - 1, p, p + 1, p + p / 2};
		for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++)
			if (histogram_bucket(vals[k]) != slow_bucket(vals[k]))
				UNIT_FAIL("value %llu: bucket %u, expected %u", (unsigned long long)vals[k],
					  histogram_bucket(vals[k]), slow_bucket(vals[k]));
	}
	/* A pseudo-random sweep. */
	uint64_t x = 88172645463325252ULL;
	for (int i = 0; i < 100000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t v = x >> (x & 63);
		if (histogram_bucket(v) != slow_bucket(v)) {
			UNIT_FAIL("value %llu: bucket %u, expected %u", (unsigned long long)v, histogram_bucket(v),
				  slow_bucket(v));
			break;
		}
	}
}

TEST(record_counts_and_sum)
{
	Histogram h = {0};
	histogram_record(&h, 10);
	histogram_record(&h, 32);
	histogram_record(&h, 33);
	histogram_record(&h, 100000000); /* 100 s: +Inf */
	CHECK_INT(h.count, 4);
	CHECK_INT(h.sum_us, 10 + 32 + 33 + 100000000);
	CHECK_INT(h.counts[0], 2);
	CHECK_INT(h.counts[1], 1);
	CHECK_INT(h.counts[HIST_BOUNDS], 1);
	uint64_t total = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		total += h.counts[i];
	CHECK_INT(total, h.count);
}

TEST(merge)
{
	Histogram a = {0}, b = {0};
	histogram_record(&a, 5);
	histogram_record(&b, 5);
	histogram_record(&b, 5000);
	histogram_merge(&a, &b);
	CHECK_INT(a.count, 3);
	CHECK_INT(a.sum_us, 5010);
	CHECK_INT(a.counts[0], 2);
	CHECK_INT(a.counts[histogram_bucket(5000)], 1);
	CHECK_INT(b.count, 2); /* src unchanged */
}

TEST(quantile)
{
	Histogram h = {0};
	CHECK(histogram_quantile_us(&h, 0.5) == 0);
	/* 100 values in (512, 1024]: every quantile lies in that bucket, interpolated. */
	for (int i = 0; i < 100; i++)
		histogram_record(&h, 1000);
	double p50 = histogram_quantile_us(&h, 0.5);
	CHECK(fabs(p50 - 768) < 1e-9); /* 512 + 512 * 0.5 */
	CHECK(fabs(histogram_quantile_us(&h, 1.0) - 1024) < 1e-9);
	/* 90 fast (bucket 0), 10 slow (bucket of 1 s): p95 is in the slow bucket, p50 in the fast. */
	Histogram m = {0};
	for (int i = 0; i < 90; i++)
		histogram_record(&m, 20);
	for (int i = 0; i < 10; i++)
		histogram_record(&m, 1000000);
	CHECK(histogram_quantile_us(&m, 0.5) <= 32);
	double p95 = histogram_quantile_us(&m, 0.95);
	CHECK(p95 > 524288 && p95 <= 1048576);
	/* Values beyond the last bound answer the last bound. */
	Histogram inf = {0};
	histogram_record(&inf, UINT64_MAX / 4);
	CHECK(histogram_quantile_us(&inf, 0.99) == (double)histogram_bound_us(HIST_BOUNDS - 1));
	/* Out-of-range q is clamped. */
	CHECK(histogram_quantile_us(&m, -1) <= 32);
	CHECK(histogram_quantile_us(&m, 2) == 1048576);
}

int main(void)
{
	RUN(bounds);
	RUN(edges);
	RUN(every_bucket_matches_reference);
	RUN(record_counts_and_sum);
	RUN(merge);
	RUN(quantile);
	return unit_summary();
}
