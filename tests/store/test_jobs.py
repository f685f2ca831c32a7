"""The run queue on a real database file (and PostgreSQL when available): claims never overlap, enqueue is
idempotent, dead workers' claims return to the queue, errored cells are queued again."""

from __future__ import annotations

import threading
from datetime import timedelta

from store.models import Run


def queued_run(db, cells: int = 10):
    suite = db.save_suite("s", [{"vars": {"i": i}} for i in range(cells)])
    version = db.save_version("v", "x")
    provider = db.upsert_provider("p", "local", "m")
    run = db.create_run(suite_id=suite.id, version_ids=[version.id], provider_ids=[provider.id])
    keys = [(c.id, version.id, provider.id, 0) for c in db.suite_cases(suite.id)]
    return run, keys


def test_enqueue_is_idempotent_and_marks_stored_cells_done(db):
    run, keys = queued_run(db, 4)
    db.save_result(
        {
            "run_id": run.id,
            "case_id": keys[0][0],
            "version_id": keys[0][1],
            "provider_id": keys[0][2],
            "passed": True,
        },
        [],
    )
    assert db.enqueue(run.id, keys) == 3
    assert db.enqueue(run.id, keys) == 3
    assert db.cell_counts(run.id) == {"pending": 3, "claimed": 0, "done": 1}
    assert db.get_run(run.id).status == "queued"


def test_concurrent_claims_never_take_the_same_cell(db):
    run, keys = queued_run(db, 60)
    db.enqueue(run.id, keys)
    taken: dict[str, list] = {f"w{i}": [] for i in range(4)}

    def claim(worker: str) -> None:
        while got := db.claim_cells(run.id, worker, 3):
            taken[worker] += [key for _, key in got]

    threads = [threading.Thread(target=claim, args=(w,)) for w in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [key for keys_ in taken.values() for key in keys_]
    assert sorted(everything) == sorted(keys) and len(set(everything)) == 60
    assert db.cell_counts(run.id)["claimed"] == 60


def test_a_cancelled_run_gives_out_no_cells(db):
    run, keys = queued_run(db, 3)
    db.enqueue(run.id, keys)
    db.set_run_status(run.id, "cancelled")
    assert db.claim_cells(run.id, "w", 5) == []
    assert db.runnable() == []


def test_saving_a_result_marks_its_cell_done_and_the_run_completes(db):
    run, keys = queued_run(db, 2)
    db.enqueue(run.id, keys)
    for cell_id, key in db.claim_cells(run.id, "w", 5):
        assert not db.finish_if_done(run.id)
        db.save_result(
            {
                "run_id": run.id,
                "case_id": key[0],
                "version_id": key[1],
                "provider_id": key[2],
                "repeat_index": key[3],
                "passed": True,
            },
            [],
            cell_id=cell_id,
        )
    assert db.finish_if_done(run.id) and db.get_run(run.id).status == "completed"


def test_dead_workers_release_their_claims(db):
    run, keys = queued_run(db, 5)
    db.enqueue(run.id, keys)
    db.register_worker("gone", "elsewhere", 1, 0.0)
    db.claim_cells(run.id, "gone", 2)
    assert [w.id for w in db.stale_workers(timedelta(seconds=-1))] == ["gone"]
    assert db.remove_workers(["gone"]) == 2
    assert db.cell_counts(run.id) == {"pending": 5, "claimed": 0, "done": 0}
    assert db.list_workers() == []


def test_reset_errored_queues_exactly_the_errored_cells(db):
    run, keys = queued_run(db, 3)
    db.enqueue(run.id, keys)
    claims = db.claim_cells(run.id, "w", 3)
    for (cell_id, key), error in zip(claims, [None, "timeout", None], strict=True):
        db.save_result(
            {
                "run_id": run.id,
                "case_id": key[0],
                "version_id": key[1],
                "provider_id": key[2],
                "error": error,
                "passed": None if error else True,
            },
            [],
            cell_id=cell_id,
        )
    db.finish_if_done(run.id)
    assert db.reset_errored(run.id) == 1
    assert db.cell_counts(run.id) == {"pending": 1, "claimed": 0, "done": 2}
    assert db.result_counts(run.id) == (2, 0, 2)
    assert db.runnable() == []  # still completed: a retry queues the run again
    db.enqueue(run.id, [])
    [again] = db.runnable()
    assert isinstance(again, Run) and again.id == run.id and again.status == "queued"
