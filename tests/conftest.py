import os
from pathlib import Path

import pytest
import torch

# Tests run on 2 cores next to other work; fixed threads keep timings and numerics stable.
torch.set_num_threads(int(os.environ.get("CDT_TEST_THREADS", "2")))


@pytest.fixture(scope="module")
def one_thread():
    """For modules of toy models, far too small to gain from threads: on a shared machine two threads
    contending with other work made them 25 times slower. Restored afterwards for the other modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy(work) -> Path:
    """A tiny CDT (context width 8, U-Net width 4) saved as "toy" in the module's `work` folder."""
    from cdtcodec.config import CDTConfig
    from cdtcodec.model import CDT
    from cdtcodec.weights import save_model

    torch.manual_seed(0)
    path = work / "toy.safetensors"
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), path, name="toy")
    return path
