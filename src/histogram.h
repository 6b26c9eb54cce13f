/*
 * histogram — fixed, log-spaced latency histograms in microseconds (pure: no allocation, no I/O).
 *
 * Owns: the bucket layout and the O(1) record. Bucket i (0 <= i < HIST_BOUNDS) counts values
 * v <= 2^(i + HIST_MIN_SHIFT) µs that no lower bucket counts: upper bounds 32 µs, 64 µs, ...,
 * 2^26 µs = 67.1 s; bucket HIST_BOUNDS counts the rest (+Inf). Recording is a bit scan
 * (__builtin_clzll), a clamp and two additions: no division, no loop, no allocation.
 * Percentile precision is the bucket width (a factor of 2), like Prometheus's default buckets.
 */
#ifndef PGRELAY_HISTOGRAM_H
#define PGRELAY_HISTOGRAM_H

#include <stdint.h>

#define HIST_MIN_SHIFT 5  /* first upper bound: 2^5 = 32 µs */
#define HIST_BOUNDS 22    /* finite upper bounds: 2^5 .. 2^26 µs */
#define HIST_BUCKETS (HIST_BOUNDS + 1)

typedef struct Histogram {
	uint64_t counts[HIST_BUCKETS]; /* per bucket, not cumulative */
	uint64_t count;                /* values recorded */
	uint64_t sum_us;               /* their sum */
} Histogram;

/* The bucket of a value in µs. */
static inline unsigned histogram_bucket(uint64_t us)
{
	/* ceil(log2(us)) for us > 32; the "| 31" folds 0..32 into bucket 0 (and avoids clz(0)). */
	uint64_t x = (us - (us != 0)) | ((UINT64_C(1) << HIST_MIN_SHIFT) - 1);
	unsigned i = (unsigned)(64 - __builtin_clzll(x)) - HIST_MIN_SHIFT;
	return i < HIST_BOUNDS ? i : HIST_BOUNDS;
}

static inline void histogram_record(Histogram *h, uint64_t us)
{
	h->counts[histogram_bucket(us)]++;
	h->count++;
	h->sum_us += us;
}

/* The upper bound of bucket i in µs; UINT64_MAX for the last (+Inf). */
uint64_t histogram_bound_us(unsigned i);
/* dst += src. */
void histogram_merge(Histogram *dst, const Histogram *src);
/*
 * The q-quantile (0 <= q <= 1) in µs, interpolated linearly inside its bucket as Prometheus's
 * histogram_quantile does (the +Inf bucket answers the highest finite bound); 0 when empty.
 */
double histogram_quantile_us(const Histogram *h, double q);

#endif
