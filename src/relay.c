/*
 * relay — message-by-message forwarding between two Conns (see relay.h).
 */
#include "relay.h"

#include "proto.h"

/* Sends [*span_start, end) of src's buffer to dst and starts a new span at end. */
static void flush_span(Conn *src, Conn *dst, size_t *span_start, size_t end)
{
	if (end > *span_start && dst)
		conn_send(dst, src->in + *span_start, end - *span_start);
	*span_start = end;
}

RelayResult relay_process(Conn *src, Conn *dst, RelayMessageFn fn, void *owner, const char **why)
{
	size_t span = src->in_pos;
	*why = NULL;
	for (;;) {
		size_t avail = src->in_len - src->in_pos;
		if (src->fwd_left) {
			size_t n = avail < src->fwd_left ? avail : src->fwd_left;
			src->in_pos += n;
			src->fwd_left -= n;
			if (src->fwd_left)
				break; /* buffer consumed, message continues */
			continue;
		}
		if (src->skip_left) {
			flush_span(src, dst, &span, src->in_pos);
			size_t n = avail < src->skip_left ? avail : src->skip_left;
			src->in_pos += n;
			src->skip_left -= n;
			span = src->in_pos;
			if (src->skip_left)
				break;
			continue;
		}
		uint8_t type;
		size_t total;
		const uint8_t *msg = src->in + src->in_pos;
		int fr = proto_frame(msg, avail, &type, &total);
		if (fr == 0)
			break;
		if (fr < 0) {
			flush_span(src, dst, &span, src->in_pos);
			*why = "invalid message length";
			return RELAY_BAD_INPUT;
		}
		size_t have = avail < total ? avail : total;
		RelayAction act = fn(owner, type, msg, total, have);
		bool stop_after = (act & RELAY_AFTER_STOP) != 0;
		act &= ~RELAY_AFTER_STOP;
		switch (act) {
		case RELAY_FORWARD:
			src->in_pos += have;
			src->fwd_left = total - have;
			break;
		case RELAY_DROP:
			flush_span(src, dst, &span, src->in_pos);
			src->in_pos += have;
			src->skip_left = total - have;
			span = src->in_pos;
			break;
		case RELAY_NEED_BODY:
			flush_span(src, dst, &span, src->in_pos);
			if (have == total || !conn_make_room(src, total)) {
				*why = have == total ? "internal error: body requested twice"
						     : "message exceeds max_message_size";
				return RELAY_BAD_INPUT;
			}
			return RELAY_DRAINED; /* buffer compacted: span is at in_pos */
		case RELAY_STOP:
			flush_span(src, dst, &span, src->in_pos);
			return RELAY_STOPPED;
		case RELAY_CLOSED:
			return RELAY_CLOSED_OWNER;
		case RELAY_ERROR:
		default:
			flush_span(src, dst, &span, src->in_pos);
			*why = "protocol violation";
			return RELAY_BAD_INPUT;
		}
		if (stop_after) {
			flush_span(src, dst, &span, src->in_pos);
			if (src->fwd_left || src->skip_left) {
				*why = "internal error: stop requested inside a partial message";
				return RELAY_BAD_INPUT;
			}
			return RELAY_STOPPED;
		}
	}
	flush_span(src, dst, &span, src->in_pos);
	return RELAY_DRAINED;
}
