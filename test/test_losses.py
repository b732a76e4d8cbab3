"""Coarse focal loss, distillation KL, refinement loss and monitoring metrics."""

from __future__ import annotations


import pytest
import torch

from coarse_loftr_train.losses import coarse_loss, distillation_loss, log_dual_softmax, match_metrics, refinement_loss


def _peaked(cells1: torch.Tensor, num_cells1: int, strength: float) -> torch.Tensor:
    similarity = torch.zeros(cells1.shape[0], cells1.shape[1], num_cells1)
    for b in range(cells1.shape[0]):
        for i, j in enumerate(cells1[b].tolist()):
            if j >= 0:
                similarity[b, i, j] = strength
    return similarity


def test_log_dual_softmax_is_the_log_of_the_confidence():
    similarity = torch.randn(2, 5, 6) * 3
    confidence = similarity.softmax(1) * similarity.softmax(2)
    torch.testing.assert_close(log_dual_softmax(similarity).exp(), confidence)


def test_coarse_loss_is_lower_when_the_ground_truth_is_confident():
    cells1 = torch.tensor([[2, 0, -1, 3], [1, -1, 0, 2]])
    right = coarse_loss(_peaked(cells1, 5, 10.0), cells1)
    wrong = coarse_loss(_peaked(torch.tensor([[0, 1, -1, 2], [2, -1, 1, 0]]), 5, 10.0), cells1)
    flat = coarse_loss(torch.zeros(2, 4, 5), cells1)
    assert right < flat < wrong


def test_cross_entropy_case_matches_the_formula():
    similarity = torch.randn(1, 3, 4)
    cells1 = torch.tensor([[1, -1, 3]])
    log_p = log_dual_softmax(similarity)
    expected = -(log_p[0, 0, 1] + log_p[0, 2, 3]) / 2
    torch.testing.assert_close(coarse_loss(similarity, cells1, alpha=1.0, gamma=0.0, negative_weight=0.0), expected)


def test_coarse_loss_without_ground_truth_is_finite_and_differentiable():
    similarity = torch.randn(1, 4, 4, requires_grad=True)
    loss = coarse_loss(similarity, torch.full((1, 4), -1))
    loss.backward()
    assert torch.isfinite(loss) and similarity.grad is not None


def test_distillation_loss_matches_a_direct_kl_and_scales_with_t_squared():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 4) * 4, torch.randn(2, 3, 4) * 4
    t = 5.0
    expected = 0.0
    for dim in (1, 2):
        p_t = torch.softmax(teacher / t, dim)
        p_s = torch.softmax(student / t, dim)
        kl = (p_t * (p_t.log() - p_s.log())).sum(dim)
        expected += 0.5 * kl.mean() * t * t
    torch.testing.assert_close(distillation_loss(student, teacher, t), expected)
    assert float(distillation_loss(teacher.clone(), teacher, t)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same coarse grids"):
        distillation_loss(student, torch.randn(2, 3, 5))


def test_distillation_gradient_pulls_the_student_to_the_teacher():
    teacher = torch.randn(1, 6, 6) * 5
    student = torch.zeros(1, 6, 6, requires_grad=True)
    optimizer = torch.optim.SGD([student], lr=1.0)
    losses = []
    for _ in range(50):
        optimizer.zero_grad()
        loss = distillation_loss(student, teacher)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_refinement_loss_counts_only_valid_matches_in_fine_cells():
    offsets = torch.tensor([[[4.0, 0.0], [100.0, 100.0]]])
    target = torch.zeros(1, 2, 2)
    valid = torch.tensor([[True, False]])
    assert float(refinement_loss(offsets, target, valid, fine_stride=4)) == pytest.approx(1.0)
    assert float(refinement_loss(offsets, target, torch.zeros(1, 2, dtype=torch.bool), 4)) == 0.0


def test_match_metrics_of_a_perfect_and_of_a_wrong_matrix():
    cells1 = torch.tensor([[2, 0, 1, -1]])
    perfect = torch.zeros(1, 4, 3)
    perfect[0, 0, 2] = perfect[0, 1, 0] = perfect[0, 2, 1] = 0.9
    metrics = match_metrics(perfect, cells1, threshold=0.2)
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0 and metrics["matches"] == 3
    assert metrics["confidence_gt_mae"] == pytest.approx(0.1)
    wrong = torch.zeros(1, 4, 3)
    wrong[0, 0, 1] = wrong[0, 1, 2] = 0.9
    metrics = match_metrics(wrong, cells1, threshold=0.2, teacher_confidence=perfect)
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0
    assert metrics["confidence_teacher_mae"] == pytest.approx(5 * 0.9 / 12)
