"""Per-class counts against scikit-learn on random predictions (ties, absent classes), and ReaL known answers."""

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, precision_score, recall_score, top_k_accuracy_score

from datamodules.configkit import ConfigError
from lightning_modules.metrics.per_class_metrics import PerClassCounts, label_rank
from lightning_modules.metrics.real_labels import RealLabels, imagenet_wnids

C = 12
ABSENT = {3, 7}  # classes with no validation image at all


def random_batches(seed: int, n_batches: int = 6):
    g = torch.Generator().manual_seed(seed)
    present = torch.tensor([c for c in range(C) if c not in ABSENT])
    for _ in range(n_batches):
        n = int(torch.randint(1, 40, (1,), generator=g))
        labels = present[torch.randint(0, len(present), (n,), generator=g)]
        # Integer scores in a small range: many exact ties, also around the top-1 and the top-5 boundary.
        logits = torch.randint(0, 4, (n, C), generator=g).float()
        yield logits, labels


def accumulate(seed: int, confusion: bool = True):
    counts = PerClassCounts(C, confusion_matrix=confusion)
    all_logits, all_labels = [], []
    for logits, labels in random_batches(seed):
        counts.update(logits, labels)
        all_logits.append(logits)
        all_labels.append(labels)
    result = counts.reduce(lambda t: t, [f"c{i}" for i in range(C)])
    return result, torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_match_sklearn(seed):
    result, scores, y = accumulate(seed)
    y_pred = scores.argmax(1)  # numpy: first maximum on ties, like torch
    labels = np.arange(C)
    cm = confusion_matrix(y, y_pred, labels=labels)
    np.testing.assert_array_equal(result.confusion, cm)
    np.testing.assert_array_equal(result.total, cm.sum(1))
    np.testing.assert_array_equal(result.correct, np.diag(cm))
    np.testing.assert_array_equal(result.predicted, cm.sum(0))
    assert all(result.total[c] == 0 for c in ABSENT)
    np.testing.assert_allclose(
        result.recall, recall_score(y, y_pred, labels=labels, average=None, zero_division=np.nan)
    )
    np.testing.assert_allclose(
        result.precision, precision_score(y, y_pred, labels=labels, average=None, zero_division=np.nan)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top5_with_ties_matches_sklearn(seed):
    result, scores, y = accumulate(seed)
    # sklearn ranks tied scores by descending column index; ours by ascending class index (like argmax).
    # Reversing the columns turns one rule into the other.
    reversed_scores, reversed_y = scores[:, ::-1], C - 1 - y
    assert (scores == scores.max(1, keepdims=True)).sum(1).max() > 1  # the data really has ties at the top
    for c in range(C):
        mask = y == c
        expected = (
            top_k_accuracy_score(reversed_y[mask], reversed_scores[mask], k=5, labels=np.arange(C), normalize=False)
            if mask.any()
            else 0
        )
        assert result.top5_correct[c] == expected, c
    # Top-1 under the same tie rule is argmax.
    ranks = label_rank(torch.from_numpy(scores), torch.from_numpy(y))
    np.testing.assert_array_equal((ranks == 0).numpy(), scores.argmax(1) == y)


def test_summary_numbers():
    result, scores, y = accumulate(0)
    acc = np.array([np.mean(scores[y == c].argmax(1) == c) for c in range(C) if c not in ABSENT])
    s = result.summary(worst_fraction=0.25)
    assert s["samples"] == len(y) and s["classes_evaluated"] == C - len(ABSENT)
    assert s["accuracy"] == pytest.approx(np.mean(scores.argmax(1) == y))
    assert s["mean_class_accuracy"] == pytest.approx(acc.mean())
    assert s["worst_class_accuracy"] == pytest.approx(acc.min())
    assert s["class_accuracy_std"] == pytest.approx(acc.std())
    assert s["worst_fraction_mean_accuracy"] == pytest.approx(np.sort(acc)[:3].mean())  # ceil(0.25 * 10) = 3
    assert "real_accuracy" not in s


def test_reduce_resets_and_sums_in_one_call():
    counts = PerClassCounts(4, confusion_matrix=True)
    counts.update(torch.eye(4), torch.arange(4))
    calls = []

    def double(t):  # stands in for a 2-rank all-reduce where both ranks saw the same data
        calls.append(t.shape)
        return t * 2

    result = counts.reduce(double, list("abcd"))
    assert len(calls) == 1 and result.total.tolist() == [2] * 4 and result.confusion.trace() == 8
    assert all(int(b.sum()) == 0 for b in counts.buffers())


# ReaL: ILSVRC2012_val_00000001 -> [], _00000002 -> [970 alp, 795 ski], _00000003 -> [230, 231],
# _00000004 -> [809] (outside the classes below), _00000005 -> [516, 850] (outside).
REAL_CLASSES = [230, 231, 795, 970, 809]


def test_real_known_answers():
    wnids = imagenet_wnids()
    assert wnids[0] == "n01440764" and len(wnids) == 1000
    class_names = sorted(wnids[i] for i in REAL_CLASSES)
    idx = {c: class_names.index(wnids[c]) for c in REAL_CLASSES}
    real = RealLabels("imagenet-x", class_names)
    keys = [
        f"{wnids[65]}_ILSVRC2012_val_00000001",  # empty ReaL set: skipped (class not in run, label 4 used)
        f"{wnids[970]}_ILSVRC2012_val_00000002",  # label alp; predicted ski: wrong, but ReaL-correct
        f"{wnids[230]}_ILSVRC2012_val_00000003",  # label 230; predicted 231: wrong, but ReaL-correct
        f"{wnids[809]}_ILSVRC2012_val_00000004",  # label 809; predicted 809: right and ReaL-right
        f"{wnids[230]}_ILSVRC2012_val_00000005",
    ]  # ReaL {516, 850}: none of the run's classes -> skipped
    labels = torch.tensor([idx[809], idx[970], idx[230], idx[809], idx[230]])
    predicted = [idx[230], idx[795], idx[231], idx[809], idx[230]]
    logits = torch.nn.functional.one_hot(torch.tensor(predicted), len(class_names)).float()
    target, valid = real.targets(keys)
    assert valid.tolist() == [False, True, True, True, False]
    assert target[1].nonzero().flatten().tolist() == sorted([idx[970], idx[795]])

    counts = PerClassCounts(len(class_names), real_labels=True)
    counts.update(logits, labels, target, valid)
    r = counts.reduce(lambda t: t, class_names)
    expect = {230: (1, 2, 1, 1), 970: (0, 1, 1, 1), 809: (1, 2, 1, 1), 231: (0, 0, 0, 0), 795: (0, 0, 0, 0)}
    for cls, (correct, total, real_correct, real_total) in expect.items():
        i = idx[cls]
        assert (r.correct[i], r.total[i], r.real_correct[i], r.real_total[i]) == (
            correct,
            total,
            real_correct,
            real_total,
        )
    s = r.summary()
    assert s["real_samples"] == 3 and s["real_accuracy"] == 1.0 and s["accuracy"] == pytest.approx(2 / 5)


def test_real_errors_name_the_problem():
    with pytest.raises(ConfigError, match="WordNet id.*'airplane'"):
        RealLabels("imagenet-x", ["airplane", "n01440764"])
    with pytest.raises(ConfigError, match="does not exist"):
        RealLabels("/nonexistent/real.json", ["n01440764"])
    real = RealLabels("imagenet-x", ["n01440764"])
    with pytest.raises(ValueError, match="airplane_0001.*ILSVRC2012_val_XXXXXXXX"):
        real.targets(["airplane_0001"])
    with pytest.raises(ValueError, match="sample keys"):
        real.targets(None)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_logits_are_never_correct(bad):
    labels = torch.arange(C).repeat(3)
    all_bad = torch.full((len(labels), C), bad)
    one_bad = torch.nn.functional.one_hot(labels, C).float()  # right answers, but one logit per row is not finite
    one_bad[torch.arange(len(labels)), (labels + 1) % C] = bad
    counts = PerClassCounts(C, confusion_matrix=True, real_labels=True)
    for logits in (all_bad, one_bad):
        counts.update(logits, labels, torch.ones(len(labels), C, dtype=torch.bool), torch.ones(len(labels), dtype=bool))
    r = counts.reduce(lambda t: t, [f"c{i}" for i in range(C)])
    assert r.total.tolist() == [6] * C
    assert r.correct.sum() == r.top5_correct.sum() == r.real_correct.sum() == r.predicted.sum() == 0
    assert r.nonfinite.tolist() == [6] * C
    assert r.confusion.sum() == 0  # no predicted class for these images
    s = r.summary()
    assert s["accuracy"] == s["top5_accuracy"] == s["mean_class_accuracy"] == 0.0 and s["nonfinite_samples"] == 6 * C
    finite = PerClassCounts(C)
    finite.update(torch.nn.functional.one_hot(labels, C).float(), labels)
    assert finite.reduce(lambda t: t, list(range(C))).summary()["nonfinite_samples"] == 0


@pytest.mark.parametrize("arch", ["resnet18", "resnet20"])
def test_the_head_and_the_counts_are_float32_under_bf16_autocast(arch):
    from lightning_modules.models import build_model

    model = build_model(arch, 2, image_size=32).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 3, 32, 32)).dtype == torch.float32
        # Class 1 scores 10.02, class 0 scores 10.0: one bf16 step at 10 is 0.0625, so bf16 logits tie.
        features = torch.zeros(1, model.fc.in_features)
        features[0, 0] = 1.0
        weight = torch.zeros(2, model.fc.in_features)
        weight[:, 0] = torch.tensor([10.0, 10.02])
        model.fc.weight.copy_(weight)
        model.fc.bias.zero_()
        plain = torch.nn.Linear(model.fc.in_features, 2)
        plain.load_state_dict(model.fc.state_dict())
        bf16_logits, logits = plain(features), model.fc(features)
    assert bf16_logits.dtype == torch.bfloat16 and bf16_logits[0, 0] == bf16_logits[0, 1]  # the tie this avoids
    assert logits.dtype == torch.float32 and logits.argmax(1).item() == 1
    counts = PerClassCounts(2)
    counts.update(logits, torch.tensor([1]))
    assert counts.reduce(lambda t: t, ["a", "b"]).correct.tolist() == [0, 1]
    assert set(model.state_dict()) >= {"fc.weight", "fc.bias"}  # checkpoints keep their keys
