"""mlplab.interrupts: Ctrl-C and SIGTERM held back while files are replaced, handlers put back."""

import os
import signal
import threading
import time

import pytest

from mlplab import interrupts


def _signal_self_from_another_thread(sig: int) -> None:
    """As the kernel may do: a process-wide signal taken by a thread that is not the main one."""
    t = threading.Thread(target=os.kill, args=(os.getpid(), sig))
    t.start()
    t.join()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_deferred_holds_a_signal_until_the_block_ends(sig):
    reached_end_of_block = False
    with pytest.raises(KeyboardInterrupt), interrupts.installed():
        with interrupts.deferred():
            _signal_self_from_another_thread(sig)
            time.sleep(0.05)  # Python runs handlers between bytecodes: plenty of chances
            reached_end_of_block = True
    assert reached_end_of_block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_deferred_without_a_signal_changes_nothing():
    # the mask as the suite's process inherited it (a parent may block signals of its own)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with interrupts.deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask  # no mask left behind


def test_a_signal_held_during_an_error_is_remembered_not_raised():
    with interrupts.installed():
        with pytest.raises(OSError), interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            raise OSError("disk full")
        assert interrupts.requested()  # the command ends with 130


def test_an_ignored_sigint_stays_ignored():
    """A process started with SIGINT ignored (a shell script's `cmd &`) keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.installed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is interrupts._sigterm
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_deferred_leaves_an_ignored_signal_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.installed():
            with interrupts.deferred():
                _signal_self_from_another_thread(signal.SIGINT)
                time.sleep(0.05)
            assert not interrupts.requested()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_what_a_command_remembers_stays_with_it():
    """A command run from inside another has its own flag; outside every command nothing is
    remembered (a library user's Ctrl-C must not stop a later call)."""
    with interrupts.installed():
        interrupts.note()
        with interrupts.installed():
            assert not interrupts.requested()
        assert interrupts.requested()
    assert not interrupts.requested()
    interrupts.note()
    assert not interrupts.requested()


def test_a_ctrl_c_in_the_exercise_training_stops_the_check(monkeypatch, capsys):
    """The trainer's graceful stop ends TwoLayerNet.train with KeyboardInterrupt (its stats
    would be a cut-short run), and `mlplab check` with 130, not a failed check."""
    from mlplab.cli import main
    from mlplab.trainer import Trainer

    real, calls = Trainer._end_epoch, []

    def ctrl_c_at_the_30th_epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 30:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_end_epoch", ctrl_c_at_the_30th_epoch)
    assert main(["check"]) == 130
    assert "mlplab: interrupted" in capsys.readouterr().err


def test_a_ctrl_c_once_the_command_has_its_result_is_remembered_not_raised():
    with interrupts.installed():
        interrupts.closing()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # no KeyboardInterrupt, so no traceback as the command ends
        assert interrupts.requested()
    with interrupts.installed():  # the next command starts afresh
        assert not interrupts.requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
