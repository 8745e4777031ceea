"""`micrornn export`: a checkpoint's weights as a safetensors file in PyTorch's key layout."""
from __future__ import annotations

import json
from pathlib import Path

from micrornn.cli import UsageError


def add_parser(subparsers):
    """Register the `export` sub-command."""
    p = subparsers.add_parser(
        "export", help="write a checkpoint's weights as a safetensors file for PyTorch",
        description="Read a checkpoint written by `micrornn train` and write its weights to a safetensors file "
                    "under PyTorch's names (rnn.weight_ih_l0, ..., head.weight, head.bias), so that "
                    "safetensors.torch.load_file plus load_state_dict fills a torch.nn.RNN/LSTM/GRU and a "
                    "Linear head. The file's metadata holds the model config and the vocabulary (JSON). Needs "
                    'the safetensors extra: pip install "micrornn[safetensors]".')
    p.add_argument("--checkpoint", metavar="PATH", required=True, help="checkpoint written by micrornn train")
    p.add_argument("--safetensors", metavar="OUT", required=True, help="the .safetensors file to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return p


def run(args) -> int:
    """Load the checkpoint, write the safetensors file, say what is in it."""
    from micrornn.interop import torch_state_dict
    from micrornn.safetensors_io import write_safetensors
    from micrornn.train.checkpoint import CheckpointError
    from micrornn.train.sample import load_model
    out = Path(args.safetensors)
    if out.is_dir():
        raise UsageError(f"--safetensors: {out} is a directory")
    if out.exists() and not args.overwrite:
        raise UsageError(f"--safetensors: {out} already exists; pass --overwrite to replace it")
    try:
        model, vocab, meta = load_model(args.checkpoint)
    except FileNotFoundError:
        raise UsageError(f"--checkpoint: checkpoint not found: {args.checkpoint}") from None
    except (CheckpointError, IsADirectoryError) as e:
        raise UsageError(f"--checkpoint: {e}") from None
    try:
        arrays = torch_state_dict(model)
    except TypeError as e:
        raise UsageError(f"--checkpoint: {e}") from None
    metadata = {"format": "pt", "micrornn_model": json.dumps(meta["model"]), "vocab": json.dumps(vocab.to_list())}
    try:
        write_safetensors(out, arrays, metadata)
    except ImportError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    count = sum(a.size for a in arrays.values())
    print(f"wrote {out}: {len(arrays)} tensors, {count:,} parameters ({meta['model'].get('cell', 'rnn')}, PyTorch's "
          "key layout: rnn.* for the recurrent layer, head.* for the Linear)")
    return 0
