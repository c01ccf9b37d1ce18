"""Search strategies as ask/tell objects: one driver loop (``AskTell`` / ``run_search``) runs them all.

A strategy proposes architectures inside its domain (a ``SubSupernet``: a leaf of the split tree, or the
tree's root for a search over all leaves at once) with ``ask()`` and learns their scores with
``tell(arch, result)``; it only ever reads ``result.acc`` (maximised) and ``result.loss`` (tie-break,
lower first). All randomness comes from one ``torch.Generator`` seeded from ``seed``: the sequence of
asks is a function of the seed and of the results told, so a search is replayed exactly by telling the
recorded results again (how ``AskTell`` resumes an interrupted search).

- :class:`Evolution`: NAS-LID's evolutionary search (population 50, keep the top 10, 20 children by
  crossover and 20 by mutation with per-edge probability 0.1, the rest random, deduplicated).
- :class:`RegularizedEvolution`: aging evolution (Real et al. 2019): population, sample size, cycles.
- :class:`RandomSearch`: uniform sampling (without repetition by default).
- :class:`PerLeaf`: one strategy per leaf of a split tree, run leaf after leaf.

``ask()`` returns None when the strategy has nothing to propose now: it is finished (``finished``), or
it waits for the results of candidates already asked (a generation must be complete before the next one
is bred). A result may also be told for an architecture the strategy did not ask (an outside optimiser's
proposal, a warm start): it joins the evaluated pool (Evolution) or the population (RegularizedEvolution).
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lidsplit.common.seeds import derive_seed
from lidsplit.search.evaluator import Result
from lidsplit.split.tree import SplitTree
from lidsplit.supernet import Arch, SearchSpace, SubSupernet

__all__ = ["Strategy", "Evolution", "RegularizedEvolution", "RandomSearch", "PerLeaf", "rank_key", "domain_of",
           "STRATEGIES", "make_strategy"]

# Enumerate the not-yet-seen architectures of a domain (to finish a deduplicated draw) only below this size.
_ENUMERATE_LIMIT = 1 << 16


def rank_key(result: Result) -> tuple[float, float]:
    """Sort key, larger is better: accuracy, then lower loss. NaN ranks below every number."""
    acc = -math.inf if math.isnan(result.acc) else float(result.acc)
    loss = math.inf if math.isnan(result.loss) else float(result.loss)
    return acc, -loss


def domain_of(domain: SubSupernet | SearchSpace | SplitTree) -> SubSupernet:
    """A strategy's domain from a sub-supernet, a whole space, or a split tree (its root)."""
    if isinstance(domain, SubSupernet):
        return domain
    if isinstance(domain, SearchSpace):
        return SubSupernet.full(domain)
    if isinstance(domain, SplitTree):
        return domain.root.sub
    raise TypeError(f"search domain must be a SubSupernet, SearchSpace or SplitTree, got {type(domain).__name__}")


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return v


