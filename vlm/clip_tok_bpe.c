// clip_tok_bpe.c — byte-level BPE of one pre-token: a (left, right) -> (rank, merged) table and
// the merge loop (a min-heap of (rank, position), as HF tokenizers' Word::merge_all).
//
// OpenAI's loop instead merges every occurrence of the lowest-ranked pair, left to right, and only
// then looks at the pairs those merges made. The two orders differ only for merge lists where a
// merge uses a symbol that a later merge makes (not CLIP's); `batch` selects OpenAI's.
#include <stdlib.h>
#include <string.h>

#include "clip_tok_internal.h"

#define EMPTY UINT32_MAX
#define DEAD INT32_MIN

static uint32_t pair_hash(uint32_t left, uint32_t right, uint32_t mask) {
  uint64_t k = ((uint64_t)left << 32 | right) * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(k >> 32) & mask;
}

vkp_status clip_tok_merges_init(clip_tok_merges *m, uint32_t expected) {
  uint32_t cap = 1024;
  while (cap < 2 * expected && cap < (1u << 30)) cap *= 2;
  m->slots = malloc((size_t)cap * sizeof *m->slots);
  if (!m->slots) return VKP_ERR_OOM;
  for (uint32_t i = 0; i < cap; i++) m->slots[i].left = EMPTY;
  m->cap = cap;
  m->count = 0;
  return VKP_OK;
}

void clip_tok_merges_free(clip_tok_merges *m) {
  free(m->slots);
  m->slots = NULL;
  m->cap = m->count = 0;
}

static clip_tok_merge *find_slot(clip_tok_merge *slots, uint32_t cap, uint32_t left, uint32_t right) {
  uint32_t i = pair_hash(left, right, cap - 1);
  while (slots[i].left != EMPTY && (slots[i].left != left || slots[i].right != right)) i = (i + 1) & (cap - 1);
  return &slots[i];
}

static vkp_status grow(clip_tok_merges *m) {
  clip_tok_merges bigger;
  VKP_TRY(clip_tok_merges_init(&bigger, m->cap));
  for (uint32_t i = 0; i < m->cap; i++)
    if (m->slots[i].left != EMPTY) *find_slot(bigger.slots, bigger.cap, m->slots[i].left, m->slots[i].right) = m->slots[i];
  bigger.count = m->count;
  free(m->slots);
  *m = bigger;
  return VKP_OK;
}

vkp_status clip_tok_merges_put(clip_tok_merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if (2 * (m->count + 1) > m->cap) VKP_TRY(grow(m));
  clip_tok_merge *s = find_slot(m->slots, m->cap, (uint32_t)left, (uint32_t)right);
  if (s->left == EMPTY) m->count++;
  *s = (clip_tok_merge){(uint32_t)left, (uint32_t)right, rank, merged};
  return VKP_OK;
}

const clip_tok_merge *clip_tok_merges_get(const clip_tok_merges *m, int32_t left, int32_t right) {
  if (left < 0 || right < 0) return NULL;
  const clip_tok_merge *s = find_slot(m->slots, m->cap, (uint32_t)left, (uint32_t)right);
  return s->left == EMPTY ? NULL : s;
}

void clip_tok_scratch_free(clip_tok_scratch *s) {
  free(s->sym.v);
  free(s->prev.v);
  free(s->next.v);
  free(s->heap.v);
  free(s->pending.v);
  memset(s, 0, sizeof *s);
}

void clip_tok_sink_put(clip_tok_sink *s, int32_t id) {
  if (s->n < s->cap) s->ids[s->n] = id;
  s->n++;
}

// ---- min-heap of (rank << 32 | position) ----------------------------------------------------

static void heap_push(clip_tok_scratch *s, uint64_t key) {   // capacity reserved by the caller
  uint64_t *h = s->heap.v;
  int32_t i = s->heap.n++;
  while (i > 0 && h[(i - 1) / 2] > key) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = key;
}

static uint64_t heap_pop(clip_tok_scratch *s) {
  uint64_t *h = s->heap.v, top = h[0], last = h[--s->heap.n];
  int32_t i = 0, n = s->heap.n;
  for (;;) {
    int32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1] < h[c]) c++;
    if (h[c] >= last) break;
    h[i] = h[c];
    i = c;
  }
  if (n) h[i] = last;
  return top;
}

// Queues the pair at pos (if it is a merge): on the heap, or on `pending` until the current
// rank's merges are done (batch order).
static void push_pair(const clip_tok_merges *merges, clip_tok_scratch *s, int32_t pos, bool pending) {
  int32_t nx = s->next.v[pos];
  if (nx < 0) return;
  const clip_tok_merge *m = clip_tok_merges_get(merges, s->sym.v[pos], s->sym.v[nx]);
  if (!m) return;
  uint64_t key = (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)pos;
  if (pending) s->pending.v[s->pending.n++] = key;
  else heap_push(s, key);
}

vkp_status clip_tok_bpe_word(const clip_tok_merges *merges, const int32_t byte_id[256],
                             const int32_t byte_end_id[256], int32_t unk, const uint8_t *bytes,
                             size_t n, bool batch, clip_tok_scratch *s, clip_tok_sink *sink) {
  if (n == 0) return VKP_OK;
  if (n > INT32_MAX / 4) return VKP_ERR_OOM;
  int32_t m = (int32_t)n;
  // Each merge pushes at most two pairs: the heap never holds more than 3n entries.
  if (vkp_vec_reserve(&s->sym, m) || vkp_vec_reserve(&s->prev, m) || vkp_vec_reserve(&s->next, m) ||
      vkp_vec_reserve(&s->heap, 3 * (int64_t)m) || vkp_vec_reserve(&s->pending, 2 * (int64_t)m))
    return VKP_ERR_OOM;
  for (int32_t i = 0; i < m; i++) {
    int32_t id = (i == m - 1 ? byte_end_id : byte_id)[bytes[i]];
    s->sym.v[i] = id < 0 ? unk : id;
    s->prev.v[i] = i - 1;
    s->next.v[i] = i + 1 < m ? i + 1 : -1;
  }
  s->heap.n = s->pending.n = 0;
  for (int32_t i = 0; i + 1 < m; i++) push_pair(merges, s, i, false);
  while (s->heap.n) {
    uint64_t key = heap_pop(s);
    bool last_of_rank = !s->heap.n || (s->heap.v[0] >> 32) != (key >> 32);
    int32_t rank = (int32_t)(key >> 32), p = (int32_t)(uint32_t)key;
    int32_t q = s->sym.v[p] == DEAD ? -1 : s->next.v[p];
    const clip_tok_merge *mg = q < 0 ? NULL : clip_tok_merges_get(merges, s->sym.v[p], s->sym.v[q]);
    if (mg && mg->rank == rank) {   // else a stale entry: the pair at p has changed
      s->sym.v[p] = mg->merged;
      s->sym.v[q] = DEAD;
      s->next.v[p] = s->next.v[q];
      if (s->next.v[p] >= 0) s->prev.v[s->next.v[p]] = p;
      if (s->prev.v[p] >= 0) push_pair(merges, s, s->prev.v[p], batch);
      push_pair(merges, s, p, batch);
    }
    if (last_of_rank) {
      for (int32_t i = 0; i < s->pending.n; i++) heap_push(s, s->pending.v[i]);
      s->pending.n = 0;
    }
  }
  for (int32_t i = 0; i >= 0; i = s->next.v[i]) clip_tok_sink_put(sink, s->sym.v[i]);
  return VKP_OK;
}
