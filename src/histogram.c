/*
 * histogram — log-spaced latency histograms (see histogram.h).
 */
#include "histogram.h"

uint64_t histogram_bound_us(unsigned i)
{
	if (i >= HIST_BOUNDS)
		return UINT64_MAX;
	return UINT64_C(1) << (i + HIST_MIN_SHIFT);
}

void histogram_merge(Histogram *dst, const Histogram *src)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->count += src->count;
	dst->sum_us += src->sum_us;
}

double histogram_quantile_us(const Histogram *h, double q)
{
	if (h->count == 0)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	double rank = q * (double)h->count;
	uint64_t below = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		uint64_t n = h->counts[i];
		if (n == 0 || (double)(below + n) < rank) {
			below += n;
			continue;
		}
		if (i == HIST_BOUNDS)
			return (double)histogram_bound_us(HIST_BOUNDS - 1);
		double lo = i == 0 ? 0 : (double)histogram_bound_us(i - 1);
		double hi = (double)histogram_bound_us(i);
		return lo + (hi - lo) * ((rank - (double)below) / (double)n);
	}
	return (double)histogram_bound_us(HIST_BOUNDS - 1);
}
