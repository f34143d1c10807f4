from __future__ import annotations

from pathlib import Path

import pytest

from saga_hpc.head.prompts import PromptBuilder


@pytest.fixture(scope="module")
def prompts(tiny_model: Path) -> PromptBuilder:
    return PromptBuilder(str(tiny_model), 4096)
