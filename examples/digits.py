"""Quick start: train a small MLP on scikit-learn's handwritten digits with fabric-core.

The dataset (1,797 8x8 images) ships inside scikit-learn, so nothing is downloaded. Training takes a
few seconds on one CPU core and reaches a test accuracy above 0.9::

    python examples/digits.py                                # one process on the CPU
    python examples/digits.py --devices 2                    # two processes, started by fabric.launch()
    fabric run --devices 2 examples/digits.py                # two processes, started by the CLI
    python examples/digits.py --precision bf16-mixed --save digits.ckpt

The flags mirror ``Fabric(...)``'s. Under ``fabric run`` the command line of the CLI configures Fabric, so
this script passes on only the flags given to it explicitly: a value set in code that contradicts the
CLI is an error, never silently overridden.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fabric_core import Fabric

# Used when the script starts its own processes; under `fabric run` the CLI decides instead.
DEFAULTS = {"accelerator": "cpu", "devices": 1, "precision": "32-true"}
FABRIC_FLAGS = ("accelerator", "strategy", "devices", "num_nodes", "precision")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", default=None, help="cpu (default), cuda, mps, auto, ...")
    parser.add_argument("--strategy", default=None, help="auto (default), ddp, ddp_spawn, ...")
    parser.add_argument("--devices", default=None, type=_devices, help="1 (default), 2, auto, '0,1', ...")
    parser.add_argument("--num-nodes", dest="num_nodes", default=None, type=int, help="1 (default)")
    parser.add_argument("--precision", default=None, help="32-true (default), 16-mixed, bf16-mixed, ...")
    parser.add_argument("--epochs", default=10, type=int)
    parser.add_argument("--batch-size", default=64, type=int, help="per process")
    parser.add_argument("--lr", default=3e-3, type=float)
    parser.add_argument("--save", default=None, metavar="PATH", help="write a checkpoint here after training")
    return parser.parse_args(argv)


def _devices(value: str) -> int | str:
    """``"2"`` -> 2 and ``"-1"`` -> -1; ``"auto"`` and ``"0,1"`` are passed on as they are."""
    try:
        return int(value)
    except ValueError:
        return value


def fabric_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Fabric's flags: the explicit ones, plus this script's defaults unless the CLI launched us."""
    explicit = {name: getattr(args, name) for name in FABRIC_FLAGS if getattr(args, name) is not None}
    if os.environ.get("FABRIC_CLI_USED"):
        return explicit
    return {**DEFAULTS, **explicit}


def make_datasets(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """The digits, split 80/20 with a fixed seed; features standardised with the training statistics."""
    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)

    def to_dataset(x, y) -> TensorDataset:
        return TensorDataset(torch.tensor(scaler.transform(x), dtype=torch.float32), torch.tensor(y, dtype=torch.long))

    return to_dataset(x_train, y_train), to_dataset(x_test, y_test)


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def main(fabric: Fabric, args: argparse.Namespace) -> None:
    fabric.seed_everything(42)  # the same initial weights and shuffling on every process

    train_set, test_set = make_datasets()
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=256)
    # Under several processes each one gets its own shard of both loaders.
    train_loader, test_loader = fabric.setup_dataloaders(train_loader, test_loader)

    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    model, optimizer = fabric.setup(model, optimizer)
    loss_fn = nn.CrossEntropyLoss()

    for epoch in range(1, args.epochs + 1):
        model.train()
        total_loss = torch.zeros((), device=fabric.device)
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            fabric.backward(loss)
            optimizer.step()
            total_loss += loss.detach().float()
        epoch_loss = fabric.all_reduce(total_loss / len(train_loader), reduce_op="mean")
        fabric.print(f"epoch {epoch:2d}/{args.epochs}  train loss {epoch_loss.item():.4f}")

    model.eval()
    counts = torch.zeros(2, dtype=torch.long, device=fabric.device)  # correct, seen
    with torch.no_grad():
        for inputs, targets in test_loader:
            predictions = model(inputs).argmax(dim=1)
            counts[0] += (predictions == targets).sum()
            counts[1] += targets.numel()
    # Each process scored its own shard: add the counts up to score the whole test set.
    correct, seen = fabric.all_reduce(counts, reduce_op="sum").tolist()
    fabric.print(f"test accuracy: {correct / seen:.3f} ({correct}/{seen}, world size {fabric.world_size})")

    if args.save:
        fabric.save(args.save, {"model": model, "optimizer": optimizer, "epoch": args.epochs})
        fabric.print(f"checkpoint saved to {args.save}")


if __name__ == "__main__":
    arguments = parse_args()
    if os.environ.get("FABRIC_CLI_USED"):
        # `fabric run` has already started one process per device: just run.
        main(Fabric(**fabric_kwargs(arguments)), arguments)
    else:
        # launch() starts the other processes when --devices asks for several (a no-op for one).
        Fabric(**fabric_kwargs(arguments)).launch(main, arguments)
