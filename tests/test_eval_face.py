"""The 1:N evaluation counts as the gate decides: tiny synthetic embeddings, so every count is known."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from gatectl.config import default_config
from gatectl.vision.face.gallery import Gallery
from tests.conftest import REPO


@pytest.fixture(scope="module")
def ef():
    spec = importlib.util.spec_from_file_location("eval_face", REPO / "scripts" / "eval_face.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["eval_face"] = mod
    spec.loader.exec_module(mod)
    return mod


def one_hot(i: int, dim: int = 4) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i] = 1.0
    return v


def people(ef, later_photos_look_like_next: bool, photos: int = 4):
    """4 people, one direction each; with the flag, every photo after the first shows the next
    person's face (person i -> i+1), the way a look-alike would."""
    def pass_of(v):
        return [ef.Shot(v, True, True, 1.0)] * 3

    return {f"p{i}": [pass_of(one_hot((i + (j > 0 and later_photos_look_like_next)) % 4)) for j in range(photos)]
            for i in range(4)}


def test_a_stranger_let_in_is_a_false_accept_and_a_wrong_grant_is_an_error(ef):
    gate = default_config().gates[0]
    g = Gallery(4)
    g.replace_all([(("resident", 0), one_hot(0)), (("resident", 1), one_hot(1))])
    t = ef.Tally()
    t.count(None, ef.decide_probe(g, [one_hot(0)] * 3, gate, 0.4))  # stranger with person 0's face
    t.count(1, ef.decide_probe(g, [one_hot(0)] * 3, gate, 0.4))  # person 1 let in as person 0
    t.count(0, ef.decide_probe(g, [one_hot(0)] * 3, gate, 0.4))
    t.count(None, ef.decide_probe(g, [one_hot(3)] * 3, gate, 0.4))
    t.count(1, ef.decide_probe(g, [None, None, None], gate, 0.4))  # no usable face
    r = t.report()
    assert (r["strangers"], r["stranger_granted"], r["stranger_far"]) == (2, 1, 0.5)
    assert (r["genuine"], r["recognised"], r["wrong_person"], r["refused"]) == (3, 1, 1, 1)


@pytest.mark.parametrize("fusion", ["fused", "votes"])
def test_identification_counts_look_alikes_as_false_accepts_and_errors(ef, fusion):
    """Folds of 4: one stranger per fold. Every later photo shows the next person: a stranger's
    later photos are let in as the next person (false accepts); a resident's are let in as the
    next person (wrong person) unless the next one is the fold's stranger (refused)."""
    gate = default_config().gates[0].model_copy(update={"fusion": fusion})
    n = 4
    r = ef.identification(people(ef, True, n), {}, gate, enroll_k=1, keep=3, folds=4, sizes=[],
                          impostor_tail=None)
    f = r["pass"].report()
    assert (f["strangers"], f["stranger_granted"]) == (4 * n, 4 * (n - 1))
    assert (f["genuine"], f["recognised"], f["wrong_person"], f["refused"]) == (12 * (n - 1), 0, 8 * (n - 1), 4 * (n - 1))
    good = ef.identification(people(ef, False, n), {}, gate, 1, 3, 4, [], None)["pass"].report()
    assert (good["recognised"], good["genuine"], good["stranger_granted"], good["strangers"]) == (36, 36, 0, 16)


def test_tar_at_fmr_thresholds_at_the_stranger_quantile_and_beyond_it_on_the_tail_fit(ef):
    """10,000 stranger scores spread evenly over 0..0.5: at fmr 0.1 the threshold is the
    1,000th highest (0.45), so a resident scoring exactly that is not accepted; below one
    stranger (fmr 1e-5) the threshold comes from the tail fit, whose own probability is fmr."""
    impostor = np.linspace(0.0, 0.5, 10_000).tolist()
    genuine = [0.9] * 8 + [0.45, 0.42]
    tar = ef.tar_at_fmr(genuine, impostor, (0.2, 0.1, 1e-5))
    assert tar["0.2"] == 1.0 and tar["0.1"] == 0.8
    assert set(tar) == {"0.2", "0.1", "1e-05 (tail fit)"}
    mu, sigma = ef.tail_fit(impostor)
    assert mu + 4.26 * sigma < 0.9 and mu + 4.27 * sigma > 0.45  # the fitted 1e-5 point lies between
    assert tar["1e-05 (tail fit)"] == 0.8  # so 0.9 clears it and 0.45 does not


def test_residents_the_quality_gate_refuses_count_as_not_recognised_when_extrapolated(ef):
    """p0's probe photos all fail the gate's quality check: the measured tallies refuse them, and
    the extrapolation to larger galleries must too (it once averaged over usable probes only,
    which made a stricter quality gate look better the more residents it refused)."""
    gate = default_config().gates[0]
    ppl = people(ef, False, 4)
    v = one_hot(0)
    ppl["p0"] = [ppl["p0"][0]] + [[ef.Shot(v, False, True, 1.0)] * 3 for _ in range(3)]
    r = ef.identification(ppl, {}, gate, 1, 3, 4, [], None)
    assert r["pass"].report()["refused"] == 9  # p0 enrolled in 3 of the 4 folds, 3 probes each
    scores = r["scores"]
    assert sum(s == -np.inf for s in scores["genuine_pass"]) == 9
    scores["impostor_pass"] = np.linspace(-0.3, 0.3, 2000).tolist()  # strangers far below 0.4
    ex = ef.extrapolate(scores, gate, None, [3])
    assert ex["pass"]["genuine_probes"] == 36
    assert ex["pass"]["by_gallery_size"]["3"]["resident_recognised_tail_fit"] == 0.75
