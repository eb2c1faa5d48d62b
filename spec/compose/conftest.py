"""Prints what the stack test measured (time to bring the stack up, spread over workers)."""
import os

REPORT = os.path.join(os.path.dirname(__file__), "..", "..", "build", "compose-stack.txt")


def pytest_terminal_summary(terminalreporter):
    if os.path.exists(REPORT):
        terminalreporter.write_sep("-", "compose stack measurements")
        with open(REPORT) as f:
            terminalreporter.write(f.read())
