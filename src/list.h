/*
 * list — intrusive doubly-linked lists (header only).
 *
 * Owns nothing but the links: an object embeds a ListNode per list it can be on, and the pool,
 * runtime and queues keep List heads. O(1) insert/remove, no allocation.
 */
#ifndef PGRELAY_LIST_H
#define PGRELAY_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ListNode {
	struct ListNode *prev, *next;
} ListNode;

typedef struct List {
	ListNode head; /* sentinel */
	size_t count;
} List;

#define list_entry(node, type, member) ((type *)((char *)(node) - offsetof(type, member)))

static inline void list_init(List *l)
{
	l->head.prev = l->head.next = &l->head;
	l->count = 0;
}

static inline void list_node_init(ListNode *n) { n->prev = n->next = NULL; }

static inline bool list_node_linked(const ListNode *n) { return n->next != NULL; }

static inline bool list_empty(const List *l) { return l->count == 0; }

static inline void list_push_back(List *l, ListNode *n)
{
	n->prev = l->head.prev;
	n->next = &l->head;
	l->head.prev->next = n;
	l->head.prev = n;
	l->count++;
}

static inline void list_push_front(List *l, ListNode *n)
{
	n->next = l->head.next;
	n->prev = &l->head;
	l->head.next->prev = n;
	l->head.next = n;
	l->count++;
}

static inline void list_remove(List *l, ListNode *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
	l->count--;
}

static inline ListNode *list_first(const List *l)
{
	return l->count ? l->head.next : NULL;
}

static inline ListNode *list_last(const List *l)
{
	return l->count ? l->head.prev : NULL;
}

static inline ListNode *list_pop_front(List *l)
{
	ListNode *n = list_first(l);
	if (n)
		list_remove(l, n);
	return n;
}

#define list_for_each(node, list) for ((node) = (list)->head.next; (node) != &(list)->head; (node) = (node)->next)

/* Safe against removal of the current node. */
#define list_for_each_safe(node, tmp, list)                                                      \
	for ((node) = (list)->head.next, (tmp) = (node)->next; (node) != &(list)->head;            \
	     (node) = (tmp), (tmp) = (node)->next)

#endif
