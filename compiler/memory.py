"""Memory planning: activation lifetimes, the op order that minimises peak SRAM, and offsets in one arena.

This is the analysis the C backend prints, ``report.json`` reports and ``mcc analyze`` shows, so they cannot drift.

* **Buffers.** Every activation lives in one arena buffer; reshapes, flattens and identities alias their operand
  (same bytes, no copy), so a buffer holds a root value and its aliases and lives from the root's producer to the
  last use of any of them. Graph inputs are live from before the first op, outputs until after the last. Sizes are
  rounded up to :data:`ALIGNMENT`, as every buffer starts on an aligned offset.
* **Order** (:func:`schedule_memory`). For branched graphs the op order decides which buffers are live together.
  An exact dynamic programme over the sets of already-scheduled ops (the peak of a schedule prefix only matters
  through the set it covers) finds the order with the smallest peak; when a level of that programme grows beyond a
  state budget it turns into a beam search that keeps the most promising prefixes (fewest resident bytes, then
  lowest peak so far; of the rankings tried on random DAGs this one came closest to the exact optimum). The
  ``schedule-memory`` pass applies the order.
* **Placement** (:func:`plan_memory`). Given the order, buffers are placed first-fit (lowest offset that overlaps no
  buffer whose lifetime intersects) in several orders — largest first, by start, by lifetime, by interval-colouring
  class (which meets the bound on every linear chain), by the op with most live bytes ("greedy by breadth") — then a
  seeded local search perturbs the best order, and on small graphs a branch-and-bound over placement orders proves
  or finds the optimum. First-fit in the order of the optimal offsets reproduces an optimal placement, so searching
  orders loses nothing. Every result is compared with the lower bound, the most bytes live at any one moment.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from compiler.ir import Graph, Op, Value
from compiler.opdef import get_opdef, scratch_bytes
from compiler.overlap import Overlap, overlap_distance, pairwise_saving

ALIAS_KINDS = frozenset({"nn.reshape", "nn.flatten", "nn.identity"})
"""Ops whose result is the operand's bytes under another shape."""

ALIGNMENT = 8

SCHEDULE_STATES = 50_000
"""State budget of the exact schedule search; beyond it the search keeps a beam per level."""

LOCAL_SEARCH_STEPS = 400
LOCAL_SEARCH_WORK = 40_000
"""Local-search steps times buffers: large graphs (tiled stages) get fewer steps."""
EXACT_PLACEMENT_NODES = 20_000


@dataclass(frozen=True)
class Buffer:
    """One arena allocation: the values stored in it (none for a kernel's scratch buffer, whose ``op`` is set), its
    byte range and its lifetime (op indices, inclusive)."""

    values: tuple[Value, ...]
    size: int
    start: int
    end: int
    offset: int
    op: Op | None = None


@dataclass(frozen=True)
class MemoryPlan:
    """Where every activation lives in the arena, and the figures derived from it."""

    buffers: tuple[Buffer, ...]
    offsets: dict[Value, int]
    arena_bytes: int
    live_bytes: tuple[int, ...]
    """Arena bytes (sizes rounded up to :data:`ALIGNMENT`) of the buffers live at each op, in op order."""
    lower_bound: int = 0
    """The most bytes live at any one moment (inputs before the first op included): no placement does better."""
    placement: str = ""
    """Which placement heuristic produced the offsets (``exact`` when proven optimal)."""
    overlaps: tuple[tuple[Value, Value, Overlap], ...] = ()
    """(result, operand, where) for every result allowed to overlap an operand dying at its op (see
    :mod:`compiler.overlap`): the result may start ``where.d`` (or more, unless ``where.exact``) bytes below the
    operand, or anywhere not overlapping."""
    scratch: dict[Op, int] = field(default_factory=dict)
    """Arena offset of every kernel scratch buffer, by op."""

    @property
    def scratch_bytes(self) -> int:
        """The largest kernel scratch buffer (it is inside the arena)."""
        return max((b.size for b in self.buffers if b.op is not None), default=0)

    def shared_bytes(self) -> int:
        """Bytes of the arena that two buffers use in turn within one op (result written over its dying operand)."""
        total = 0
        for r, x, _ in self.overlaps:
            ro, xo = self.offsets[r], self.offsets[x]
            total += max(0, min(ro + align(r.type.nbytes), xo + align(x.type.nbytes)) - max(ro, xo))
        return total

    @property
    def gap_bytes(self) -> int:
        """How far the arena is above the lower bound (0: the placement is optimal)."""
        return self.arena_bytes - self.lower_bound

    def offset(self, v: Value) -> int:
        """Arena offset of activation ``v``."""
        return self.offsets[v]


def align(n: int) -> int:
    """``n`` rounded up to :data:`ALIGNMENT`."""
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT



def is_activation(v: Value) -> bool:
    """True for values that live in the arena (everything but constants)."""
    return v.producer is None or v.producer.kind != "const"


