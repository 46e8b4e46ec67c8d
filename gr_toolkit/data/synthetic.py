"""A built-in synthetic e-commerce catalog with search logs or user histories, deterministic by seed.

Why: the demo, the tests and a new user's first run need data that needs no download yet behaves
like a shop: items have categories, product types, brands and attributes (colour, size, material)
that their titles are composed from; queries are made from attribute subsets of a product the
searcher wants ("red nike running shoes"), with synonyms and typos, and their traffic is Zipf-shaped
(a few head queries, a long tail); users browse coherently within one or two categories.
It is learnable on purpose: query words predict the relevant items far better than popularity, and
a user's past categories predict the next item (tests check both).

Query kind (``kind="query"``): a click log of ``n_events`` searches over ``n_queries`` distinct
query intents is split by EVENT 80/10/10 (like a real log split by time: head queries recur in every
split, most tail queries occur once), then grouped per split into one example per distinct query
string: targets = the items matching every attribute the query names, weight = its searches in that
split. ``negatives`` hold up to 5 items of the same product type that fail a named attribute (hard
negatives for preference pairs). Protocol ``log-split``; buckets by training traffic. ``split="query"`` instead splits by
distinct query (no query in two splits; protocol ``query-split``).

History kind (``kind="history"``): ``n_users`` users with 1-2 favourite categories and a preferred
brand; leave-one-out (last item test, second-last valid, training examples = every prefix of the
rest), protocol ``leave-one-out``, bucketing ``proxy:target-popularity``.
"""

from __future__ import annotations

import numpy as np

from gr_toolkit.data.types import Catalog, Dataset, Examples

# Category -> product types with synonyms (the first name is used in titles).
_CATEGORIES: dict[str, list[list[str]]] = {
    "shoes": [["running shoes", "sneakers", "trainers"], ["boots", "booties"], ["sandals", "flip flops"],
              ["hiking shoes", "trail shoes"], ["loafers", "slip ons"]],
    "clothing": [["t-shirt", "tee", "tshirt"], ["hoodie", "sweatshirt"], ["jeans", "denim pants"],
                 ["jacket", "coat"], ["shorts"], ["dress"]],
    "kitchen": [["frying pan", "skillet"], ["saucepan", "pot"], ["chef knife", "kitchen knife"],
                ["cutting board", "chopping board"], ["coffee mug", "mug", "cup"]],
    "furniture": [["office chair", "desk chair"], ["bookshelf", "bookcase"], ["coffee table"],
                  ["sofa", "couch"], ["bed frame"]],
    "electronics": [["headphones", "earphones"], ["bluetooth speaker", "wireless speaker"],
                    ["phone case", "cell phone cover"], ["usb charger", "charging cable"], ["smart watch"]],
    "sports": [["yoga mat", "exercise mat"], ["dumbbells", "weights"], ["water bottle"],
               ["tennis racket", "racquet"], ["backpack", "rucksack"]],
    "garden": [["garden hose", "hose"], ["planter", "flower pot"], ["lawn chair", "patio chair"],
               ["pruning shears", "pruners", "secateurs"]],
    "toys": [["building blocks", "bricks"], ["plush toy", "stuffed animal"], ["puzzle", "jigsaw"],
             ["toy car", "rc car"]],
    "beauty": [["face cream", "moisturizer"], ["shampoo"], ["lipstick"], ["hair dryer", "blow dryer"]],
    "tools": [["cordless drill", "power drill"], ["hammer"], ["screwdriver set"], ["tape measure"],
              ["work gloves"]],
}
_BRAND_STEMS = ["nor", "vel", "kas", "tri", "zen", "lum", "arc", "bri", "cor", "dax", "eko", "fal", "gar",
                "hel", "iro", "jun", "kel", "mar", "nov", "orb", "pax", "qui", "ros", "sol", "tem", "ulm",
                "vor", "wex", "yar", "zol"]
_BRAND_ENDS = ["ex", "ia", "on", "ix", "ar", "co", "ra", "ly", "um", "en"]
_COLORS = [["black"], ["white"], ["red"], ["blue", "navy"], ["green"], ["grey", "gray"], ["pink"], ["brown", "tan"],
           ["yellow"], ["silver"]]
