"""What a model must beat: always predicting the training split's majority class (or mean), and a
linear model on the same encoded inputs, fitted on the same training split.

`evaluate` shows both beside the model, so a user sees at once whether the network learned more
than a constant or a logistic / ridge regression would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from dltrain.task import INDEX, NUMERIC, ZERO_ONE, Task
from dltrain.train import metrics as metric_registry

# A linear model is fitted on at most this many input values (rows x features): tables fit whole;
# beyond it, the rows are subsampled (seeded), which changes a linear model's figures very little.
LINEAR_VALUES = 20_000_000
# The L2 penalty, per row: scikit-learn's defaults (LogisticRegression C=1, Ridge alpha=1).
PENALTY = 1.0


@dataclass
class Baseline:
    name: str  # "majority", "mean" or "linear"
    what: str  # in words, for the table's note
    metrics: dict[str, float]


def constant(task: Task, y_train: torch.Tensor, y_eval: torch.Tensor, names: tuple[str, ...], split: str) -> Baseline:
    """The training majority class for every row (or the training mean, in the target's own units)."""
    n = y_eval.shape[0]
    if task.target_type == NUMERIC:
        train, actual = task.values(y_train.cpu()), task.values(y_eval.cpu())
        mean = float(train.mean())
        plain = Task(NUMERIC, task.form, "values")
        outcome = metric_registry.Outcome(plain, torch.full((n, 1), mean, dtype=torch.float64), actual.reshape(-1, 1), split)
        return Baseline("mean", f"always {_number(mean)}, the training mean", metric_registry.compute(names, outcome))
    labels = task.labels(y_train.cpu())
    counts = torch.bincount(labels, minlength=len(task.classes)).float()
    majority = int(counts.argmax())
    if task.form == ZERO_ONE:
        output = torch.full((n, 1), 1.0 if majority == 1 else -1.0)
    else:
        output = torch.full((n, len(task.classes)), -1.0)
        output[:, majority] = 1.0
    plain = Task(task.target_type, task.form, "logits", task.classes)
    outcome = metric_registry.Outcome(plain, output, y_eval.cpu(), split)
    share = float(counts[majority] / counts.sum().clamp_min(1))
    return Baseline("majority", f"always '{task.classes[majority]}', {share:.0%} of the training rows", metric_registry.compute(names, outcome))


def linear(
    task: Task,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_eval: torch.Tensor,
    y_eval: torch.Tensor,
    names: tuple[str, ...],
    split: str,
    seed: int = 0,
    threshold: str | None = None,
) -> Baseline:
    """A linear model (multinomial or binary logistic regression, or ridge regression) on the
    flattened encoded inputs, standardized, fitted to convergence with L-BFGS on the training split.

    A binary target's rows are called positive above the model's own threshold (`task.threshold`,
    train.threshold as given); with `threshold="auto"` the linear model chooses its own as the model
    did, the one that maximizes the positive class's F1, on its training split's outputs (the rows
    scored are never used to choose it)."""
    x_train, x_eval = _flat(x_train), _flat(x_eval)
    y_train, y_eval = y_train.cpu(), y_eval.cpu()
    features = x_train.shape[1]
    if x_train.shape[0] * features > LINEAR_VALUES:
        keep = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(seed))[: max(1, LINEAR_VALUES // features)]
        x_train, y_train = x_train[keep], y_train[keep]
    # standardized on the training split, as scikit-learn's pipelines would: encodings differ in scale
    mean, std = x_train.mean(0), x_train.std(0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    x_train, x_eval = (x_train - mean) / std, (x_eval - mean) / std
    outputs = len(task.classes) if task.form == INDEX else 1
    if task.form == INDEX:
        loss_fn, target = nn.functional.cross_entropy, task.labels(y_train)
    elif task.form == ZERO_ONE:
        loss_fn, target = nn.functional.binary_cross_entropy_with_logits, y_train.float().reshape(-1, 1)
    else:
        loss_fn, target = nn.functional.mse_loss, y_train.float().reshape(-1, 1)
    penalty = PENALTY / max(1, x_train.shape[0])
    ones = torch.ones(x_train.shape[0], 1)
    design = torch.cat([x_train, ones], 1)  # the bias as a last input of ones, not penalized

    def objective(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = w.detach().requires_grad_(True)
        weights = w.reshape(features + 1, outputs)
        loss = loss_fn(design @ weights, target) + 0.5 * penalty * weights[:-1].pow(2).sum()
        (grad,) = torch.autograd.grad(loss, w)
        return loss.detach(), grad

    with torch.enable_grad():
        w = minimize(objective, torch.zeros((features + 1) * outputs))
    output = torch.cat([x_eval, torch.ones(x_eval.shape[0], 1)], 1) @ w.reshape(features + 1, outputs)
    if task.form == INDEX or task.form == ZERO_ONE:
        plain = Task(task.target_type, task.form, "logits", task.classes, threshold=task.threshold)
        what = "logistic regression"
        if task.form == ZERO_ONE and threshold == "auto":
            plain = replace(plain, threshold=metric_registry.best_f1_threshold(plain, design @ w.reshape(features + 1, outputs), target))
            what += f" (threshold {plain.threshold:.3g}, the best F1 on the train split)"
        elif task.form == ZERO_ONE and task.threshold != 0.5:
            what += f" (threshold {task.threshold:.3g}, the model's)"
        outcome = metric_registry.Outcome(plain, output.float(), y_eval, split)
    else:
        outcome = metric_registry.Outcome(task, output, y_eval.float().reshape(-1, 1), split)
        what = "ridge regression"
    return Baseline("linear", f"{what} on the same {features} encoded inputs, fitted on the train split", metric_registry.compute(names, outcome))


def minimize(objective, w: torch.Tensor, iterations: int = 200, memory: int = 10, tolerance: float = 1e-6) -> torch.Tensor:
    """L-BFGS (Nocedal and Wright, algorithm 7.4) with a backtracking line search: the minimum of a
    smooth convex `objective(w) -> (loss, gradient)`. Written here because the first torch.optim
    optimizer of a process imports torch._dynamo: about a second, for nothing else evaluate does."""
    loss, grad = objective(w)
    history: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    for _ in range(iterations):
        if float(grad.abs().max()) < tolerance:
            break
        q, alphas = grad.clone(), []
        for s, y, rho in reversed(history):
            alpha = rho * float(s @ q)
            q -= alpha * y
            alphas.append(alpha)
        if history:
            s, y, _ = history[-1]
            q *= float(s @ y) / float(y @ y)
        for (s, y, rho), alpha in zip(history, reversed(alphas)):
            q += s * (alpha - rho * float(y @ q))
        direction, slope = -q, -float(grad @ q)
        if slope >= 0:  # not a descent direction: start again from the gradient
            history.clear()
            direction, slope = -grad, -float(grad @ grad)
        step = 1.0 if history else min(1.0, 1.0 / max(float(grad.abs().sum()), 1e-12))
        while True:
            new = w + step * direction
            new_loss, new_grad = objective(new)
            if float(new_loss) <= float(loss) + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        s, y = new - w, new_grad - grad
        if float(s @ y) > 1e-12:
            history = [*history[-(memory - 1):], (s, y, 1.0 / float(s @ y))]
        done = abs(float(loss) - float(new_loss)) <= tolerance * max(1.0, abs(float(loss)))
        w, loss, grad = new, new_loss, new_grad
        if done:
            break
    return w


def linear_fits(x: torch.Tensor) -> bool:
    """Whether a linear model on these inputs is a baseline worth showing: numbers per row (a
    table's encoded columns), not token ids or images."""
    return x.is_floating_point() and x.dim() == 2


def _flat(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x.detach().cpu().float().reshape(x.shape[0], -1))


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"