def alias_source(graph: Graph, op: Op) -> Value | None:
    """The operand whose bytes ``op``'s result reuses, if any: the operand of a reshape, flatten or identity, and
    the ``full`` tensor of an ``nn.insert`` that is the only user of an earlier insert's result (so a chain of
    inserts fills one buffer in place)."""
    if op.kind in ALIAS_KINDS and op.operands and is_activation(op.operands[0]):
        return op.operands[0]
    if op.kind == "nn.insert" and len(op.operands) == 2:
        full = op.operands[1]
        p = full.producer
        if p is not None and p.kind == "nn.insert" and len(full.uses) == 1 and not graph.is_output(full):
            return full
    return None


def streamed_inputs(graph: Graph) -> set[Value]:
    """Graph inputs read only by streamed slices (``nn.slice {stream = true}``): they never enter the arena."""
    return {v for v in graph.inputs
            if v.uses and all(u.op.kind == "nn.slice" and u.op.attrs.get("stream") is True for u in v.uses)}


def buffer_roots(graph: Graph) -> dict[Value, Value]:
    """For every activation in the arena, the value whose buffer holds it (itself, or an alias chain's first
    value). Streamed graph inputs are not in the arena and not in the result."""
    streamed = streamed_inputs(graph)
    root: dict[Value, Value] = {v: v for v in graph.inputs if v not in streamed}
    for op in graph.ops:
        for r in op.results:
            if not is_activation(r):
                continue
            src = alias_source(graph, op)
            root[r] = root[src] if src is not None else r
    return root


# -- lifetimes ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Span:
    values: tuple[Value, ...]
    size: int
    start: int
    end: int
    op: Op | None = None
    """The op whose scratch buffer this is (then ``values`` is empty)."""


def _spans(graph: Graph) -> list[_Span]:
    index: dict[Op, int] = {op: i for i, op in enumerate(graph.ops)}
    members: dict[Value, list[Value]] = {}
    for v, r in buffer_roots(graph).items():
        members.setdefault(r, []).append(v)
    last = len(graph.ops)  # graph outputs stay live to the end; inputs are live from the start
    spans = []
    for r, vals in members.items():
        start = -1 if r.producer is None else index[r.producer]
        end = start
        for v in vals:
            for use in v.uses:
                end = max(end, index[use.op])
            if graph.is_output(v):
                end = last
        spans.append(_Span(tuple(vals), r.type.nbytes, start, end))
    for t, op in enumerate(graph.ops):
        n = scratch_bytes(op) if op.kind != "const" else 0
        if n:
            spans.append(_Span((), n, t, t, op))
    return spans


DistanceCache: TypeAlias = "dict[tuple[Op, int, object], Overlap | None]"
"""Memoised :func:`~compiler.overlap.overlap_distance` by (op, operand, its ``in_place`` attribute), for plans of one
graph whose ops change no other attribute in between (:func:`plan_choosing_in_place`)."""


def op_overlaps(op: Op, root: dict[Value, Value], dying: Callable[[Value], bool],
                cache: DistanceCache | None = None) -> dict[Value, Overlap]:
    """For each operand buffer (by root) that ``dying`` says ends at ``op``: the distance ``D`` at which ``op``'s
    result may overlap it (:func:`compiler.overlap.overlap_distance`; the largest when the op reads the buffer
    through several operands). Empty when the result is an alias or the op declares no access contract."""
    if len(op.results) != 1 or op.kind in ALIAS_KINDS or root.get(op.result) is not op.result:
        return {}
    out: dict[Value, Overlap] = {}
    refused: set[Value] = set()
    for k, v in enumerate(op.operands):
        r = root.get(v)
        if r is None or r is op.result or not dying(r):
            continue
        if cache is None:
            d = overlap_distance(op, k)
        else:
            key = (op, k, op.attrs.get("in_place"))
            if key not in cache:
                cache[key] = overlap_distance(op, k)
            d = cache[key]
        if d is None or (r in out and (d.exact or out[r].exact) and d != out[r]):
            refused.add(r)
        else:
            out[r] = max(d, out.get(r, d))
    return {r: d for r, d in out.items() if r not in refused}


def _pairs(graph: Graph, spans: Sequence[_Span], cache: DistanceCache | None = None
           ) -> dict[tuple[int, int], Overlap]:
    """(result span, operand span) -> where the result may overlap, for every result-over-dying-operand pair."""
    by_root = {s.values[0]: k for k, s in enumerate(spans) if s.values}
    root = buffer_roots(graph)
    last = len(graph.ops)
    pairs: dict[tuple[int, int], Overlap] = {}
    for t, op in enumerate(graph.ops):
        if op.kind == "const" or not op.results or op.result not in by_root:
            continue
        y = by_root[op.result]

        def dying(r: Value, t: int = t) -> bool:
            s = spans[by_root[r]]
            return s.end == t and s.end != last

        for r, d in op_overlaps(op, root, dying, cache).items():
            pairs[(y, by_root[r])] = d
    return pairs


