"""Training and evaluation loops: AdamW with linear warm-up/decay, batches of sentences.

``fit`` reports progress through a callback (``{"phase", "epoch", "epochs", "step",
"steps", "loss", "val_accuracy"}``) every few steps and after each epoch's evaluation, so
the worker can write it on the job record. With ``teacher_probs`` it distils: the loss is
``alpha * KL(teacher || student at T) * T^2 + (1 - alpha) * cross-entropy`` (Hinton et al.).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

REPORT_EVERY_S = 1.0
TEMPERATURE = 2.0
ALPHA = 0.7


def batches(n: int, size: int, rng: random.Random | None = None) -> list[list[int]]:
    order = list(range(n))
    if rng is not None:
        rng.shuffle(order)
    return [order[i:i + size] for i in range(0, n, size)]


def encode(tok, texts: Sequence[str], max_len: int):
    enc = tok(list(texts), truncation=True, max_length=max_len, padding=True, return_tensors="pt",
              return_token_type_ids=False)
    return enc["input_ids"], enc["attention_mask"]


def predict(model, tok, texts: Sequence[str], max_len: int, batch: int = 64) -> np.ndarray:
    """Class probabilities, one row per text (eval mode, no gradients)."""
    model.eval()
    rows = []
    with torch.inference_mode():
        for idx in batches(len(texts), batch):
            ids, mask = encode(tok, [texts[i] for i in idx], max_len)
            rows.append(torch.softmax(model(ids, mask).float(), -1).numpy())
    return np.concatenate(rows) if rows else np.zeros((0, 2), np.float32)


def accuracy(probs: np.ndarray, labels: Sequence[int]) -> float:
    return float((probs.argmax(1) == np.asarray(labels)).mean()) if len(labels) else 0.0


def _loss(logits, y, soft):
    ce = torch.nn.functional.cross_entropy(logits, y)
    if soft is None:
        return ce
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / TEMPERATURE, -1), soft, reduction="batchmean")
    return ALPHA * kl * TEMPERATURE ** 2 + (1 - ALPHA) * ce


def fit(model, tok, train, val, *, epochs: int, lr: float, batch_size: int, max_len: int, seed: int,
        phase: str = "train", progress: Callable[[dict], None] = lambda _: None,
        teacher_probs: np.ndarray | None = None) -> dict:
    """Train ``model`` on ``train`` (examples with .text/.label); evaluate on ``val`` after
    each epoch. Returns the history (loss and validation accuracy per epoch)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    texts, labels = [e.text for e in train], [e.label for e in train]
    steps = epochs * len(batches(len(train), batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm + 1e-9))))
    soft_all = None if teacher_probs is None else torch.from_numpy(
        np.power(teacher_probs, 1 / TEMPERATURE) / np.power(teacher_probs, 1 / TEMPERATURE).sum(1, keepdims=True))
    history, step, last = [], 0, 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for idx in batches(len(train), batch_size, rng):
            ids, mask = encode(tok, [texts[i] for i in idx], max_len)
            soft = None if soft_all is None else soft_all[idx].float()
            loss = _loss(model(ids, mask), torch.tensor([labels[i] for i in idx]), soft)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            if time.monotonic() - last >= REPORT_EVERY_S or step == steps:
                last = time.monotonic()
                progress({"phase": phase, "epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
                          "loss": round(float(np.mean(losses[-20:])), 5)})
        val_acc = accuracy(predict(model, tok, [e.text for e in val], max_len), [e.label for e in val])
        history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 5), "val_accuracy": round(val_acc, 5)})
        progress({"phase": phase, "epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
                  "loss": history[-1]["loss"], "val_accuracy": history[-1]["val_accuracy"]})
    model.eval()
    return {"history": history, "steps": steps}
