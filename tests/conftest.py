"""Shared test setup: keep CPU threads modest and make tests/ importable helpers visible."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

from batch_fixtures import pet_ds4, spect_ds4, tiny_weights_file  # noqa: E402, F401 (shared fixtures)