_MATERIALS = [["leather"], ["cotton"], ["steel", "stainless"], ["wood", "wooden"], ["plastic"], ["bamboo"],
              ["wool"], ["glass"]]
_SIZES = [["small", "s"], ["medium", "m"], ["large", "l"], ["xl", "extra large"], ["mini"], ["king size", "king"]]
_ADJ = ["classic", "premium", "lightweight", "pro", "compact", "deluxe", "essential", "ultra", "eco", "sport"]

ATTRIBUTES = ("category", "type", "brand", "color", "material", "size")


def make_synthetic(
    seed: int = 0,
    n_items: int = 2000,
    n_queries: int = 6000,
    n_events: int = 40000,
    n_users: int = 3000,
    kind: str = "query",
    split: str = "log",
    zipf_a: float = 1.05,
    typo_rate: float = 0.05,
    synonym_rate: float = 0.3,
    max_history: int = 20,
    name: str | None = None,
) -> Dataset:
    """Build the synthetic dataset (no downloads, identical output for identical arguments).

    ``n_queries`` distinct query intents receive ``n_events`` searches with Zipf(``zipf_a``)
    shares. Defaults give about 4k distinct training queries over 2,000 items.
    """
    if kind not in ("query", "history"):
        raise ValueError(f"kind must be 'query' or 'history', got {kind!r}")
    if n_items < 20:
        raise ValueError(f"n_items must be >= 20, got {n_items}")
    rng = np.random.default_rng(seed)
    catalog, attrs = _make_catalog(rng, n_items)
    if kind == "query":
        train, valid, test, notes = _make_search(rng, catalog, attrs, n_queries, n_events, zipf_a, typo_rate,
                                                 synonym_rate, split)
        protocol = "log-split" if split == "log" else "query-split"
        return Dataset(name or "synthetic", catalog, train, valid, test, protocol=protocol, bucketing="traffic",
                       notes=notes)
    train, valid, test, notes = _make_histories(rng, catalog, attrs, n_users, zipf_a, max_history)
    return Dataset(name or "synthetic-seq", catalog, train, valid, test, protocol="leave-one-out",
                   bucketing="proxy:target-popularity", notes=notes)


# ---------------------------------------------------------------------------------------------- catalog
def _make_catalog(rng: np.random.Generator, n_items: int) -> tuple[Catalog, dict[str, np.ndarray]]:
    cats = list(_CATEGORIES)
    types = [(c, t) for c in cats for t in range(len(_CATEGORIES[c]))]
    type_cat = np.array([cats.index(c) for c, _ in types])
    # Each category has its own 6 brands (brand names unique across the catalog).
    brand_names = [s + e for s in _BRAND_STEMS for e in _BRAND_ENDS]
    perm = rng.permutation(len(brand_names))
    n_brands_per_cat = 6
    cat_brands = perm[: len(cats) * n_brands_per_cat].reshape(len(cats), n_brands_per_cat)

    item_type = rng.integers(0, len(types), n_items)
    item_cat = type_cat[item_type]
    item_brand = cat_brands[item_cat, rng.integers(0, n_brands_per_cat, n_items)]
    item_color = rng.integers(0, len(_COLORS), n_items)
    item_material = rng.integers(0, len(_MATERIALS), n_items)
    item_size = rng.integers(0, len(_SIZES), n_items)
    item_adj = rng.integers(0, len(_ADJ), n_items)
    order = rng.integers(0, 3, n_items)  # title word order variant

    titles, ids = [], []
    for i in range(n_items):
        brand = brand_names[item_brand[i]].capitalize()
        tname = _CATEGORIES[cats[item_cat[i]]][types[item_type[i]][1]][0]
        color, material, size = _COLORS[item_color[i]][0], _MATERIALS[item_material[i]][0], _SIZES[item_size[i]][0]
        adj = _ADJ[item_adj[i]]
        model = f"{brand[:2].upper()}-{100 + i}"
        if order[i] == 0:
            title = f"{brand} {adj} {color} {material} {tname}, {size} {model}"
        elif order[i] == 1:
            title = f"{brand} {tname} - {color}, {material}, size {size} ({model})"
        else:
            title = f"{adj.capitalize()} {material} {tname} by {brand} in {color} {size} {model}"
        titles.append(title)
        ids.append(f"SYN{i:06d}")
    attrs = {"category": item_cat, "type": item_type, "brand": item_brand, "color": item_color,
             "material": item_material, "size": item_size}
    catalog = Catalog(
        name="synthetic",
        ids=ids,
        fields={"title": titles},
        attributes={
            "category": [cats[c] for c in item_cat],
            "type": [_CATEGORIES[cats[c]][types[t][1]][0] for c, t in zip(item_cat, item_type, strict=True)],
            "brand": [brand_names[b] for b in item_brand],
            "color": [_COLORS[c][0] for c in item_color],
            "material": [_MATERIALS[m][0] for m in item_material],
            "size": [_SIZES[s][0] for s in item_size],
        },
    )
    # Keep the name tables for query generation.
    attrs["_brand_names"] = np.array(brand_names)
    return catalog, attrs