def _check_prob(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
    return float(v)


class Strategy(ABC):
    """Base of the ask/tell strategies (see the module doc)."""

    def __init__(self, domain: SubSupernet | SearchSpace | SplitTree, seed: int = 0) -> None:
        self.domain: SubSupernet = domain_of(domain)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.generator = torch.Generator().manual_seed(derive_seed("lidsplit.search", type(self).__name__, seed))
        self._masks = [sorted(m) for m in self.domain.masks]
        # asked, not yet told -> how each ask made it (a list: an architecture may be asked again while out)
        self._meta: dict[Arch, list[dict[str, Any]]] = {}
        self.asked = 0
        self.told = 0

    # ---- the interface ----------------------------------------------------------------------------
    @abstractmethod
    def ask(self) -> Arch | None:
        """The next architecture to evaluate, or None (finished, or waiting for results)."""

    def tell(self, arch: Sequence[int], result: Result) -> None:
        """Report ``result`` for ``arch`` (asked by this strategy or not; see the module doc)."""
        a = self.domain.space.validate_arch(arch)
        if not isinstance(result, Result):
            raise TypeError(f"tell: result must be a search Result, got {type(result).__name__}")
        asked = a in self._meta
        if not asked and not self.domain.contains(a):
            raise ValueError(f"tell: architecture {a} lies outside this strategy's domain {self.domain}")
        if asked:
            out = self._meta[a]
            out.pop(0)
            if not out:
                del self._meta[a]
        self.told += 1
        self._tell(a, result, asked)

    @abstractmethod
    def _tell(self, arch: Arch, result: Result, asked: bool) -> None: ...

    @property
    @abstractmethod
    def finished(self) -> bool:
        """True once the strategy will propose nothing more."""

    @property
    def budget(self) -> int | None:
        """How many asks the whole search will make, when known in advance (for progress bars)."""
        return None

    @property
    def pending(self) -> tuple[Arch, ...]:
        """Architectures asked and not yet told (one entry per outstanding ask)."""
        return tuple(a for a, ms in self._meta.items() for _ in ms)

    def meta(self, arch: Sequence[int]) -> dict[str, Any]:
        """How a pending architecture was made (e.g. ``{"generation": 3, "origin": "crossover"}``); for an
        architecture asked several times, its oldest outstanding ask."""
        ms = self._meta.get(tuple(arch))
        return dict(ms[0]) if ms else {}

    def config(self) -> dict[str, Any]:
        """JSON identity of the strategy (class, parameters, seed, domain): a history is only resumed by a
        strategy with the same config."""
        return {"strategy": type(self).__name__, "seed": self.seed, "domain": [list(m) for m in self._masks],
                **self._params()}

    def _params(self) -> dict[str, Any]:
        return {}

    # ---- helpers for subclasses -------------------------------------------------------------------
    def _issue(self, arch: Arch, **meta: Any) -> Arch:
        self._meta.setdefault(arch, []).append(meta)
        self.asked += 1
        return arch

    def _rand(self, n: int) -> list[float]:
        return torch.rand(n, generator=self.generator, dtype=torch.float64).tolist()

    def _randint(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator))

    def _random_arch(self) -> Arch:
        return self.domain.sample(self.generator)

    def _random_unseen(self, seen: set[Arch], tries: int) -> Arch | None:
        """A uniform draw from the domain that is not in ``seen`` (None when every architecture is seen).

        ``tries`` rejection draws first; a small domain is then enumerated so that its last unseen
        architectures are still found."""
        for _ in range(tries):
            a = self._random_arch()
            if a not in seen:
                return a
        if self.domain.size <= _ENUMERATE_LIMIT:
            rest = [a for a in self.domain.archs() if a not in seen]
            if rest:
                return rest[self._randint(len(rest))]
        return None

    def _mutate(self, parent: Arch, prob: float) -> Arch:
        """NAS-LID mutation: each edge (with another op enabled) changes, with probability ``prob``, to a
        different op drawn uniformly among its other enabled ops."""
        child = list(parent)
        flips = self._rand(len(parent))
        for e, (u, mask) in enumerate(zip(flips, self._masks)):
            if u < prob and len(mask) > 1:
                others = [o for o in mask if o != parent[e]]
                child[e] = others[self._randint(len(others))]
        return tuple(child)

    def _mutate_one_edge(self, parent: Arch) -> Arch:
        """Real et al.'s mutation: one edge (among those with a choice) changes to a different op."""
        edges = [e for e, m in enumerate(self._masks) if len(m) > 1]
        if not edges:
            return parent
        e = edges[self._randint(len(edges))]
        others = [o for o in self._masks[e] if o != parent[e]]
        child = list(parent)
        child[e] = others[self._randint(len(others))]
        return tuple(child)

    def _crossover(self, p1: Arch, p2: Arch, prob: float) -> Arch:
        """NAS-LID crossover: parent 1's op on each edge, replaced by parent 2's with probability ``prob``."""
        take = self._rand(len(p1))
        return tuple(b if u < prob else a for a, b, u in zip(p1, p2, take))


