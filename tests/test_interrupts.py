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
    with interrupts.deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()  # no mask left behind


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
