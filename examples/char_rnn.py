"""The `micrornn train` main job from Python: a character-level RNN writes (bad) Shakespeare.

    python examples/char_rnn.py [--steps 1500 --hidden-size 128 --data my.txt]

Builds a Trainer (vocabulary, train/validation split, model, Adam) on the bundled corpus, runs
the same loop as the command line (progress bar, validation loss, samples, gradient clipping,
Ctrl-C saves), then samples at a few temperatures from the trained model and from the checkpoint.
"""
import argparse
from pathlib import Path

from micrornn.train.data import load_bundled_corpus, load_text
from micrornn.train.sample import load_model, sample
from micrornn.train import TrainConfig, Trainer, plot_history


def main():
    d = TrainConfig()
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    ap.add_argument("--data", help="UTF-8 text file (default: the bundled Shakespeare)")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--hidden-size", type=int, default=d.hidden_size)
    ap.add_argument("--seq-len", type=int, default=d.seq_len)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--checkpoint", default="runs/char_rnn_example.npz")
    ap.add_argument("--plot", help="save the loss curve here (needs matplotlib)")
    args = ap.parse_args()

    text = load_bundled_corpus() if args.data is None else load_text(args.data)
    config = TrainConfig(hidden_size=args.hidden_size, seq_len=args.seq_len, batch_size=args.batch_size,
                         steps=args.steps, val_every=max(1, args.steps // 5), sample_every=0)
    trainer = Trainer(text, config, source=args.data)
    print(f"{trainer.model.num_parameters():,} parameters; {len(trainer.vocab)} characters; "
          f"{len(trainer.train_ids):,} training characters")

    Path(args.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    result = trainer.run(checkpoint=args.checkpoint)
    if result.interrupted:
        print(f"interrupted at step {result.step}; saved {args.checkpoint}")
        return
    print(f"{result.step} steps in {result.seconds:.1f} s ({result.chars_per_sec:,.0f} chars/s): "
          f"train {result.train_loss:.3f}, validation {result.val_loss:.3f} nats/char")

    prime = "First Citizen:\n" if all(c in trainer.vocab for c in "First Citizen:\n") else ""
    for temperature in (0.5, 1.0):
        print(f"--- temperature {temperature} ---\n{trainer.sample(200, temperature, prime)}")

    model, vocab, meta = load_model(args.checkpoint)  # what `micrornn sample` does
    print(f"--- from {args.checkpoint} (step {meta['step']}) ---\n{sample(model, vocab, 100, 0.8, prime, rng=0)}")
    if args.plot:
        print(f"loss curve: {plot_history(trainer.history, args.plot)}")


if __name__ == "__main__":
    main()
