/*
 * sched_heap: the scheduler's messages waiting for their next attempt, a
 * binary min-heap on their due time (due_ms), so that the timer is always
 * armed for the earliest one (scheduler.c, sched_arm()).  Each entry keeps
 * its index in the heap, so a message that is flushed or removed leaves in
 * O(log n).
 */
#include "scheduler_private.h"

#include <errno.h>
#include <stdlib.h>

/* Swaps two heap slots, keeping their indexes. */
static void
sched_heap_swap(struct sched *s, size_t a, size_t b)
{
	struct sched_msg *t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap_idx = a;
	s->heap[b]->heap_idx = b;
}

/* Moves slot i up to its place. */
static void
sched_heap_up(struct sched *s, size_t i)
{
	while (i > 0 && s->heap[(i - 1) / 2]->due_ms > s->heap[i]->due_ms) {
		sched_heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

/* Moves slot i down to its place. */
static void
sched_heap_down(struct sched *s, size_t i)
{
	size_t l, m;

	for (;;) {
		l = 2 * i + 1;
		m = i;
		if (l < s->nheap && s->heap[l]->due_ms < s->heap[m]->due_ms)
			m = l;
		if (l + 1 < s->nheap &&
		    s->heap[l + 1]->due_ms < s->heap[m]->due_ms)
			m = l + 1;
		if (m == i)
			return;
		sched_heap_swap(s, i, m);
		i = m;
	}
}

/* Adds e to the heap. */
int
sched_heap_push(struct sched *s, struct sched_msg *e)
{
	struct sched_msg **h;
	size_t cap;

	if (s->nheap == s->heapcap) {
		cap = s->heapcap ? s->heapcap * 2 : 64;
		if ((h = reallocarray(s->heap, cap, sizeof(*h))) == NULL)
			return -ENOMEM;
		s->heap = h;
		s->heapcap = cap;
	}
	e->heap_idx = s->nheap;
	s->heap[s->nheap++] = e;
	sched_heap_up(s, e->heap_idx);
	return 0;
}

/* Takes e out of the heap, wherever it is. */
void
sched_heap_remove(struct sched *s, struct sched_msg *e)
{
	size_t i = e->heap_idx;

	s->nheap--;
	if (i != s->nheap) {
		s->heap[i] = s->heap[s->nheap];
		s->heap[i]->heap_idx = i;
		sched_heap_down(s, i);
		sched_heap_up(s, i);
	}
}