def _savings(spans: Sequence[_Span], pairs: dict[tuple[int, int], Overlap], n_ops: int) -> list[int]:
    """Bytes the legal overlaps can save at each op (an upper bound on what any placement shares: offsets are
    multiples of :data:`ALIGNMENT`, so a distance ``D`` is in effect ``D`` rounded up to one)."""
    saved = [0] * n_ops
    for (y, x), d in pairs.items():
        saved[spans[y].start] += pairwise_saving(d.d if d.exact else align(d.d), align(spans[x].size),
                                                 align(spans[y].size), d.exact)
    return saved


def _live(spans: Sequence[_Span], n_ops: int, saved: Sequence[int] = ()) -> tuple[tuple[int, ...], int]:
    """Aligned bytes live at each op (less what overlaps may save there), and the most live at any moment from
    -1 (inputs copied in) to ``n_ops``: the lower bound of the arena."""
    delta = [0] * (n_ops + 3)
    for s in spans:
        delta[s.start + 1] += align(s.size)
        delta[s.end + 2] -= align(s.size)
    at, total = [], 0
    for d in delta[:-1]:
        total += d
        at.append(total)
    for t, b in enumerate(saved):
        at[t + 1] -= b
    return tuple(at[1:n_ops + 1]), max(at, default=0)


def live_bytes(graph: Graph) -> tuple[int, ...]:
    """Aligned activation bytes each op of ``graph`` needs (legal overlaps taken), in its current op order."""
    spans = _spans(graph)
    return _live(spans, len(graph.ops), _savings(spans, _pairs(graph, spans), len(graph.ops)))[0]


# -- operator order ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """An execution order of the non-constant ops and its peak of live bytes."""

    order: tuple[Op, ...]
    peak: int
    original_peak: int
    """The peak of the graph's current order."""
    exact: bool
    """True when the search was exhaustive, so ``peak`` is the optimum over all valid orders."""


class _Problem:
    """The graph as bitmask data for the schedule search: ops, dependencies, buffers with their users."""

    def __init__(self, graph: Graph, overlap: bool = True) -> None:
        self.ops = [op for op in graph.ops if op.kind != "const"]
        pos = {op: i for i, op in enumerate(self.ops)}
        root = buffer_roots(graph)
        n = len(self.ops)
        self.preds = [0] * n
        self.succs: list[list[int]] = [[] for _ in range(n)]
        impure_prev = -1
        for i, op in enumerate(self.ops):
            deps = {pos[v.producer] for v in op.operands if v.producer is not None and v.producer in pos}
            if not get_opdef(op.kind).pure:  # side effects keep their relative order
                if impure_prev >= 0:
                    deps.add(impure_prev)
                impure_prev = i
            for d in deps:
                self.preds[i] |= 1 << d
                self.succs[d].append(i)
        roots = list(dict.fromkeys(root.values()))  # inputs, then results in op order
        rid = {r: k for k, r in enumerate(roots)}
        self.size = [align(r.type.nbytes) for r in roots]
        self.users = [0] * len(roots)
        self.pinned = [False] * len(roots)
        for v, r in root.items():
            for u in v.uses:
                self.users[rid[r]] |= 1 << pos[u.op]
            if graph.is_output(v):
                self.pinned[rid[r]] = True
        self.new_size = [0] * n
        self.scratch = [align(scratch_bytes(op)) for op in self.ops]
        self.freeable: list[tuple[tuple[int, int], ...]] = []  # per op: (users mask, size) of buffers it may free
        for i, op in enumerate(self.ops):
            own = [rid[r] for r in op.results if r in root and root[r] is r]
            self.new_size[i] = sum(self.size[k] for k in own)
            used = {rid[root[v]] for v in op.operands if v in root}
            self.freeable.append(tuple((self.users[k], self.size[k]) for k in sorted(used | set(own))
                                       if not self.pinned[k]))
        self.overlap: list[tuple[tuple[int, int], ...]] = []  # per op: (users mask, bytes saved) if that buffer dies
        for op in self.ops:
            ods = op_overlaps(op, root, lambda r: not self.pinned[rid[r]]) if overlap else {}
            ysize = align(op.result.type.nbytes) if ods else 0
            self.overlap.append(tuple((self.users[rid[r]],
                                       pairwise_saving(d.d if d.exact else align(d.d), self.size[rid[r]], ysize,
                                                       d.exact))
                                      for r, d in ods.items()))
        inputs = [rid[v] for v in graph.inputs if v in root]
        self.entry = sum(self.size[k] for k in set(inputs))
        self.resident0 = sum(self.size[k] for k in set(inputs) if self.users[k] or self.pinned[k])

    def step(self, done: int, resident: int, i: int) -> tuple[int, int, int]:
        """Run op ``i`` after the ops in ``done``: (bytes live during it, new done mask, resident bytes after)."""
        done2 = done | (1 << i)
        during = resident + self.new_size[i] + self.scratch[i] - sum(
            b for users, b in self.overlap[i] if not users & ~done2)
        freed = sum(size for users, size in self.freeable[i] if not users & ~done2)
        return during, done2, resident + self.new_size[i] - freed

    def peak_of(self, order: Sequence[int]) -> int:
        """Peak of live bytes when the ops run in ``order``."""
        peak, done, resident = self.entry, 0, self.resident0
        for i in order:
            during, done, resident = self.step(done, resident, i)
            peak = max(peak, during)
        return peak


