"""1:N gallery: exact against brute force, owner-aware margin, live updates."""

from __future__ import annotations

import numpy as np

from gatectl.vision.face.gallery import Gallery


def unit(rng, n, dim=128):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_match_equals_brute_force_on_10k_residents():
    rng = np.random.default_rng(7)
    g = Gallery(128)
    vecs = unit(rng, 10_000)
    g.replace_all(((("resident", i // 2), vecs[i]) for i in range(10_000)))  # 2 templates each
    assert len(g) == 10_000 and g.owner_count == 5_000
    for qi in rng.choice(10_000, 20, replace=False):
        q = vecs[qi] + 0.3 * unit(rng, 1)[0]
        q /= np.linalg.norm(q)
        m = g.match(q)
        scores = vecs @ q
        owners = np.arange(10_000) // 2
        best = int(np.argmax(scores))
        assert m.owner == ("resident", int(owners[best]))
        assert np.isclose(m.score, scores[best], atol=1e-5)
        other = scores[owners != owners[best]].max()
        assert np.isclose(m.runner_up, other, atol=1e-5)


def test_runner_up_ignores_the_best_persons_other_templates():
    g = Gallery(2)
    g.replace_all([(("resident", 1), np.array([1.0, 0.0])), (("resident", 1), np.array([0.99, 0.14])),
                   (("resident", 2), np.array([0.0, 1.0]))])
    m = g.match(np.array([1.0, 0.0], np.float32))
    assert m.owner == ("resident", 1)
    assert np.isclose(m.runner_up, 0.0, atol=1e-6)  # not resident 1's second template (0.99)
    assert m.margin > 0.99


def test_add_and_remove_without_rebuild_from_store():
    g = Gallery(2)
    assert g.match(np.array([1.0, 0.0], np.float32)).owner is None
    g.add(("resident", 5), np.array([[1.0, 0.0]]))
    g.add(("watchlist", 1), np.array([[0.0, 1.0]]))
    assert g.match(np.array([0.1, 1.0], np.float32) / np.hypot(0.1, 1)).owner == ("watchlist", 1)
    g.remove(("watchlist", 1))
    m = g.match(np.array([0.1, 1.0], np.float32) / np.hypot(0.1, 1))
    assert m.owner == ("resident", 5) and m.runner_up == -1.0
    g.remove(("resident", 5))
    assert len(g) == 0 and g.match(np.array([1.0, 0.0], np.float32)).owner is None


def test_large_gallery_split_product_is_exact():
    """Above SPLIT_ROWS the product runs in two halves on two threads: same answer."""
    from gatectl.vision.face.gallery import SPLIT_ROWS

    rng = np.random.default_rng(3)
    n = SPLIT_ROWS + 1001
    vecs = unit(rng, n)
    g = Gallery(128)
    g.replace_all((("resident", i), vecs[i]) for i in range(n))
    for qi in (0, n // 2 - 1, n // 2, n - 1):  # both halves and the seam
        q = vecs[qi] + 0.2 * unit(rng, 1)[0]
        q /= np.linalg.norm(q)
        m = g.match(q)
        scores = vecs @ q
        assert m.owner == ("resident", int(np.argmax(scores)))
        assert np.isclose(m.runner_up, np.sort(scores)[-2], atol=1e-5)


def test_replace_all_groups_interleaved_owners():
    g = Gallery(2)
    g.replace_all([(("resident", 1), np.array([1.0, 0.0])), (("resident", 2), np.array([0.0, 1.0])),
                   (("resident", 1), np.array([0.8, 0.6]))])
    m = g.match(np.array([0.0, 1.0], np.float32))
    assert m.owner == ("resident", 2) and np.isclose(m.runner_up, 0.6)
    assert g.owner_count == 2 and len(g) == 3


def test_linked_owners_are_one_identity_for_the_margin():
    """Issue 13: the same face under two entries is one identity, not two close people."""
    g = Gallery(2)
    g.replace_all([(("watchlist", 1), np.array([1.0, 0.0])), (("watchlist", 2), np.array([0.98, 0.2])),
                   (("resident", 3), np.array([0.0, 1.0]))])
    q = np.array([1.0, 0.05], np.float32) / np.hypot(1.0, 0.05)
    assert g.match(q).margin < 0.1  # unlinked: entry 2 is the runner-up
    g.link([[("watchlist", 1), ("watchlist", 2)]])
    m = g.match(q)
    assert m.owner == ("watchlist", 1) and np.isclose(m.runner_up, q[1], atol=1e-6)
    assert [o for o, _ in m.linked] == [("watchlist", 2)] and m.linked[0][1] > 0.9
    g.add(("resident", 4), np.array([[-1.0, 0.0]]))  # links survive copy-on-write updates
    assert g.match(q).linked and g.identities() == [[("watchlist", 1), ("watchlist", 2)]]
    g.remove(("resident", 3))
    m = g.match(q)
    assert m.linked and np.isclose(m.runner_up, -q[0], atol=1e-6)


def test_same_face_groups_link_watchlist_entries_but_never_two_residents():
    from gatectl.people.directory import same_face_groups

    g = Gallery(3)
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    between = (a + b) / np.linalg.norm(a + b)  # resembles both residents (0.71 each)
    g.replace_all([(("resident", 1), a), (("resident", 2), b), (("watchlist", 7), a * 0.9 + 0.1 * b),
                   (("watchlist", 8), between), (("watchlist", 9), np.array([0.0, 0.0, 1.0]))])
    groups = sorted(sorted(x) for x in same_face_groups(g, 0.6))
    assert len(groups) == 1 and ("watchlist", 9) not in groups[0]
    members = set(groups[0])
    assert {("resident", 1), ("watchlist", 7)} <= members
    assert not {("resident", 1), ("resident", 2)} <= members
    assert g.owners_above(a.astype(np.float32), 0.6)[0] == (("resident", 1), 1.0)
