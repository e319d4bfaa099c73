"""Where candidates train: in this thread, on threads of this process, or on a Dask cluster.

Every executor has one method, `run(tasks)`, which trains a list of tasks (candidate spec,
checkpoint to start from, epoch to reach) and yields `(task, ok, value)` as they finish: value
is `(result, checkpoint)` when ok, else the error's traceback text. The driver decides what to
retry; results never depend on which worker ran a task or in which order they finished.
"""
import concurrent.futures
from contextlib import contextmanager

from . import candidate


@contextmanager
def one_blas_thread():
    """BLAS (and so fastnn's training loop, which never exceeds the BLAS limit) at one thread:
    k candidates at a time use k cores, not k x cores threads."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _train(task, data, callbacks):
    spec, checkpoint, until = task
    return candidate.train(spec, data, checkpoint, until, callbacks)


class SerialExecutor:
    """One candidate after another in the calling thread (fastnn's usual thread counts)."""

    def __init__(self, data, callbacks=()):
        self.data, self.callbacks = data, list(callbacks)

    def run(self, tasks):
        for task in tasks:
            try:
                value = _train(task, self.data, self.callbacks)
            except Exception as exc:  # noqa: BLE001 - reported to the driver, which retries
                yield task, False, candidate.format_error(exc)
            else:
                yield task, True, value

    def close(self):
        pass


class ThreadExecutor:
    """n_jobs candidates at a time on threads of this process: the compiled loop releases the
    GIL, the data is shared (never copied or pickled) and the kernels compile once. Each
    candidate trains on one thread (BLAS held at 1 while the executor runs)."""

    def __init__(self, data, n_jobs, callbacks=()):
        self.data, self.n_jobs, self.callbacks = data, n_jobs, list(callbacks)

    def run(self, tasks):
        with one_blas_thread(), concurrent.futures.ThreadPoolExecutor(
                self.n_jobs, thread_name_prefix="fastnn-search") as pool:
            futures = {pool.submit(_train, task, self.data, self.callbacks): task
                       for task in tasks}
            for fut in concurrent.futures.as_completed(futures):
                exc = fut.exception()
                if exc is not None:
                    yield futures[fut], False, candidate.format_error(exc)
                else:
                    yield futures[fut], True, fut.result()

    def close(self):
        pass


def _dask_task(task, data, callbacks):
    """What a Dask worker runs: one candidate on one training thread."""
    with one_blas_thread():
        return _train(task, data, callbacks)


class DaskExecutor:
    """Candidates as dask.distributed futures. The data goes to every worker once
    (client.scatter(..., broadcast=True)), not once per candidate; each task carries its
    checkpoint from the driver, so a task lost with its worker is resubmitted from there (the
    driver retries what raises, KilledWorker included) and no shared file system is needed."""

    def __init__(self, client, data, callbacks=()):
        self.client = client
        self.callbacks = list(callbacks)
        [self.data] = client.scatter([data], broadcast=True, hash=False)

    def run(self, tasks):
        from dask.distributed import as_completed

        futures = {}
        for task in tasks:
            # pure=False: a fresh key per submission, so a retry never gets the failed result
            fut = self.client.submit(_dask_task, task, self.data, self.callbacks, pure=False)
            futures[fut] = task
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                value = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, errors in the task
                yield task, False, candidate.format_error(exc)
            else:
                yield task, True, value
            finally:
                fut.release()

    def close(self):
        self.client.cancel([self.data])