def schedule_memory(graph: Graph, *, max_states: int = SCHEDULE_STATES, overlap: bool = True) -> Schedule:
    """The valid op order with the smallest peak of live activation bytes (exact within ``max_states``).

    Dynamic programme by levels: level k holds, for every set of k ops that can run first, the smallest peak of
    any order of them and the bytes still resident afterwards (a function of the set alone). Expanding a set by
    each ready op gives level k+1. If a level holds more than ``max_states // n`` sets (at least 64) only the best
    (fewest resident bytes, then lowest peak) are kept and the result is no longer guaranteed optimal. With
    ``overlap`` an op's bytes are less what its result may share with operands that die at it.
    """
    p = _Problem(graph, overlap)
    n = len(p.ops)
    original = p.peak_of(range(n))
    width = max(64, max_states // max(n, 1))
    ready0 = tuple(i for i in range(n) if not p.preds[i])
    level: dict[int, tuple[int, int, tuple[int, ...]]] = {0: (p.entry, p.resident0, ready0)}
    parents: list[dict[int, tuple[int, int]]] = []
    exact = True
    for _ in range(n):
        nxt: dict[int, tuple[int, int, tuple[int, ...]]] = {}
        back: dict[int, tuple[int, int]] = {}
        for done, (peak, resident, ready) in level.items():
            for i in ready:
                during, done2, after = p.step(done, resident, i)
                cand = max(peak, during)
                old = nxt.get(done2)
                if old is not None and old[0] <= cand:
                    continue
                new_ready = [j for j in ready if j != i]
                new_ready += [j for j in p.succs[i] if not p.preds[j] & ~done2]
                nxt[done2] = (cand, after, tuple(sorted(new_ready)))
                back[done2] = (done, i)
        if len(nxt) > width:
            exact = False
            # beam: keep the sets with the fewest resident bytes, then the lowest peak so far
            cur = nxt
            keep = sorted(cur, key=lambda m: (cur[m][1], cur[m][0]))[:width]
            nxt = {m: nxt[m] for m in keep}
        parents.append(back)
        level = nxt
    full = (1 << n) - 1
    if n and full not in level:  # cannot happen for a verified (acyclic) graph
        return Schedule(tuple(p.ops), original, original, False)
    order: list[int] = []
    mask = full
    for back in reversed(parents):
        mask, i = back[mask]
        order.append(i)
    order.reverse()
    best = level[full][0] if n else original
    if best >= original:
        return Schedule(tuple(p.ops), original, original, exact)
    return Schedule(tuple(p.ops[i] for i in order), best, original, exact)


def apply_schedule(graph: Graph, order: Sequence[Op]) -> None:
    """Reorder ``graph.ops`` to run the non-constant ops in ``order``; each constant moves just before its first user.

    Constants no op uses (graph outputs, dead ones) go first, in their current order.
    """
    consts = [op for op in graph.ops if op.kind == "const"]
    placed: set[Op] = set()
    new: list[Op] = [c for c in consts if not c.result.uses]
    placed.update(new)
    for op in order:
        for v in op.operands:
            c = v.producer
            if c is not None and c.kind == "const" and c not in placed:
                placed.add(c)
                new.append(c)
        new.append(op)
    if len(new) != len(graph.ops) or set(new) != set(graph.ops):
        raise ValueError("a schedule must order exactly the graph's non-constant ops")
    graph.ops[:] = new


# -- placement ---------------------------------------------------------------------------------------------------
class _Placer:
    """First-fit placement of aligned intervals in a given order, with precomputed lifetime conflicts.

    ``partial[(a, b)] = d`` relaxes the conflict of buffers a and b: b may also start at ``offset(a) + d`` or
    above while overlapping a (a result written over its dying operand, seen from the operand, or the mirror).
    """

    def __init__(self, spans: Sequence[_Span], partial: dict[tuple[int, int], Overlap] | None = None) -> None:
        self.size = [align(s.size) for s in spans]
        self.spans = spans
        self.partial = partial or {}
        n = len(spans)
        self.conflicts: list[list[int]] = [[] for _ in range(n)]
        by_start = sorted(range(n), key=lambda k: spans[k].start)
        for i, a in enumerate(by_start):  # lifetimes intersect: b starts before a ends (b starts no earlier)
            end_a = spans[a].end
            for b in by_start[i + 1:]:
                if spans[b].start > end_a:
                    break
                self.conflicts[a].append(b)
                self.conflicts[b].append(a)
        for c in self.conflicts:
            c.sort()
        # per buffer k and conflicting buffer j: the byte ranges k must avoid, relative to j's offset
        self.busy: list[list[tuple[int, int, int]]] = [self._busy(k) for k in range(n)]
        self.evaluations = 0

    def _busy(self, k: int) -> list[tuple[int, int, int]]:
        out = []
        sk = self.size[k]
        for j in self.conflicts[k]:
            sj = self.size[j]
            ov = self.partial.get((j, k))
            if ov is not None:  # k may start at off[j] + d or above (exactly there, if exact)
                out.append((j, 0, ov.d))
                if ov.exact:
                    out.append((j, ov.d + sk, sj))
                continue
            ov = self.partial.get((k, j))
            if ov is not None:  # j may start at off[k] + d or above: k at most off[j] - d (exactly, if exact)
                out.append((j, -ov.d + sk, sj))
                if ov.exact:
                    out.append((j, 0, -ov.d))
            else:
                out.append((j, 0, sj))
        return out

    def first_fit(self, order: Sequence[int], stop: int | None = None, *, reuse: int = 0,
                  prev: tuple[Sequence[int], Sequence[int]] | None = None) -> tuple[list[int], int]:
        """Offsets and arena of placing in ``order``; gives up (arena ``stop``) once the arena reaches ``stop``.

        ``prev = (offsets, running tops)`` of a complete earlier placement whose order agrees with ``order`` on the
        first ``reuse`` positions: those offsets are taken over, as placing them again would give the same."""
        off, top, _ = self.fit(order, stop, reuse=reuse, prev=prev)
        return off, top

    def fit(self, order: Sequence[int], stop: int | None = None, *, reuse: int = 0,
            prev: tuple[Sequence[int], Sequence[int]] | None = None) -> tuple[list[int], int, list[int]]:
        """:meth:`first_fit`, also returning the running arena after each placed position."""
        self.evaluations += 1
        size, busy_of = self.size, self.busy
        off = [-1] * len(size)
        top = 0
        tops: list[int] = []
        if prev is not None and reuse:
            poff, ptops = prev
            for k in order[:reuse]:
                off[k] = poff[k]
            tops = list(ptops[:reuse])
            top = tops[-1]
        for k in order[reuse:]:
            sk = size[k]
            busy = []
            for j, lo, hi in busy_of[k]:
                o = off[j]
                if o >= 0:
                    busy.append((o + lo, o + hi))
            at = 0
            if busy:
                busy.sort()
                for lo, hi in busy:
                    if at + sk <= lo:
                        break
                    if hi > at:
                        at = (hi + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
            off[k] = at
            if at + sk > top:
                top = at + sk
            tops.append(top)
            if stop is not None and top >= stop:
                return off, top, tops
        return off, top, tops

    def tops(self, order: Sequence[int], off: Sequence[int]) -> list[int]:
        """The running arena after each position of ``order`` placed at ``off``."""
        out, top = [], 0
        for k in order:
            top = max(top, off[k] + self.size[k])
            out.append(top)
        return out

    def _lowest(self, k: int, off: Sequence[int]) -> int:
        """The lowest aligned offset for buffer ``k`` given the buffers already placed (``off >= 0``)."""
        busy = []
        for j, lo, hi in self.busy[k]:
            o = off[j]
            if o >= 0:
                busy.append((o + lo, o + hi))
        busy.sort()
        sk = self.size[k]
        at = 0
        for lo, hi in busy:
            if at + sk <= lo:
                break
            if hi > at:
                at = (hi + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
        return at

    # candidate orders
    def orders(self, live_order: Sequence[int]) -> dict[str, list[int]]:
        n = len(self.size)
        s, sp = self.size, self.spans
        ids = range(n)
        return {
            "greedy-by-size": sorted(ids, key=lambda k: (-s[k], sp[k].start)),
            "by-start": sorted(ids, key=lambda k: (sp[k].start, -s[k])),
            "by-lifetime": sorted(ids, key=lambda k: (-(sp[k].end - sp[k].start), -s[k], sp[k].start)),
            "by-area": sorted(ids, key=lambda k: (-s[k] * (sp[k].end - sp[k].start + 1), sp[k].start)),
            "interval-colouring": self._colour_order(),
            "greedy-by-breadth": list(live_order),
        }

    def _colour_order(self) -> list[int]:
        """Colour intervals greedily by start (no two conflicting buffers share a colour), then colour by colour."""
        colour: dict[int, int] = {}
        for k in sorted(range(len(self.size)), key=lambda k: (self.spans[k].start, self.spans[k].end)):
            taken = {colour[j] for j in self.conflicts[k] if j in colour}
            colour[k] = next(c for c in range(len(self.size) + 1) if c not in taken)
        return sorted(colour, key=lambda k: (colour[k], -self.size[k], self.spans[k].start))

    def exact(self, first: Sequence[int], bound: int, best: int, budget: int) -> tuple[list[int] | None, bool]:
        """Branch and bound over placement orders (trying ``first``'s order first): an order whose arena beats
        ``best`` if one exists, and whether the search finished within ``budget`` nodes (then none does better)."""
        n = len(self.size)
        off = [-1] * n
        found: list[int] | None = None
        nodes = 0
        target = best

        def dfs(depth: int, top: int, chosen: list[int]) -> bool:
            nonlocal nodes, found, target
            if depth == n:
                found, target = list(chosen), top
                return target <= bound
            for k in first:
                if off[k] >= 0:
                    continue
                nodes += 1
                if nodes > budget:
                    return True
                at = self._lowest(k, off)
                new_top = max(top, at + self.size[k])
                if new_top >= target:
                    continue
                off[k] = at
                chosen.append(k)
                stop = dfs(depth + 1, new_top, chosen)
                chosen.pop()
                off[k] = -1
                if stop:
                    return True
            return False

        dfs(0, 0, [])
        return found, nodes <= budget


def _breadth_order(spans: Sequence[_Span], n_ops: int) -> list[int]:
    """Buffers of the op with most live bytes first (largest first), then those of the next busiest op, …"""
    live: list[list[int]] = [[] for _ in range(n_ops + 2)]
    for k, s in enumerate(spans):
        for t in range(s.start, s.end + 1):
            live[t + 1].append(k)
    order: list[int] = []
    seen: set[int] = set()
    for t in sorted(range(len(live)), key=lambda t: -sum(align(spans[k].size) for k in live[t])):
        for k in sorted(live[t], key=lambda k: -spans[k].size):
            if k not in seen:
                seen.add(k)
                order.append(k)
    order += [k for k in range(len(spans)) if k not in seen]
    return order


def _partials(spans: Sequence[_Span], pairs: dict[tuple[int, int], Overlap]
              ) -> tuple[dict[tuple[int, int], Overlap], ...]:
    """The overlap pairs as placer relaxations, for first-fit upwards and for first-fit in the mirrored arena."""
    size = [align(s.size) for s in spans]
    up: dict[tuple[int, int], Overlap] = {}
    down: dict[tuple[int, int], Overlap] = {}
    for (y, x), ov in pairs.items():
        d = ov.d if ov.exact else max(-size[x], min(ov.d, size[y]))
        up[(y, x)] = Overlap(d, ov.exact)                          # the operand may start d above the result
        down[(x, y)] = Overlap(size[x] + d - size[y], ov.exact)    # mirrored: the result that far above it
    return up, down


def _place(spans: Sequence[_Span], n_ops: int, bound: int,
           pairs: dict[tuple[int, int], Overlap]) -> tuple[list[int], int, str]:
    best: tuple[list[int], int, str] | None = None
    for mirrored, partial in enumerate(_partials(spans, pairs) if pairs else ({},)):
        off, top, name = _place_with(_Placer(spans, partial), n_ops, bound)
        if mirrored:  # offsets were measured down from the top of the arena
            off = [top - o - align(s.size) for o, s in zip(off, spans, strict=True)]
            name += " (mirrored)"
        if best is None or top < best[1]:
            best = (off, top, name)
        if top <= bound:
            break
    assert best is not None
    return best


def _place_with(placer: _Placer, n_ops: int, bound: int) -> tuple[list[int], int, str]:
    spans = placer.spans
    best_name, best_order, best_off, best_top = "", [0], [0], -1
    for name, order in placer.orders(_breadth_order(spans, n_ops)).items():
        off, top = placer.first_fit(order)
        if best_top < 0 or top < best_top:
            best_name, best_order, best_off, best_top = name, order, off, top
    if best_top <= bound:
        return best_off, best_top, best_name
    n = len(spans)
    if n <= 12:
        # first-fit over every order is provably optimal only without overlap relaxations
        exact = "exact" if not placer.partial else "all-orders"
        order2, complete = placer.exact(best_order, bound, best_top, EXACT_PLACEMENT_NODES)
        if order2 is not None:
            best_off, best_top = placer.first_fit(order2)
            best_order, best_name = order2, exact
        if complete:
            return best_off, best_top, exact
    rng = random.Random(0)
    current = list(best_order)
    # a move changes the order from min(a, b) on: the placement of the positions before it is taken over
    prev = (best_off, placer.tops(current, best_off))
    for _ in range(min(LOCAL_SEARCH_STEPS, LOCAL_SEARCH_WORK // max(n, 1))):
        cand = list(current)
        a, b = rng.randrange(n), rng.randrange(n)
        cand.insert(b, cand.pop(a))
        off, top, tops = placer.fit(cand, stop=best_top + 1, reuse=min(a, b), prev=prev)
        if top <= best_top:
            current = cand
            prev = (off, tops)
            if top < best_top:
                best_off, best_top, best_name = off, top, "local-search"
                if best_top <= bound:
                    break
    return best_off, best_top, best_name


def plan_memory(graph: Graph, *, overlap: bool = True, distances: DistanceCache | None = None) -> MemoryPlan:
    """Lifetimes, aliases and arena offsets for the activations of ``graph`` in its op order.

    With ``overlap`` (the default) a result may share bytes with an operand dying at its op where the op's kernels
    allow it (:mod:`compiler.overlap`); without, no two buffers live at the same moment share a byte.
    ``distances`` memoises the overlap distances across plans of the same graph (see :data:`DistanceCache`).
    """
    spans = _spans(graph)
    n_ops = len(graph.ops)
    pairs = _pairs(graph, spans, distances) if overlap else {}
    live, bound = _live(spans, n_ops, _savings(spans, pairs, n_ops))
    offsets_by_span, arena, how = _place(spans, n_ops, bound, pairs) if spans else ([], 0, "empty")
    placed = [Buffer(s.values, s.size, s.start, s.end, o, s.op) for s, o in zip(spans, offsets_by_span, strict=True)]
    offsets = {v: b.offset for b in placed for v in b.values}
    scratch = {b.op: b.offset for b in placed if b.op is not None}
    placed.sort(key=lambda b: (b.offset, b.start))
    overlaps = tuple((spans[y].values[0], spans[x].values[0], d) for (y, x), d in pairs.items())
    return MemoryPlan(tuple(placed), offsets, align(arena), live, bound, how, overlaps, scratch)


# -- the plan in the IR ------------------------------------------------------------------------------------------
def attach_plan(graph: Graph, plan: MemoryPlan) -> bool:
    """Write ``plan`` into the IR (every activation's ``offset``, the graph's ``arena_bytes``); True if it changed."""
    changed = graph.arena_bytes != plan.arena_bytes
    graph.arena_bytes = plan.arena_bytes
    for v in [*graph.inputs, *(r for op in graph.ops for r in op.results)]:
        new = plan.offsets.get(v)
        changed |= v.offset != new
        v.offset = new
    for op in graph.ops:
        new = plan.scratch.get(op)
        changed |= op.scratch_offset != new
        op.scratch_offset = new
    return changed


def plan_from_ir(graph: Graph) -> MemoryPlan:
    """The memory plan the IR carries (``plan-memory``), checked: every activation placed, aligned and inside the
    arena, aliases at their buffer's offset, constants unplaced, and no two buffers live at the same moment sharing
    a byte unless a result overlaps an operand dying at its op at a legal distance (:mod:`compiler.overlap`).
    Raises :class:`~compiler.errors.VerifyError` naming the first value that breaks a rule."""
    from compiler.errors import VerifyError

    arena = graph.arena_bytes
    if arena is None:
        raise VerifyError(f"graph @{graph.name} carries no memory plan; run the plan-memory pass")
    spans = _spans(graph)
    root = buffer_roots(graph)
    for op in graph.ops:
        for r in op.results:
            if r not in root and r.offset is not None:
                raise VerifyError(f"{op.label}: constant %{r.name} cannot have an arena offset")
    for v in streamed_inputs(graph):
        if v.offset is not None:
            raise VerifyError(f"memory plan: %{v.name} is streamed (read region by region from outside the arena) "
                              "and cannot have an arena offset")
    scratch: dict[Op, int] = {}
    for op in graph.ops:
        need = scratch_bytes(op) if op.kind != "const" else 0
        if need and op.scratch_offset is None:
            raise VerifyError(f"memory plan: {op.label} needs {need} B of scratch but has no scratch offset")
        if op.scratch_offset is not None:
            if not need:
                raise VerifyError(f"memory plan: {op.label} has a scratch offset but its kernel needs no scratch")
            if op.scratch_offset % ALIGNMENT or op.scratch_offset + need > arena:
                raise VerifyError(f"memory plan: the scratch of {op.label} at {op.scratch_offset} (+{need} B) is "
                                  f"not {ALIGNMENT}-byte aligned inside the {arena} B arena")
            scratch[op] = op.scratch_offset
    offsets: dict[Value, int] = {}
    for v, r in root.items():
        if v.offset is None:
            raise VerifyError(f"memory plan: %{v.name} has no arena offset (a pass changed the graph after "
                              "plan-memory? run plan-memory last)")
        if v.offset % ALIGNMENT or v.offset + v.type.nbytes > arena:
            raise VerifyError(f"memory plan: %{v.name} at {v.offset} (+{v.type.nbytes} B) is not "
                              f"{ALIGNMENT}-byte aligned inside the {arena} B arena")
        if v.offset != r.offset:
            raise VerifyError(f"memory plan: %{v.name} aliases %{r.name} but is at {v.offset}, not {r.offset}")
        offsets[v] = v.offset
    pairs = _pairs(graph, spans)
    for a in range(len(spans)):
        for b in range(a + 1, len(spans)):
            sa, sb = spans[a], spans[b]
            if sa.end < sb.start or sb.end < sa.start:
                continue
            oa, ob = _span_offset(sa, offsets, scratch), _span_offset(sb, offsets, scratch)
            if oa + sa.size <= ob or ob + sb.size <= oa:
                continue
            if _allowed(pairs.get((a, b)), ob - oa) or _allowed(pairs.get((b, a)), oa - ob):
                continue
            raise VerifyError(f"memory plan: {_span_name(sa)} and {_span_name(sb)} are live together "
                              "and overlap where no kernel allows it")
    n_ops = len(graph.ops)
    live, bound = _live(spans, n_ops, _savings(spans, pairs, n_ops))
    placed = sorted((Buffer(s.values, s.size, s.start, s.end, _span_offset(s, offsets, scratch), s.op)
                     for s in spans), key=lambda b: (b.offset, b.start))
    overlaps = tuple((spans[y].values[0], spans[x].values[0], d) for (y, x), d in pairs.items())
    return MemoryPlan(tuple(placed), offsets, arena, live, bound, "from the IR", overlaps, scratch)


def _allowed(ov: Overlap | None, d: int) -> bool:
    """True when an overlap pair allows the operand to start ``d`` bytes above the result."""
    return ov is not None and (d == ov.d if ov.exact else d >= ov.d)


def _span_offset(s: _Span, offsets: dict[Value, int], scratch: dict[Op, int]) -> int:
    return scratch[s.op] if s.op is not None else offsets[s.values[0]]


def _span_name(s: _Span) -> str:
    return f"the scratch of {s.op.label}" if s.op is not None else f"%{s.values[0].name}"


IN_PLACE_TRIALS = 8
"""Depthwise ops near the peak tried one by one when choosing the in-place kernel (each trial is one plan)."""


def plan_choosing_in_place(graph: Graph, *, overlap: bool = True,
                           byte_column_min_gain: float | None = None) -> MemoryPlan:
    """:func:`plan_memory`, switching depthwise ops to MCUNet's in-place kernel (their ``in_place`` attribute) where
    that lowers the arena, and only there: the in-place kernel needs less memory on small maps with many channels
    but is slower than the raster kernels.

    Every op where it would need fewer bytes is switched on; if the arena shrinks, the ops whose raster-kernel
    needs stay clearly below it (95%) are switched back off together, then up to :data:`IN_PLACE_TRIALS` of the
    rest one by one, each kept off when the arena does not grow. Then GEMM convolutions at the peak may switch to
    their int8 column (:func:`_choose_byte_columns`) when that shrinks the arena by at least
    ``byte_column_min_gain`` of it (default :data:`BYTE_COLUMN_MIN_GAIN`). Attributes the graph already carries
    are kept.
    """
    gain = BYTE_COLUMN_MIN_GAIN if byte_column_min_gain is None else byte_column_min_gain
    return _choose_byte_columns(graph, _choose_in_place(graph, overlap), overlap, gain)


BYTE_COLUMN_TRIALS = 8
"""GEMM convolutions near the peak tried one by one with the int8 column (each trial is one plan)."""

BYTE_COLUMN_MIN_GAIN = 0.02
"""The least fraction of the arena the slower int8 column must save to be chosen. Measured on MLPerf IC ResNet-8
(Cortex-M7, -O3): its one candidate saves 288 of 25,728 B (1.1 %) and would cost 0.34 M instructions (2.7 %), so
it is left on the int16 column; 0 takes every saving."""


def _choose_byte_columns(graph: Graph, plan: MemoryPlan, overlap: bool, min_gain: float) -> MemoryPlan:
    """Switch GEMM convolutions running near the peak (within 10% of the arena) to their int8 input bytes (the
    ``byte_column`` attribute: less scratch than the int16 column, slower) one by one, the fullest first, up to
    :data:`BYTE_COLUMN_TRIALS`, each kept only when the arena shrinks by at least ``min_gain`` of it."""
    from compiler.ops.conv import gemm_conv

    index = {op: t for t, op in enumerate(graph.ops)}
    cands = [op for op in graph.ops if op.kind == "nn.conv2d" and gemm_conv(op) and not op.attrs.get("byte_column")
             and scratch_bytes(op) > 0 and plan.live_bytes[index[op]] * 10 >= plan.arena_bytes * 9]
    for op in sorted(cands, key=lambda op: -plan.live_bytes[index[op]])[:BYTE_COLUMN_TRIALS]:
        op.attrs["byte_column"] = True
        trial = plan_memory(graph, overlap=overlap)
        if plan.arena_bytes - trial.arena_bytes >= max(1.0, min_gain * plan.arena_bytes):
            plan = trial
        else:
            op.attrs.pop("byte_column", None)
    return plan


def _choose_in_place(graph: Graph, overlap: bool) -> MemoryPlan:
    from compiler.ops.conv import depthwise_in_place_pays

    distances: DistanceCache = {}
    plan = plan_memory(graph, overlap=overlap, distances=distances)
    cands = [op for op in graph.ops if op.kind == "nn.depthwise_conv2d" and not op.attrs.get("in_place")
             and depthwise_in_place_pays(op)] if overlap else []
    if not cands:
        return plan
    index = {op: t for t, op in enumerate(graph.ops)}
    raster_need = {op: plan.live_bytes[index[op]] for op in cands}

    def switch(ops: Sequence[Op], on: bool) -> None:
        for op in ops:
            if on:
                op.attrs["in_place"] = True
            else:
                op.attrs.pop("in_place", None)

    switch(cands, True)
    best = plan_memory(graph, distances=distances)
    if best.arena_bytes >= plan.arena_bytes:
        switch(cands, False)
        return plan
    far = [op for op in cands if raster_need[op] * 100 < best.arena_bytes * 95]
    if far:
        switch(far, False)
        trial = plan_memory(graph, distances=distances)
        if trial.arena_bytes <= best.arena_bytes:
            best = trial
        else:
            switch(far, True)
    near = sorted((op for op in cands if op.attrs.get("in_place")), key=lambda op: raster_need[op])
    for op in near[:IN_PLACE_TRIALS]:
        switch([op], False)
        trial = plan_memory(graph, distances=distances)
        if trial.arena_bytes <= best.arena_bytes:
            best = trial
        else:
            switch([op], True)
    return best
