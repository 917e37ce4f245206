"""`genie-async chat` driven through a pseudo-terminal, as a person at a keyboard would."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from genie_async.testing import GenieSimulator

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """A child process on a pty: send lines, wait for output matching a pattern."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        full_env = {
            **os.environ,
            "TERM": "dumb",
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "genie_async._cli", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full_env,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.output = ""
        self._seen = 0

    def expect(self, pattern: str, timeout: float = 15.0) -> str:
        """Wait for `pattern` in the output after the previous match; return the text up to it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output, self._seen)
            if match:
                seen, self._seen = self._seen, match.end()
                return self.output[seen : match.end()]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{pattern!r} not seen within {timeout} s; output tail:\n{self.output[-1500:]}"
                )
            ready, _, _ = select.select([self.master], [], [], min(remaining, 0.2))
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # the child exited and the pty closed
                    data = b""
                if not data and self.process.poll() is not None:
                    raise AssertionError(
                        f"process exited ({self.process.returncode}) before {pattern!r}; "
                        f"output tail:\n{self.output[-1500:]}"
                    )
                self.output += ANSI.sub("", data.decode("utf-8", "replace"))

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def wait(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.output += ANSI.sub(
                        "", os.read(self.master, 65536).decode("utf-8", "replace")
                    )
                except OSError:
                    break
        return self.process.wait(timeout=max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.close(self.master)


@pytest.fixture
def chat() -> Iterator[Terminal]:
    terminal = Terminal("chat", "--simulator")
    yield terminal
    terminal.close()


PROMPT = "you \u203a "  # the chat prompt: "you", a right-pointing angle quote, a space


def test_a_turn_a_confirmation_and_the_history(chat: Terminal) -> None:
    """A message gets the genie's reply; a confirmation is answered at the prompt; /history."""
    chat.expect(PROMPT)
    chat.send("hello there")
    assert "You said: hello there" in chat.expect(PROMPT)
    chat.send("book Dec 21-23 off")
    card = chat.expect(r"approve\? \[y/N\] ")
    assert "confirm: Submit Time Off Request" in card
    assert "start_date" in card
    chat.send("y")
    reply = chat.expect(PROMPT)
    assert "→ approved" in reply
    assert "Done — your request was submitted." in reply
    chat.send("/history")
    history = chat.expect(PROMPT)
    assert re.search(r"you .*hello there", history)
    assert re.search(r"genie .*You said: \*hello there\*", history)  # raw markdown
    assert "Done — your request was submitted." in history
    chat.send("/quit")
    assert chat.wait() == 0


def test_a_rejection_at_the_prompt(chat: Terminal) -> None:
    """Answering no rejects the skill; the genie says so."""
    chat.expect(PROMPT)
    chat.send("submit time off")
    chat.expect(r"approve\? \[y/N\] ")
    chat.send("n")
    reply = chat.expect(PROMPT)
    assert "→ rejected" in reply
    assert "Rejected by user: Declined by the user" in reply


def test_an_api_error_is_one_line_with_its_hint() -> None:
    """A 404 inside the chat is one line with the class, request id and hint; the chat goes on."""
    terminal = Terminal("chat", "--simulator", "--conversation", "no-such-conversation")
    try:
        terminal.expect(PROMPT)
        terminal.send("hello?")
        shown = terminal.expect(PROMPT)
        [line] = [row for row in shown.splitlines() if "✗" in row]
        assert "NotFoundError" in line
        assert "request_id=" in line
        assert "hint: Not found." in line
        assert "Traceback" not in terminal.output
        terminal.send("/quit")
        assert terminal.wait() == 0
    finally:
        terminal.close()


async def test_bad_credentials_against_a_server_are_one_line_and_exit_1() -> None:
    """A rejected key at start-up prints one line with the auth_failed hint and exits 1."""
    async with GenieSimulator() as sim:
        env = {"GENIE_API_KEY": "0" * 64, "GENIE_USER_ID": sim.user_id}
        terminal = Terminal("chat", "--base-url", sim.url, "--genie", sim.genie_id, env=env)
        try:
            code = await asyncio.to_thread(terminal.wait)
            assert code == 1
            [line] = [row for row in terminal.output.splitlines() if "✗" in row]
            assert "AuthFailedError" in line
            assert "wrkaus-" in line  # the first cause in the troubleshooting checklist
            assert "0" * 64 not in terminal.output
            assert "Traceback" not in terminal.output
        finally:
            terminal.close()


def test_missing_credentials_say_where_they_come_from() -> None:
    """Without credentials in the environment, chat explains the variables and exits 2."""
    env = {"GENIE_API_KEY": "", "GENIE_USER_ID": "", "GENIE_ACCESS_TOKEN": ""}
    terminal = Terminal("chat", "--data-center", "us", "--genie", "gin-1", env=env)
    try:
        assert terminal.wait() == 2
        assert "GENIE_API_KEY" in terminal.output
        assert "GENIE_ACCESS_TOKEN" in terminal.output
    finally:
        terminal.close()


def test_upload_attaches_to_the_next_message(chat: Terminal, tmp_path: object) -> None:
    """/upload PATH uploads the file and sends its id with the next message."""
    path = os.path.join(str(tmp_path), "notes.txt")
    with open(path, "w") as handle:
        handle.write("hello")
    chat.expect(PROMPT)
    chat.send(f"/upload {path}")
    assert "uploaded notes.txt as" in chat.expect(PROMPT)
    chat.send("read my notes")
    assert "You said: read my notes" in chat.expect(PROMPT)