class Evolution(Strategy):
    """NAS-LID's evolutionary search (generational, elitist, deduplicated).

    Generation 0: ``population`` distinct random architectures. Each later generation keeps the top
    ``keep`` of everything evaluated so far (not re-evaluated) and breeds ``n_crossover`` children by
    crossover (two distinct parents drawn uniformly from the kept ones; parent 2's op taken per edge with
    probability ``crossover_prob``), ``n_mutation`` children by mutation (a kept parent, each edge changed
    to a different op with probability ``mutation_prob``) and fills the rest of the population with random
    architectures. Children are deduplicated against each other and against everything evaluated before;
    a crossover or mutation slot that finds no new child in ``max_tries`` draws is filled at random.
    The search ends after ``generations`` generations, or when the domain has nothing new left.

    Ranking: validation accuracy, then lower loss, then first evaluated. NAS-LID ran 100 generations
    (its paper's figure, 50); the default here is small for CPU runs.
    """

    def __init__(
        self,
        domain: SubSupernet | SearchSpace | SplitTree,
        *,
        population: int = 50,
        keep: int = 10,
        n_crossover: int = 20,
        n_mutation: int = 20,
        crossover_prob: float = 0.1,
        mutation_prob: float = 0.1,
        generations: int = 10,
        max_tries: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__(domain, seed)
        self.population = _check_int("population", population, 1)
        self.keep = _check_int("keep", keep, 1)
        self.n_crossover = _check_int("n_crossover", n_crossover, 0)
        self.n_mutation = _check_int("n_mutation", n_mutation, 0)
        if keep + n_crossover + n_mutation > population:
            raise ValueError(f"keep + n_crossover + n_mutation = {keep + n_crossover + n_mutation} exceeds the "
                             f"population {population}")
        self.crossover_prob = _check_prob("crossover_prob", crossover_prob)
        self.mutation_prob = _check_prob("mutation_prob", mutation_prob)
        self.generations = _check_int("generations", generations, 1)
        self.max_tries = _check_int("max_tries", max_tries, 1)
        self.generation = 0  # the generation being asked / evaluated
        self.seen: set[Arch] = set()  # every architecture asked or told: never proposed again
        self.scores: dict[Arch, tuple[tuple[float, float], int]] = {}  # arch -> (rank key, order told)
        self.kept: list[Arch] = []  # the elite the current generation was bred from
        self.log: list[dict[str, Any]] = []  # per generation: counts by origin and the kept parents
        self._queue: deque[tuple[Arch, dict[str, Any]]] = deque()
        self._exhausted = False
        self._breed()

    def _params(self) -> dict[str, Any]:
        return {"population": self.population, "keep": self.keep, "n_crossover": self.n_crossover,
                "n_mutation": self.n_mutation, "crossover_prob": self.crossover_prob,
                "mutation_prob": self.mutation_prob, "generations": self.generations, "max_tries": self.max_tries}

    @property
    def budget(self) -> int:
        new = self.population - self.keep
        return min(self.population + (self.generations - 1) * new, self.domain.size)

    def top(self, k: int | None = None) -> list[Arch]:
        """The best ``k`` architectures evaluated so far (all when None), best first."""
        order = sorted(self.scores, key=lambda a: (-self.scores[a][0][0], -self.scores[a][0][1], self.scores[a][1]))
        return order if k is None else order[:k]

    def _new(self, arch: Arch, origin: str, **extra: Any) -> None:
        self.seen.add(arch)
        self._queue.append((arch, {"generation": self.generation, "origin": origin, **extra}))

    def _breed(self) -> None:
        """Fill the queue with the candidates of ``self.generation``."""
        counts = {"random": 0, "crossover": 0, "mutation": 0}
        if self.generation == 0:
            self.kept = []
            slots = self.population
        else:
            self.kept = self.top(self.keep)
            slots = self.population - len(self.kept)
            parents = self.kept
            for _ in range(self.n_crossover if len(parents) >= 2 else 0):
                for _ in range(self.max_tries):
                    i = self._randint(len(parents))
                    j = self._randint(len(parents) - 1)
                    j += j >= i  # two distinct parents
                    child = self._crossover(parents[i], parents[j], self.crossover_prob)
                    if child not in self.seen:
                        self._new(child, "crossover", parents=[list(parents[i]), list(parents[j])])
                        counts["crossover"] += 1
                        break
            for _ in range(self.n_mutation):
                for _ in range(self.max_tries):
                    p = parents[self._randint(len(parents))]
                    child = self._mutate(p, self.mutation_prob)
                    if child not in self.seen:
                        self._new(child, "mutation", parents=[list(p)])
                        counts["mutation"] += 1
                        break
        while counts["random"] + counts["crossover"] + counts["mutation"] < slots:
            child = self._random_unseen(self.seen, self.max_tries)
            if child is None:
                break
            self._new(child, "random")
            counts["random"] += 1
        if not self._queue:
            self._exhausted = True
            return
        self.log.append({"generation": self.generation, **counts, "kept": [list(a) for a in self.kept]})

    def ask(self) -> Arch | None:
        if not self._queue:
            return None  # finished, or this generation's results are still out
        arch, meta = self._queue.popleft()
        return self._issue(arch, **meta)

    def _tell(self, arch: Arch, result: Result, asked: bool) -> None:
        self.seen.add(arch)
        if arch not in self.scores:
            self.scores[arch] = (rank_key(result), len(self.scores))
        if asked and not self._queue and not self._meta and not self._exhausted:
            self.generation += 1  # the generation is complete: breed the next one
            if self.generation < self.generations:
                self._breed()

    @property
    def finished(self) -> bool:
        return not self._queue and not self._meta and (self._exhausted or self.generation >= self.generations)


class RegularizedEvolution(Strategy):
    """Aging evolution (Real et al. 2019, "Regularized evolution for image classifier architecture search").

    ``population`` random architectures are evaluated first; then for ``cycles`` cycles: ``sample_size``
    members are drawn from the population without replacement, the best of them (accuracy, then loss) is
    mutated (one edge changed to a different op), the child is evaluated and joins the population, and
    the OLDEST member is removed, whatever its accuracy. Total asks: ``population + cycles``.
    Repeated architectures are allowed (as in the paper); a driver may reuse a recorded result for them.
    """

    def __init__(
        self,
        domain: SubSupernet | SearchSpace | SplitTree,
        *,
        population: int = 20,
        sample_size: int = 5,
        cycles: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(domain, seed)
        self.population_size = _check_int("population", population, 1)
        self.sample_size = _check_int("sample_size", sample_size, 1)
        if sample_size > population:
            raise ValueError(f"sample_size ({sample_size}) must not exceed the population ({population})")
        self.cycles = _check_int("cycles", cycles, 0)
        self.population: deque[tuple[Arch, tuple[float, float]]] = deque()  # oldest first
        self.history: list[tuple[Arch, Result]] = []  # every result told, in order
        self._init_asked = 0
        self._cycles_asked = 0
        self._told_asked = 0

    def _params(self) -> dict[str, Any]:
        return {"population": self.population_size, "sample_size": self.sample_size, "cycles": self.cycles}

    @property
    def budget(self) -> int:
        return self.population_size + self.cycles

    def ask(self) -> Arch | None:
        if self._init_asked < self.population_size:
            self._init_asked += 1
            return self._issue(self._random_arch(), origin="random", cycle=None)
        if self._cycles_asked >= self.cycles or len(self.population) < self.population_size:
            return None  # finished, or the initial population is not evaluated yet
        members = list(self.population)
        idx = torch.randperm(len(members), generator=self.generator)[: self.sample_size].tolist()
        best = max(idx, key=lambda i: (members[i][1], -i))  # ties: the oldest of the sample
        parent = members[best][0]
        child = self._mutate_one_edge(parent)
        self._cycles_asked += 1
        return self._issue(child, origin="mutation", cycle=self._cycles_asked - 1, parents=[list(parent)])

    def _tell(self, arch: Arch, result: Result, asked: bool) -> None:
        self.history.append((arch, result))
        self._told_asked += asked
        self.population.append((arch, rank_key(result)))
        # the initial population grows to its size; afterwards every newcomer ages out the oldest member
        while len(self.population) > self.population_size:
            self.population.popleft()

    @property
    def finished(self) -> bool:
        return self._told_asked >= self.population_size + self.cycles and not self._meta


class RandomSearch(Strategy):
    """``samples`` architectures drawn uniformly from the domain; without repetition unless ``unique`` is
    False (then at most ``samples`` draws, possibly repeated; with it, at most the domain's size)."""

    def __init__(
        self, domain: SubSupernet | SearchSpace | SplitTree, *, samples: int = 100, unique: bool = True,
        max_tries: int = 50, seed: int = 0,
    ) -> None:
        super().__init__(domain, seed)
        self.samples = _check_int("samples", samples, 0)
        self.unique = bool(unique)
        self.max_tries = _check_int("max_tries", max_tries, 1)
        self.seen: set[Arch] = set()
        self._stop = False

    def _params(self) -> dict[str, Any]:
        return {"samples": self.samples, "unique": self.unique, "max_tries": self.max_tries}

    @property
    def budget(self) -> int:
        return min(self.samples, self.domain.size) if self.unique else self.samples

    def ask(self) -> Arch | None:
        if self._stop or self.asked >= self.samples:
            return None
        if not self.unique:
            return self._issue(self._random_arch(), origin="random")
        a = self._random_unseen(self.seen, self.max_tries)
        if a is None:
            self._stop = True
            return None
        self.seen.add(a)
        return self._issue(a, origin="random")

    def _tell(self, arch: Arch, result: Result, asked: bool) -> None:
        self.seen.add(arch)

    @property
    def finished(self) -> bool:
        return not self._meta and (self._stop or self.asked >= self.samples
                                   or (self.unique and len(self.seen) >= self.domain.size))


#: The strategies by name (the pipeline's ``search.strategy`` choices). To add one: subclass
#: :class:`Strategy` with keyword-only parameters and add it here; a config key of the same name as a
#: parameter reaches it.
STRATEGIES: dict[str, type[Strategy]] = {"evolution": Evolution, "aging": RegularizedEvolution, "random": RandomSearch}


def make_strategy(name: str, domain: SubSupernet | SearchSpace | SplitTree, *, seed: int = 0,
                  **params: Any) -> Strategy:
    """The strategy ``name`` of :data:`STRATEGIES` on ``domain``, given those of ``params`` its constructor
    takes (a config section holds every strategy's keys; the others are ignored)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown search strategy {name!r}; choose from {sorted(STRATEGIES)}") from None
    accepted = inspect.signature(cls.__init__).parameters
    return cls(domain, seed=seed, **{k: v for k, v in params.items() if k in accepted and k != "seed"})


class PerLeaf(Strategy):
    """One strategy per leaf of a split tree, each confined to its leaf, run one leaf after another (leaves
    in ``tree.leaf_ids()`` order). ``factory(sub, seed)`` builds the strategy of a leaf from the leaf's
    sub-supernet and a seed derived from ``seed`` and the leaf id. A told architecture goes to the
    strategy of the leaf that contains it."""

    def __init__(self, tree: SplitTree, factory: Callable[[SubSupernet, int], Strategy], *, seed: int = 0) -> None:
        if not isinstance(tree, SplitTree):
            raise TypeError(f"PerLeaf: tree must be a SplitTree, got {type(tree).__name__}")
        super().__init__(tree, seed)
        self.tree = tree
        self.strategies: dict[int, Strategy] = {}
        for leaf in tree.leaves():
            s = factory(leaf.sub, derive_seed("lidsplit.search.PerLeaf", seed, leaf.id) & 0x7FFFFFFF)
            if not isinstance(s, Strategy):
                raise TypeError(f"PerLeaf: factory returned a {type(s).__name__} for leaf {leaf.id}, not a Strategy")
            if s.domain != leaf.sub:
                raise ValueError(f"PerLeaf: the strategy of leaf {leaf.id} searches {s.domain}, not the leaf {leaf.sub}")
            self.strategies[leaf.id] = s
        self._order = list(self.strategies)
        self._current = 0

    def _params(self) -> dict[str, Any]:
        return {"leaves": {str(k): s.config() for k, s in self.strategies.items()}}

    @property
    def budget(self) -> int | None:
        b = [s.budget for s in self.strategies.values()]
        return None if any(x is None for x in b) else sum(b)  # type: ignore[misc]

    @property
    def leaf(self) -> int | None:
        """The leaf being searched now (None when all are finished)."""
        return self._order[self._current] if self._current < len(self._order) else None

    def ask(self) -> Arch | None:
        while self._current < len(self._order):
            leaf = self._order[self._current]
            s = self.strategies[leaf]
            a = s.ask()
            if a is not None:
                return self._issue(a, **{**s.meta(a), "leaf": leaf})
            if not s.finished:
                return None  # waiting for this leaf's results
            self._current += 1
        return None

    def _tell(self, arch: Arch, result: Result, asked: bool) -> None:
        self.strategies[self.tree.route(arch)].tell(arch, result)

    @property
    def finished(self) -> bool:
        return all(s.finished for s in self.strategies.values())

