"""The per-domain tables: built once per process, shared read-only, and what a teacher keeps of
its own (measured with tracemalloc, not estimated)."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from beliefagent.domains import load_domain
from beliefagent.teachers import BayesianTeacher, QuestionnaireTeacher
from beliefagent.teachers.tables import Marginals, domain_tables

FLIGHT = load_domain("flight")
MIB = 2**20


def _own_bytes(make) -> int:
    """Bytes still allocated after building one teacher and playing one round with it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        teacher = make()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert teacher is not None
    return after - before


def _flight_teacher_with_a_round(domain):
    def make():
        t = BayesianTeacher(domain)
        s = domain.random_option_sets(np.random.default_rng(0), 1)[0]
        t.recommend(s)
        t.observe(s, 1)
        t.summary()
        return t

    return make


def test_teachers_of_a_domain_share_read_only_tables() -> None:
    a, b = BayesianTeacher(FLIGHT), BayesianTeacher(FLIGHT)
    assert a.weights is b.weights and a._marginals is b._marginals
    assert domain_tables(FLIGHT, FLIGHT.feature_names) is domain_tables(
        FLIGHT, FLIGHT.feature_names
    )
    assert not a.weights.flags.writeable
    with pytest.raises(ValueError):
        a.weights[0, 0] = 9.0
    s = FLIGHT.random_option_sets(np.random.default_rng(1), 1)[0]
    a.observe(s, 0)
    assert b.belief.n_observations == 0  # the posterior is each teacher's own


def test_marginals_equal_per_column_sums() -> None:
    weights = FLIGHT.hypothesis_weights()
    post = np.random.default_rng(2).dirichlet(np.ones(len(weights)))
    marg = Marginals(weights, FLIGHT.feature_names)(post)
    for j, name in enumerate(FLIGHT.feature_names):
        expected = [float(post[weights[:, j] == v].sum()) for v in np.unique(weights)]
        assert np.allclose(marg[name], expected)


def test_a_flight_session_keeps_under_a_tenth_of_a_mib() -> None:
    make = _flight_teacher_with_a_round(FLIGHT)
    make()  # tables built
    own = _own_bytes(make)
    assert own <= 0.1 * MIB, own
    assert own <= BayesianTeacher.session_nbytes(FLIGHT)


def test_a_flight8_session_keeps_under_four_mib() -> None:
    flight8 = load_domain("flight8")
    make = _flight_teacher_with_a_round(flight8)
    make()  # the shared tables are built by the first teacher of the process
    own = _own_bytes(make)
    assert own <= 4 * MIB, own
    assert own <= BayesianTeacher.session_nbytes(flight8)
    teacher = make()
    assert teacher.state_nbytes() >= 8 * 390_624


def test_questionnaire_teachers_share_tables() -> None:
    bigfive = load_domain("bigfive")
    a, b = QuestionnaireTeacher(bigfive), QuestionnaireTeacher(bigfive)
    assert a.weights is b.weights and a._marginals is b._marginals
