/*
 * relay — message-by-message forwarding between two Conns (see relay.h).
 */
#include "relay.h"

#include "proto.h"

/* Sends the pending span [rc->span, end) (soon: with what follows in this loop pass) and starts a
 * new one at end. */
static void flush_span(RelayCtx *rc, size_t end, bool soon)
{
	if (end > rc->span && rc->dst)
		(soon ? conn_send_soon : conn_send)(rc->dst, rc->src->in + rc->span, end - rc->span);
	rc->span = end;
}

static void flush_to(RelayCtx *rc, size_t end)
{
	flush_span(rc, end, false);
}

void relay_send(RelayCtx *rc, const void *data, size_t n)
{
	/* Queued with what follows in this pass (later spans append behind them): one system call
	 * for the whole run rather than one per piece. */
	flush_span(rc, rc->src->in_pos, true);
	if (rc->dst)
		conn_send_soon(rc->dst, data, n);
}

/* Moves past the buffered part of a message already being forwarded (src->fwd_left) or dropped
 * (src->skip_left); returns false when the buffer ran out before that message ended. */
static bool continue_partial(RelayCtx *rc)
{
	Conn *src = rc->src;
	size_t avail = src->in_len - src->in_pos;
	if (src->fwd_left) {
		size_t n = avail < src->fwd_left ? avail : src->fwd_left;
		src->in_pos += n;
		src->fwd_left -= n;
		return !src->fwd_left;
	}
	flush_to(rc, src->in_pos);
	size_t n = avail < src->skip_left ? avail : src->skip_left;
	src->in_pos += n;
	src->skip_left -= n;
	rc->span = src->in_pos;
	return !src->skip_left;
}

/*
 * After a FORWARD or DROP with RELAY_AFTER_STOP or RELAY_AFTER_CALL in act: calls ops->after
 * and/or stops. Returns true when relay_process must return *result, false to go on.
 */
static bool after_message(RelayCtx *rc, int act, const RelayOps *ops, void *owner, const char **why,
			  RelayResult *result)
{
	Conn *src = rc->src;
	if (src->fwd_left || src->skip_left) {
		flush_to(rc, src->in_pos);
		*why = "internal error: stop or call requested inside a partial message";
		*result = RELAY_BAD_INPUT;
		return true;
	}
	if (act & RELAY_AFTER_CALL) {
		int next = (int)ops->after(owner, rc);
		if (next == RELAY_CLOSED) {
			*result = RELAY_CLOSED_OWNER;
			return true;
		}
		if (next == RELAY_STOP) {
			flush_to(rc, src->in_pos);
			*result = RELAY_STOPPED;
			return true;
		}
	}
	if (act & RELAY_AFTER_STOP) {
		flush_to(rc, src->in_pos);
		*result = RELAY_STOPPED;
		return true;
	}
	return false;
}

RelayResult relay_process(Conn *src, Conn *dst, const RelayOps *ops, void *owner, const char **why)
{
	RelayCtx rc = {.src = src, .dst = dst, .span = src->in_pos};
	*why = NULL;
	for (;;) {
		if (src->fwd_left || src->skip_left) {
			if (!continue_partial(&rc))
				break; /* buffer consumed, message continues */
			continue;
		}
		size_t avail = src->in_len - src->in_pos;
		uint8_t type;
		size_t total;
		const uint8_t *msg = src->in + src->in_pos;
		int fr = proto_frame(msg, avail, &type, &total);
		if (fr == 0)
			break;
		if (fr < 0) {
			flush_to(&rc, src->in_pos);
			*why = "invalid message length";
			return RELAY_BAD_INPUT;
		}
		size_t have = avail < total ? avail : total;
		rc.skip_prefix = 0;
		int act = (int)ops->message(owner, &rc, type, msg, total, have);
		int base = act & RELAY_ACTION_MASK;
		switch (base) {
		case RELAY_FORWARD:
			if (rc.skip_prefix) {
				/* The owner sent a replacement for the head of the message. */
				flush_to(&rc, src->in_pos);
				if (rc.skip_prefix > have) {
					*why = "internal error: replaced prefix beyond the buffered bytes";
					return RELAY_BAD_INPUT;
				}
				rc.span = src->in_pos + rc.skip_prefix;
			}
			src->in_pos += have;
			src->fwd_left = total - have;
			break;
		case RELAY_DROP:
			flush_to(&rc, src->in_pos);
			src->in_pos += have;
			src->skip_left += total - have; /* the owner may have asked to drop what follows too */
			rc.span = src->in_pos;
			break;
		case RELAY_NEED_BODY:
			flush_to(&rc, src->in_pos);
			if (have == total || !conn_make_room(src, total)) {
				*why = have == total ? "internal error: body requested twice"
						     : "message exceeds max_message_size";
				return RELAY_BAD_INPUT;
			}
			return RELAY_DRAINED; /* buffer compacted: nothing pending */
		case RELAY_STOP:
			flush_to(&rc, src->in_pos);
			return RELAY_STOPPED;
		case RELAY_CLOSED:
			return RELAY_CLOSED_OWNER;
		default:
			flush_to(&rc, src->in_pos);
			*why = "protocol violation";
			return RELAY_BAD_INPUT;
		}
		RelayResult result;
		if ((act & (RELAY_AFTER_STOP | RELAY_AFTER_CALL)) && after_message(&rc, act, ops, owner, why, &result))
			return result;
	}
	flush_to(&rc, src->in_pos);
	return RELAY_DRAINED;
}
