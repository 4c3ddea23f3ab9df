"""The training process's malloc thresholds."""

import sys

import pytest

from worker import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_thresholds_apply_on_linux() -> None:
    assert allocator.keep_freed_memory() is True


def test_other_platforms_keep_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
