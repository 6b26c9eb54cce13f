/*
 * pipeline — request/reply bookkeeping for one server connection (see pipeline.h).
 */
#include "pipeline.h"

#include <stdlib.h>

void pipeline_init(Pipeline *p)
{
	p->ring = NULL;
	p->cap = p->head = p->count = 0;
	p->skipping = p->copy_in = p->batch_open = false;
}

void pipeline_free(Pipeline *p)
{
	free(p->ring);
	pipeline_init(p);
}

void pipeline_clear(Pipeline *p)
{
	p->head = p->count = 0;
	p->skipping = p->copy_in = p->batch_open = false;
}

static PipeEntry *at(const Pipeline *p, size_t i) { return &p->ring[(p->head + i) % p->cap]; }

static void push_raw(Pipeline *p, PipeEntry e)
{
	if (p->count == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		PipeEntry *ring = malloc(cap * sizeof(*ring));
		if (!ring)
			abort();
		for (size_t i = 0; i < p->count; i++)
			ring[i] = *at(p, i);
		free(p->ring);
		p->ring = ring;
		p->cap = cap;
		p->head = 0;
	}
	*at(p, p->count) = e;
	p->count++;
}

static void pop_head(Pipeline *p)
{
	p->head = (p->head + 1) % p->cap;
	p->count--;
}

static void remove_at(Pipeline *p, size_t i)
{
	for (size_t j = i; j + 1 < p->count; j++)
		*at(p, j) = *at(p, j + 1);
	p->count--;
}

static bool is_sync_point(uint8_t kind) { return kind == PIPE_QUERY || kind == PIPE_FUNCTION || kind == PIPE_SYNC; }

bool pipeline_push(Pipeline *p, PipeKind kind, uint8_t flags, uint32_t tag)
{
	PipeEntry e = {.kind = (uint8_t)kind, .flags = flags, .tag = tag};
	switch (kind) {
	case PIPE_SYNC:
		if (p->copy_in)
			return false; /* ignored by the server during COPY FROM STDIN */
		p->skipping = false;
		p->batch_open = false;
		push_raw(p, e);
		return true;
	case PIPE_COPY_END:
		if (p->copy_in) {
			p->copy_in = false;
			return false;
		}
		push_raw(p, e); /* CopyInResponse not seen yet */
		return true;
	case PIPE_QUERY:
	case PIPE_FUNCTION:
		if (p->skipping)
			return false;
		push_raw(p, e);
		return true;
	default:
		/* A client's extended-protocol batch is open until its Sync. (pgrelay's own Parse/Close
		 * ride along with a client request, synthetic ones never reach the server.) */
		if (!(flags & (PIPE_INTERNAL | PIPE_SYNTHETIC)))
			p->batch_open = true;
		if (p->skipping)
			return false;
		push_raw(p, e);
		return true;
	}
}

/* Drops COPY_END markers at the head: they only matter while a COPY starts. */
static void skip_markers(Pipeline *p)
{
	while (p->count && at(p, 0)->kind == PIPE_COPY_END)
		pop_head(p);
}

const PipeEntry *pipeline_head(const Pipeline *p)
{
	for (size_t i = 0; i < p->count; i++)
		if (at(p, i)->kind != PIPE_COPY_END)
			return at(p, i);
	return NULL;
}

static void end_head(Pipeline *p, PipeEnd how, PipeEndFn end, void *ctx)
{
	PipeEntry e = *at(p, 0);
	pop_head(p);
	if (end)
		end(ctx, &e, how);
}

/*
 * CopyInResponse: the request at the head started COPY FROM STDIN. The server now ignores Syncs
 * until the copy ends, so Syncs queued after it (and before the client's CopyDone/CopyFail) get
 * no ReadyForQuery.
 */
static void copy_started(Pipeline *p)
{
	size_t i = 1;
	while (i < p->count) {
		uint8_t k = at(p, i)->kind;
		if (k == PIPE_COPY_END) {
			remove_at(p, i);
			return; /* the client already ended the copy */
		}
		if (k == PIPE_SYNC)
			remove_at(p, i);
		else
			i++;
	}
	p->copy_in = true;
}

uint8_t pipeline_reply(Pipeline *p, uint8_t type, PipeEndFn end, void *ctx)
{
	skip_markers(p);
	PipeEntry *h = p->count ? at(p, 0) : NULL;
	uint8_t flags = h ? h->flags : 0;
	switch (type) {
	case 'Z':
		p->copy_in = false;
		while (p->count) {
			PipeEntry *e = at(p, 0);
			if (is_sync_point(e->kind)) {
				flags = e->flags;
				end_head(p, PIPE_END_DONE, end, ctx);
				return flags;
			}
			end_head(p, e->kind == PIPE_COPY_END ? PIPE_END_DONE : PIPE_END_SKIPPED, end, ctx);
		}
		return 0;
	case '1':
	case '2':
	case '3': {
		uint8_t want = type == '1' ? PIPE_PARSE : type == '2' ? PIPE_BIND : PIPE_CLOSE;
		if (!h || h->kind != want)
			return 0;
		end_head(p, PIPE_END_DONE, end, ctx);
		return flags;
	}
	case 'T':
	case 'n':
		if (h && (h->kind == PIPE_DESCRIBE_STMT || h->kind == PIPE_DESCRIBE_PORTAL)) {
			end_head(p, PIPE_END_DONE, end, ctx);
			return flags;
		}
		if (h && h->kind == PIPE_EXECUTE && type == 'n')
			return flags;
		return flags;
	case 'C':
	case 'I':
	case 's':
		if (type == 'C')
			p->copy_in = false;
		if (h && h->kind == PIPE_EXECUTE) {
			end_head(p, PIPE_END_DONE, end, ctx);
			return flags;
		}
		return flags;
	case 'G':
	case 'W':
		if (h)
			copy_started(p);
		return flags;
	case 'E':
		p->copy_in = false;
		if (!h || is_sync_point(h->kind))
			return flags;
		/* Extended protocol: this request failed, the server skips the rest up to Sync. */
		end_head(p, PIPE_END_FAILED, end, ctx);
		while (p->count && at(p, 0)->kind != PIPE_SYNC)
			end_head(p, PIPE_END_SKIPPED, end, ctx);
		if (!p->count)
			p->skipping = true;
		return flags;
	case 'S':
	case 'A':
	case 'K':
	case 'v':
		return 0;
	default:
		return flags;
	}
}

bool pipeline_pop_synthetic(Pipeline *p, PipeEntry *out)
{
	skip_markers(p);
	if (!p->count || !(at(p, 0)->flags & PIPE_SYNTHETIC))
		return false;
	*out = *at(p, 0);
	pop_head(p);
	return true;
}

bool pipeline_idle(const Pipeline *p)
{
	return pipeline_head(p) == NULL && !p->batch_open && !p->copy_in && !p->skipping;
}
