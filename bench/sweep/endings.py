"""How a sweep's fit ends besides finishing: a signal (Ctrl-C, a scheduler's SIGTERM) and a time
budget, both through Tune's own graceful stop. Ray-free: it is reached through the signal handler
Tune installs (SIGUSR1).

Ray Tune 2.60 stops gracefully on SIGINT and SIGUSR1 only (``ray.tune.tune._setup_signal_catching``:
it checkpoints the experiment one last time, and the running trials keep their last checkpoint).
``GracefulStop`` gives SIGTERM, which ``timeout``, Kubernetes and Slurm send before killing a job,
the same stop: while the fit runs, SIGINT and SIGTERM call Tune's SIGUSR1 handler, and a second
signal stops at once. It also remembers which signal came, so the sweep can be recorded as
interrupted, and hides Tune's closing hint (a ``Tuner.restore(...)`` Python call) that fer-bench
replaces with its own command.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time

from bench.errors import SignalInterrupt


class Deadline:
    """A time budget for ``Tuner.fit()``: after ``seconds`` it stops the fit the way Ctrl-C does,
    by sending this process SIGUSR1 (Ray Tune's documented graceful stop), so the running trials
    stay unfinished in the saved experiment and ``--resume`` continues them from their last
    checkpoint, with its own budget. (Tune's ``time_budget_s`` TERMINATEs them for good, and the
    experiment state carries its spent remainder into every resume, which then stopped at once.)
    ``fired`` says whether the budget ended the fit."""

    def __init__(self, seconds: float | None, announce=None):
        self.seconds = seconds
        self.start = 0.0
        self.fired = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._announce = announce or (lambda text: print(text, file=sys.stderr, flush=True))

    def __enter__(self) -> Deadline:
        self.start = time.time()
        if self.seconds:
            self._thread = threading.Thread(target=self._watch, name="fer-bench-deadline", daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        if self._done.wait(self.seconds):
            return
        while not self._done.is_set():
            # Tune's handler, once its loop runs; before that a SIGUSR1 would be ignored (or fatal)
            if callable(signal.getsignal(signal.SIGUSR1)):
                self.fired = True
                self._announce(f"fer-bench: the time budget is over ({self.seconds:.0f} s of fit): stopping the "
                               f"sweep; running trials keep their last checkpoint and --resume continues them")
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            self._done.wait(0.5)

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


# Tune's messages about an interrupted run that fer-bench says in its own words, and the warning
# that a trial which had not started yet left no results (it is PENDING; a resume runs it)
_TUNE_LINES = ("Stop signal received", "has been interrupted", "Trials did not complete",
               "Failed to fetch metrics")
_TUNE_LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")


class _HideTuneInterruptLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(line in message for line in _TUNE_LINES)


class GracefulStop:
    """A context for ``Tuner.fit()``: ``signal`` is the name of the first SIGINT/SIGTERM received
    (None when none came). ``arm()`` (re)installs the handlers; call it after ``ray.init``, whose
    C++ core installs its own SIGTERM handler in the driver (it prints a stack address and dies)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce=None):
        self.signal: str | None = None
        self.signum: int | None = None  # the first signal's number
        self.last: int | None = None  # the latest signal's number
        self._previous: dict = {}
        self._filter = _HideTuneInterruptLines()
        self._env = None
        self._announce = announce or (lambda text: print(text, file=sys.stderr, flush=True))
        self._main = True

    def __enter__(self) -> GracefulStop:
        # signal handlers belong to the main thread (Tune installs none either when fit runs elsewhere)
        self._main = threading.current_thread() is threading.main_thread()
        if not self._main:
            return self
        for s in (*self.SIGNALS, signal.SIGUSR1):
            self._previous[s] = signal.getsignal(s)
        # a callable SIGUSR1 handler means Tune's run loop is going; an earlier fit's is stale
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        # Tune would replace our SIGINT handler with its own, which cannot tell us it fired
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for name in _TUNE_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        self.arm()
        return self

    def arm(self) -> None:
        if not self._main:
            return
        for s in self.SIGNALS:
            signal.signal(s, self._handle)

    def disarm(self) -> None:
        """Put the handlers back (once Tune's loop is over, a signal ends the command as usual);
        Tune's lines stay hidden until the context exits."""
        if not self._main:
            return
        for s, previous in self._previous.items():
            # None: a handler installed outside Python (Ray's), which cannot be reinstalled
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)

    def __exit__(self, *exc) -> None:
        self.disarm()
        if not self._main:
            return
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env
        for name in _TUNE_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        tune_stop = signal.getsignal(signal.SIGUSR1)  # Tune's, while its run loop is going
        if self.signal is None and callable(tune_stop):
            self.signal, self.signum, self.last = name, signum, signum
            self._announce(f"fer-bench: {name} received: stopping the sweep; running trials keep their "
                           f"last checkpoint (send it again to stop at once)")
            tune_stop(signal.SIGUSR1, frame)
            return
        if self.signal is None:
            self.signal, self.signum = name, signum
        self.last = signum
        # a second signal, or one before Tune's loop started: stop now (resume still works: every
        # trial's checkpoint of its last epoch and the experiment state are already on disk)
        raise SignalInterrupt(signum)


def quiet_stop_in_worker() -> None:
    """In a trial's Ray worker: a trial that Tune stops (a graceful stop, a budget, ASHA) gets
    SIGTERM, and Ray's handler raises ``SystemExit`` wherever the worker is. Inside a finalizer (a
    weakref callback, a writer closing) Python then prints "Exception ignored in ... Traceback",
    which reached the sweep's output on every Ctrl-C. That stop is expected, so it is not printed;
    any other exception in a finalizer still is."""
    if getattr(sys.unraisablehook, "_fer_bench", False):
        return

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, (SystemExit, KeyboardInterrupt)):
            return
        sys.__unraisablehook__(unraisable)

    hook._fer_bench = True
    sys.unraisablehook = hook


def one_epoch_budget(epoch_seconds: float | None, overhead_s: float, trial_setup_s: float = 3.0) -> str | None:
    """A ``--time-budget`` value that would let one epoch finish: this command's time before the
    fit, a trial's setup, the epoch with a margin of a quarter (the estimate is rough), and the
    reserve fer-bench keeps (5 %, at most 60 s). None without an epoch estimate."""
    if not epoch_seconds or epoch_seconds <= 0:
        return None
    needed = overhead_s + trial_setup_s + 1.25 * epoch_seconds
    budget = needed / 0.95 if needed / 0.95 <= 1200 else needed + 60
    if budget < 120:
        return f"{int(math.ceil(budget / 10.0) * 10)}s"
    return f"{int(math.ceil(budget / 60.0))}m"
