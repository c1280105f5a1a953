"""Corpus encoding: many videos into a folder of .cdt files or of latent shards, here or on a Ray cluster.

    errors.py      CorpusError, and BadCorpusArgument naming the argument that would fix it
    inputs.py      files, folders and @manifests -> the clips, their output names and sample keys
    plan.py        what each clip needs, given what the output folder holds (skip, redo, refuse)
    worker.py      Settings, Task, Outcome; Worker: the model loaded once, one clip after another
    local.py       running the tasks in this process or in N worker processes (CPU threads split)
    ray_runner.py  running them on Ray Data, one model per actor (Ray is imported only there)
    shards.py      latent shards: staging a clip, writing a shard, reading shards back, decoding an entry
    summary.py     the JSONL summary and its totals
    run.py         encode_corpus: all of the above, in order

The Python API for training: `read_shards(folder)` yields (key, latents, metadata) for every clip.
"""

from cdtcodec.corpus.inputs import Clip, InputError, discover
from cdtcodec.corpus.errors import CorpusError
from cdtcodec.corpus.run import DEFAULT_SHARD_SIZE, CorpusResult, Listener, Tally, encode_corpus
from cdtcodec.corpus.shards import LatentSample, ShardError, read_entry, read_shards
from cdtcodec.corpus.worker import LATENT_DTYPES, Outcome, Settings

__all__ = ["Clip", "InputError", "discover", "CorpusError", "DEFAULT_SHARD_SIZE", "CorpusResult", "Listener",
           "Tally", "encode_corpus", "LatentSample", "ShardError", "read_entry", "read_shards", "LATENT_DTYPES",
           "Outcome", "Settings"]
