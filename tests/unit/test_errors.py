"""describe_exception: the one way an exception is written for people."""

from __future__ import annotations

from engine.errors import ResultError, describe_exception


class KafkaLikeError(Exception):
    def __str__(self) -> str:
        return "KafkaLikeError: broker gone"


def test_type_and_message() -> None:
    assert describe_exception(ValueError("bad input")) == "ValueError: bad input"
    assert describe_exception(KeyError("x")) == "KeyError: 'x'"
    assert describe_exception(ResultError("too big")) == "ResultError: too big"


def test_no_empty_message_and_no_doubled_name() -> None:
    assert describe_exception(TimeoutError()) == "TimeoutError"
    assert describe_exception(RuntimeError("  ")) == "RuntimeError"
    assert describe_exception(RuntimeError("RuntimeError")) == "RuntimeError"
    assert describe_exception(KafkaLikeError()) == "KafkaLikeError: broker gone"
    assert describe_exception(OSError("disk full\n")) == "OSError: disk full"
