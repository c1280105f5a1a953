import os

import torch

# Tests run on 2 cores next to other work; fixed threads keep timings and numerics stable.
torch.set_num_threads(int(os.environ.get("CDT_TEST_THREADS", "2")))
