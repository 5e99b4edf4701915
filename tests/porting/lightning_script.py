"""A small Lightning Fabric training run, written the way a Lightning user writes one.

This file is the reference for tests/porting/test_porting_script.py: it runs as it is with
Lightning, and again with its imports changed to fabric-core's by the mapping of docs/porting.md
(tests/porting/port.py); the two runs must produce the same results. Nothing in it knows about the
test: it only takes a folder to write into.

    python lightning_script.py --out-dir runs/lightning     # two processes on CPU, started by launch()

What it does: two processes on CPU with DDP and bf16 autocast, a CSV logger, gradient accumulation
under no_backward_sync, gradient clipping, a metric averaged over the processes, a validation pass,
a checkpoint saved and loaded into freshly built objects that then train one more epoch. Rank 0
writes results.json: the loss of every step, the final parameters, what was logged and what load
returned.
"""

import argparse
import hashlib
import json
import os

import torch
from lightning.fabric import Fabric, seed_everything
from lightning.fabric.loggers import CSVLogger
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

FEATURES, CLASSES = 16, 4
ACCUMULATE = 2  # micro-batches per optimizer step
EPOCHS = 2  # then save, load into fresh objects and train one more


def make_data(n):
    generator = torch.Generator().manual_seed(1234)  # the same samples in every process
    inputs = torch.randn(n, FEATURES, generator=generator)
    targets = (inputs[:, :CLASSES] + 0.1 * torch.randn(n, CLASSES, generator=generator)).argmax(dim=1)
    return TensorDataset(inputs, targets)


def make_model():
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, CLASSES))


def make_optimizer(model):
    return torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)


def train_epoch(fabric, model, optimizer, loader, epoch, step, history):
    model.train()
    for index, (inputs, targets) in enumerate(loader):
        is_accumulating = (index + 1) % ACCUMULATE != 0
        with fabric.no_backward_sync(model, enabled=is_accumulating):
            loss = F.cross_entropy(model(inputs), targets)
            fabric.backward(loss / ACCUMULATE)
        history["micro_batch_loss"].append(loss.item())
        if is_accumulating:
            continue
        grad_norm = fabric.clip_gradients(model, optimizer, max_norm=0.5)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        mean_loss = fabric.all_reduce(loss.detach(), reduce_op="mean")
        history["step_loss"].append(mean_loss.item())
        history["grad_norm"].append(grad_norm.item())
        fabric.log_dict({"train_loss": mean_loss, "grad_norm": grad_norm, "epoch": epoch}, step=step)
    return step


@torch.no_grad()
def validate(fabric, model, loader, epoch, step, history):
    model.eval()
    correct = torch.zeros((), device=fabric.device)
    total = torch.zeros((), device=fabric.device)
    for inputs, targets in loader:
        correct += (model(inputs).argmax(dim=1) == targets).sum()
        total += targets.numel()
    accuracy = fabric.all_reduce(correct, reduce_op="sum") / fabric.all_reduce(total, reduce_op="sum")
    history["val_accuracy"].append(accuracy.item())
    fabric.log("val_accuracy", accuracy, step=step)
    fabric.print(f"epoch {epoch}: validation accuracy {accuracy.item():.3f}")


def parameters_of(model):
    return {name: p.detach().float().flatten().tolist() for name, p in model.named_parameters()}


def checksum(model):
    digest = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@rank_zero_only
def write_results(path, results):
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()

    logger = CSVLogger(root_dir=os.path.join(args.out_dir, "logs"), name="porting", version=0)
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp", precision="bf16-mixed", loggers=logger)
    fabric.launch()
    seed_everything(42)

    train_loader = DataLoader(make_data(256), batch_size=16, shuffle=True)
    val_loader = DataLoader(make_data(64), batch_size=32)
    train_loader, val_loader = fabric.setup_dataloaders(train_loader, val_loader)

    model = make_model()
    optimizer = make_optimizer(model)
    model, optimizer = fabric.setup(model, optimizer)

    history = {"micro_batch_loss": [], "step_loss": [], "grad_norm": [], "val_accuracy": []}
    step = 0
    for epoch in range(EPOCHS):
        step = train_epoch(fabric, model, optimizer, train_loader, epoch, step, history)
        validate(fabric, model, val_loader, epoch, step, history)

    checkpoint = os.path.join(args.out_dir, "checkpoint.ckpt")
    fabric.save(checkpoint, {"model": model, "optimizer": optimizer, "step": step, "epoch": EPOCHS - 1})
    saved_checksum = checksum(model)

    # Resume into objects built from scratch, as a new run would.
    fresh_model = make_model()
    fresh_optimizer = make_optimizer(fresh_model)
    fresh_model, fresh_optimizer = fabric.setup(fresh_model, fresh_optimizer)
    remainder = fabric.load(checkpoint, {"model": fresh_model, "optimizer": fresh_optimizer})
    loaded_checksum = checksum(fresh_model)
    optimizer_steps = [int(s["step"]) for s in fresh_optimizer.state_dict()["state"].values()]

    step = train_epoch(fabric, fresh_model, fresh_optimizer, train_loader, EPOCHS, remainder["step"], history)
    validate(fabric, fresh_model, val_loader, EPOCHS, step, history)
    fabric.barrier()
    fabric.logger.finalize("success")

    write_results(
        os.path.join(args.out_dir, "results.json"),
        {
            "world_size": fabric.world_size,
            "history": history,
            "load_returned": {key: remainder[key] for key in sorted(remainder)},
            "saved_checksum": saved_checksum,
            "loaded_checksum": loaded_checksum,
            "loaded_optimizer_steps": optimizer_steps,
            "final_checksum": checksum(fresh_model),
            "final_parameters": parameters_of(fresh_model),
            "log_dir": logger.log_dir,
        },
    )


if __name__ == "__main__":
    main()
