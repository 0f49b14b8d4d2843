from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.exceptions import ServiceError
from service.lifecycle import (
    ACTIVE_STATES,
    FORWARD_ORDER,
    TERMINAL_STATES,
    JobState,
    Outcome,
    UnknownStatusError,
    decide,
    state_from_pixverse,
)
from service.pixverse.vocab import TERMINAL_STATUSES, VideoStatus

Q, S, G = JobState.QUEUED, JobState.SUBMITTING, JobState.GENERATING
OK, MOD, FAIL = JobState.SUCCEEDED, JobState.MODERATION_FAILED, JobState.FAILED
DEL, REJ = JobState.DELETED, JobState.REJECTED

A, D, I = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.IGNORED

# Written out in full, independently of the implementation. Rows: current state; columns:
# proposed state, in the order Q S G OK MOD FAIL DEL REJ.
COLUMNS = (Q, S, G, OK, MOD, FAIL, DEL, REJ)
EXPECTED = {
    Q:    (D, A, A, A, A, A, A, A),
    S:    (A, D, A, A, A, A, A, A),  # back to queued: PixVerse said "not now" (500044)
    G:    (I, I, D, A, A, A, A, I),  # rejected comes too late once PixVerse accepted the job
    OK:   (I, I, I, D, I, I, A, I),  # the one exit from a terminal state: deleted after success
    MOD:  (I, I, I, I, D, I, I, I),
    FAIL: (I, I, I, I, I, D, I, I),
    DEL:  (I, I, I, I, I, I, D, I),
    REJ:  (I, I, I, I, I, I, I, D),
}
PAIRS = [
    pytest.param(current, proposed, EXPECTED[current][column], id=f"{current}->{proposed}")
    for current in COLUMNS
    for column, proposed in enumerate(COLUMNS)
]


def test_table_covers_every_pair() -> None:
    assert set(COLUMNS) == set(JobState)
    assert len(PAIRS) == len(JobState) ** 2


@pytest.mark.parametrize(("current", "proposed", "outcome"), PAIRS)
def test_decide(current: JobState, proposed: JobState, outcome: Outcome) -> None:
    decision = decide(current, proposed)
    assert decision.outcome is outcome
    assert decision.applied is (outcome is Outcome.APPLIED)
    assert decision.reason


def test_state_sets() -> None:
    assert FORWARD_ORDER == (Q, S, G)
    assert TERMINAL_STATES == {OK, MOD, FAIL, DEL, REJ}
    assert ACTIVE_STATES == {S, G}
    assert set(FORWARD_ORDER) | TERMINAL_STATES == set(JobState)
    assert all(state.is_terminal for state in TERMINAL_STATES)
    assert not any(state.is_terminal for state in FORWARD_ORDER)


@pytest.mark.parametrize(
    ("code", "state"),
    [(1, OK), (2, G), (3, G), (5, G), (6, DEL), (7, MOD), (8, FAIL), (VideoStatus.GENERATING, G)],
)
def test_state_from_pixverse(code: int, state: JobState) -> None:
    assert state_from_pixverse(code) is state


def test_pixverse_terminal_codes_map_to_terminal_states() -> None:
    for status in VideoStatus:
        assert state_from_pixverse(status).is_terminal is (status in TERMINAL_STATUSES)


@pytest.mark.parametrize("code", [0, 4, 9, -1, 2**63, True, "1", None, 1.0])
def test_state_from_pixverse_refuses_unknown_codes(code: object) -> None:
    with pytest.raises(UnknownStatusError, match="unknown PixVerse status code") as caught:
        state_from_pixverse(code)  # type: ignore[arg-type]
    assert caught.value.code == code
    assert isinstance(caught.value, ServiceError)
    assert isinstance(caught.value, ValueError)


def test_states_are_plain_strings() -> None:
    assert JobState("moderation_failed") is MOD
    assert f"{G}" == "generating"
    assert decide(JobState.GENERATING, "generating").outcome is D  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(list(JobState)), max_size=30))
def test_any_message_order_only_moves_forward(proposals: list[JobState]) -> None:
    """Whatever order messages arrive in, the state never goes back (but for the requeue of a
    job PixVerse had no slot for), and a terminal state other than succeeded never changes."""
    rank = {state: FORWARD_ORDER.index(state) if state in FORWARD_ORDER else 3
            for state in JobState}
    state = Q
    for proposed in proposals:
        before = state
        decision = decide(before, proposed)
        if decision.applied:
            assert rank[proposed] > rank[before] or (before, proposed) in ((OK, DEL), (S, Q))
            state = proposed
        if before.is_terminal and before is not OK:
            assert state is before


def test_every_state_reachable_from_queued() -> None:
    for target in JobState:
        path_exists = target is Q or any(
            all(decide(a, b).applied for a, b in itertools.pairwise((Q, *path, target)))
            for length in range(3)
            for path in itertools.permutations(set(JobState) - {Q, target}, length)
        )
        assert path_exists, target
