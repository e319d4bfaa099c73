"""Suite-wide test environment."""
import signal
import threading

import pytest


@pytest.fixture(autouse=True, scope="session")
def python_delivers_sigint():
    """The Ctrl-C tests send SIGINT to this process and expect Python's KeyboardInterrupt, as in
    a terminal. A process started as a background job of a non-interactive shell (some CI
    runners) begins with SIGINT ignored, and fastnn rightly leaves an ignored SIGINT alone
    (tests/test_integrity.py checks that in subprocesses): give this process Python's default
    handler for the session, as an interactive start would, and put the disposition back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if before is signal.SIG_IGN:
            signal.signal(signal.SIGINT, before)
