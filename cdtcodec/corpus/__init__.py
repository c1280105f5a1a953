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

import importlib

DEFAULT_SHARD_SIZE = 100  # clips per latent shard

# The names below load their module on first use (PEP 562): the command line imports this package for
# DEFAULT_SHARD_SIZE alone, and must stay quick to import (signals are handled only once it has started).
_HOMES = {"Clip": "inputs", "InputError": "inputs", "discover": "inputs", "CorpusError": "errors",
          "CorpusResult": "run", "Listener": "run", "Tally": "run", "encode_corpus": "run",
          "LatentSample": "shards", "ShardError": "shards", "read_entry": "shards", "read_shards": "shards",
          "LATENT_DTYPES": "worker", "Outcome": "worker", "Settings": "worker"}
__all__ = ["DEFAULT_SHARD_SIZE", *_HOMES]


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"cdtcodec.corpus.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