# ---------------------------------------------------------------------------------------------- search
def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    j = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(0, 3))
    if op == 0:  # drop a character
        return word[:j] + word[j + 1:]
    if op == 1:  # swap two neighbours
        return word[:j] + word[j + 1] + word[j] + word[j + 2:]
    return word[:j] + word[j] + word[j:]  # double a character


def _make_search(rng, catalog, attrs, n_queries, n_events, zipf_a, typo_rate, synonym_rate, split):
    n_items = len(catalog)
    cats = list(_CATEGORIES)
    types = [(c, t) for c in cats for t in range(len(_CATEGORIES[c]))]
    brand_names = [str(b) for b in attrs["_brand_names"]]
    # Items differ in intrinsic popularity (Zipf over a random item order), so popularity is a real
    # but weak baseline.
    item_pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    item_pop = item_pop[rng.permutation(n_items)]
    item_pop /= item_pop.sum()

    # An intent = (seed item, which attributes the query names). Type is always named; then 1-3
    # of brand / colour / material / size. Keep intents whose string is new.
    optional = ["brand", "color", "material", "size"]
    seen: dict[str, int] = {}
    intents_items: list[np.ndarray] = []
    intents_negs: list[np.ndarray] = []
    query_strings: list[str] = []
    # Draw candidate intents in bulk (per-draw sampling with p= is slow); duplicates are skipped.
    n_draw = n_queries * 20
    seeds = rng.choice(n_items, size=n_draw, p=item_pop)
    n_named = rng.choice([1, 2, 3], size=n_draw, p=[0.45, 0.4, 0.15])
    named_order = rng.random((n_draw, len(optional))).argsort(axis=1)
    type_items = {int(t): np.flatnonzero(attrs["type"] == t) for t in np.unique(attrs["type"])}
    for draw in range(n_draw):
        if len(query_strings) >= n_queries:
            break
        i = int(seeds[draw])
        named = [optional[j] for j in named_order[draw, : n_named[draw]]]
        # Relevant set: every item of the seed's type that agrees on all named attributes.
        same_type = type_items[int(attrs["type"][i])]
        ok = np.ones(len(same_type), dtype=bool)
        for a in named:
            ok &= attrs[a][same_type] == attrs[a][i]
        match_items, near = same_type[ok], same_type[~ok]
        # Words: synonyms where available.
        c, t = types[int(attrs["type"][i])]
        syns = _CATEGORIES[c][t]
        type_word = syns[0] if (len(syns) == 1 or rng.random() > synonym_rate) else syns[int(rng.integers(1, len(syns)))]
        parts = {"type": type_word}
        for a in named:
            if a == "brand":
                parts[a] = brand_names[attrs["brand"][i]]
            else:
                table = {"color": _COLORS, "material": _MATERIALS, "size": _SIZES}[a]
                options = table[int(attrs[a][i])]
                use_syn = len(options) > 1 and rng.random() < synonym_rate
                parts[a] = options[1] if use_syn else options[0]
        # Word order: modifiers first (brand usually leads), the product type last.
        mods = [parts[a] for a in ("brand", "color", "material", "size") if a in parts]
        if rng.random() < 0.3:
            mods = list(rng.permutation(mods))
        words = " ".join([*mods, parts["type"]]).split()
        words = [_typo(w, rng) if rng.random() < typo_rate else w for w in words]
        q = " ".join(words)
        if q in seen:
            continue
        seen[q] = len(query_strings)
        query_strings.append(q)
        intents_items.append(match_items.astype(np.int64))
        # Hard negatives: the same product type, but wrong on a named attribute (for preference pairs).
        intents_negs.append(np.sort(rng.choice(near, size=min(5, len(near)), replace=False)) if len(near)
                            else np.zeros(0, dtype=np.int64))
    nq = len(query_strings)
    # Zipf traffic over intents in random order (head queries are not just the shortest ones).
    share = 1.0 / np.arange(1, nq + 1) ** zipf_a
    share = share[rng.permutation(nq)]
    share /= share.sum()
    events = rng.choice(nq, size=n_events, p=share)
    notes = [f"synthetic search log: {nq} distinct query intents, {n_events} searches (Zipf a={zipf_a}), "
             f"typo rate {typo_rate}, synonym rate {synonym_rate}"]
    if split == "log":
        part = rng.random(n_events)
        groups = [events[part < 0.8], events[(part >= 0.8) & (part < 0.9)], events[part >= 0.9]]
    elif split == "query":
        from gr_toolkit.data.splits import query_level_split

        which = query_level_split(np.arange(nq).astype(str), seed=int(rng.integers(0, 2**31)))
        qsplit = which[events]
        groups = [events[qsplit == s] for s in ("train", "valid", "test")]
    else:
        raise ValueError(f"split must be 'log' or 'query', got {split!r}")
    out = []
    for ev in groups:
        uq, cnt = np.unique(ev, return_counts=True)
        out.append(Examples(
            kind="query",
            targets=[intents_items[q] for q in uq],
            queries=[query_strings[q] for q in uq],
            weights=cnt.astype(np.float64),
            negatives=[intents_negs[q] for q in uq],
            keys=[query_strings[q] for q in uq],
        ))
    return out[0], out[1], out[2], notes


