"""Training losses and metrics of the coarse matcher.

All losses take the raw similarity matrix ``[B, L0, L1]`` the model returns (scores
already divided by the dual-softmax temperature) and compute in float32, so they are
safe under mixed precision.

* ``coarse_loss``: LoFTR's focal loss on the dual-softmax confidence at the ground-truth
  matches (positives) and, with a weight, on all other entries (negatives); with
  ``gamma=0`` and no negatives it is the plain cross-entropy ``-log P(i, j)``.
* ``distillation_loss``: the loss of Kolodiazhnyi (2022): the KL divergence between the
  teacher's and the student's score distributions softened by a temperature T (5),
  times T^2 (Hinton et al. 2015), averaged over the row- and the column-softmax.
* ``refinement_loss``: mean squared error of the sub-pixel offsets, in fine cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


UNKNOWN = -2  # ``cells1`` of a cell whose match nobody knows (sparse labels)


def log_dual_softmax(similarity: torch.Tensor) -> torch.Tensor:
    """log of the dual-softmax confidence, ``log softmax_rows + log softmax_columns``, float32."""
    similarity = similarity.float()
    return F.log_softmax(similarity, dim=1) + F.log_softmax(similarity, dim=2)


def positive_mask(cells1: torch.Tensor, num_cells1: int) -> torch.Tensor:
    """bool ``[B, L0, L1]``: True at the ground-truth matches (``cells1[b, i] >= 0``)."""
    valid = cells1 >= 0
    mask = F.one_hot(cells1.clamp(min=0), num_cells1).bool()
    return mask & valid[:, :, None]


def coarse_loss(
    similarity: torch.Tensor,
    cells1: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    negative_weight: float = 1.0,
) -> torch.Tensor:
    """Focal loss on the dual-softmax confidence at ground truth ``cells1`` ``[B, L0]``.

    ``cells1``: the matching cell of image 1, -1 for "no match", -2 for "unknown" (sparse
    teacher labels: ``coarse_loftr_train.label_pairs``). Positive term: ``-alpha (1 - p)^gamma
    log p`` averaged over the ground-truth matches; negative term: ``-alpha p^gamma log(1 - p)``
    averaged over all other entries of the rows that are not unknown, times ``negative_weight``.
    A batch without any ground-truth match contributes only its negative term.
    """
    log_p = log_dual_softmax(similarity)
    p = log_p.exp()
    positives = positive_mask(cells1, similarity.shape[2])
    loss = similarity.new_zeros((), dtype=torch.float32)
    if positives.any():
        lp = log_p[positives]
        loss = loss + (-alpha * (1 - lp.exp()).pow(gamma) * lp).mean()
    negatives = ~positives & (cells1 != UNKNOWN)[:, :, None]
    if negative_weight > 0 and negatives.any():
        pn = p[negatives].clamp(max=1 - 1e-6)
        loss = loss + negative_weight * (-alpha * pn.pow(gamma) * torch.log1p(-pn)).mean()
    return loss


def distillation_loss(student_similarity: torch.Tensor, teacher_similarity: torch.Tensor, temperature: float = 5.0) -> torch.Tensor:
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))`` over rows and over columns, averaged.

    Both matrices are ``[B, L0, L1]`` on the same coarse grids.
    """
    if student_similarity.shape != teacher_similarity.shape:
        raise ValueError(
            f"teacher scores {tuple(teacher_similarity.shape)} and student scores {tuple(student_similarity.shape)} "
            "must cover the same coarse grids; give the teacher images whose grid equals the student's"
        )
    student = student_similarity.float() / temperature
    teacher = teacher_similarity.detach().float() / temperature
    total = student.new_zeros(())
    for dim in (2, 1):
        log_s = F.log_softmax(student, dim=dim)
        log_t = F.log_softmax(teacher, dim=dim)
        kl = (log_t.exp() * (log_t - log_s)).sum(dim=dim)  # one KL per row (or column)
        total = total + kl.mean()
    return 0.5 * total * temperature**2


def refinement_loss(offsets: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, fine_stride: int) -> torch.Tensor:
    """Mean squared offset error in fine cells over the valid matches.

    ``offsets`` and ``target`` are ``[B, K, 2]`` pixels, ``valid`` bool ``[B, K]``.
    """
    if not valid.any():
        return offsets.sum() * 0.0
    error = (offsets.float() - target.float())[valid] / fine_stride
    return error.pow(2).sum(dim=1).mean()


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (0 switches a term off) and their settings."""

    coarse: float = 1.0
    distillation: float = 0.0
    refinement: float = 1.0
    temperature: float = 5.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    negative_weight: float = 1.0


def mutual_nearest_matches(confidence: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(matched bool ``[B, L0]``, best column ``[B, L0]``): mutual nearest neighbours above ``threshold``."""
    best_value, best_column = confidence.max(dim=2)
    column_best_row = confidence.argmax(dim=1)  # [B, L1]
    rows = torch.arange(confidence.shape[1], device=confidence.device)[None]
    mutual = torch.gather(column_best_row, 1, best_column) == rows
    return mutual & (best_value > threshold), best_column


@torch.no_grad()
def match_metrics(
    confidence: torch.Tensor, cells1: torch.Tensor, threshold: float = 0.2, teacher_confidence: torch.Tensor | None = None
) -> dict[str, float]:
    """Monitoring numbers of one batch.

    ``precision``: the share of mutual-nearest matches above ``threshold`` whose cell in
    image 1 is the ground-truth one; ``recall``: the share of ground-truth matches found;
    ``confidence_gt_mae``: mean ``|1 - P|`` at the ground-truth matches; with a teacher,
    ``confidence_teacher_mae``: mean ``|P_student - P_teacher|`` over the whole matrix.
    """
    matched, column = mutual_nearest_matches(confidence.float(), threshold)
    matched = matched & (cells1 != UNKNOWN)  # a match from an unlabelled cell is neither right nor wrong
    has_gt = cells1 >= 0
    correct = matched & has_gt & (column == cells1)
    num_matched = int(matched.sum())
    num_gt = int(has_gt.sum())
    metrics = {
        "precision": float(correct.sum()) / num_matched if num_matched else 0.0,
        "recall": float(correct.sum()) / num_gt if num_gt else 0.0,
        "matches": num_matched / confidence.shape[0],
    }
    if num_gt:
        at_gt = torch.gather(confidence.float(), 2, cells1.clamp(min=0)[:, :, None])[:, :, 0][has_gt]
        metrics["confidence_gt_mae"] = float((1 - at_gt).abs().mean())
    if teacher_confidence is not None:
        metrics["confidence_teacher_mae"] = float((confidence.float() - teacher_confidence.float()).abs().mean())
    return metrics