# ---------------------------------------------------------------------------------------------- histories
def _make_histories(rng, catalog, attrs, n_users, zipf_a, max_history):
    n_items = len(catalog)
    n_cats = int(attrs["category"].max()) + 1
    item_pop = 1.0 / np.arange(1, n_items + 1) ** 0.7
    item_pop = item_pop[rng.permutation(n_items)]

    # Sampling pools with popularity-proportional cumulative weights: all items, per category, and
    # per (category, brand) for brand loyalty. A draw is one searchsorted.
    def pool(items):
        return items, np.cumsum(item_pop[items])

    everything = pool(np.arange(n_items))
    by_cat = [pool(np.flatnonzero(attrs["category"] == c)) for c in range(n_cats)]
    by_brand = {int(b): pool(np.flatnonzero(attrs["brand"] == b)) for b in np.unique(attrs["brand"])}
    lengths = np.minimum(4 + rng.geometric(0.12, n_users), 50)
    histories, keys = [], []
    for u in range(n_users):
        favs = rng.choice(n_cats, size=int(rng.integers(1, 3)), replace=False)
        n = int(lengths[u])
        r = rng.random((n, 5))
        seq: list[int] = []
        for step in range(n):
            if r[step, 0] < 0.1:  # occasional off-profile purchase
                items, cdf = everything
            else:
                items, cdf = by_cat[int(favs[int(r[step, 1] * len(favs))])]
                # Brand loyalty: half the time, stay with the brand of the previous item (same category).
                if seq and r[step, 2] < 0.5:
                    b = int(attrs["brand"][seq[-1]])
                    if attrs["category"][seq[-1]] == attrs["category"][items[0]] and len(by_brand[b][0]) > 1:
                        items, cdf = by_brand[b]
            it = int(items[np.searchsorted(cdf, r[step, 3] * cdf[-1], side="right").clip(max=len(items) - 1)])
            if seq and it == seq[-1]:  # no immediate repeats: one redraw from the whole catalog
                it = int(everything[0][np.searchsorted(everything[1], r[step, 4] * everything[1][-1], side="right")
                                      .clip(max=n_items - 1)])
            seq.append(it)
        histories.append(np.array(seq, dtype=np.int64))
        keys.append(f"user{u:06d}")
    from gr_toolkit.data.splits import leave_one_out

    train, valid, test = leave_one_out(histories, keys, max_history=max_history)
    notes = [f"synthetic user histories: {n_users} users, mean length {lengths.mean():.1f}; "
             f"history truncated to the last {max_history} items"]
    return train, valid, test, notes
