"""The Python API (find_lr, fit_one_cycle, evaluate) with the user's own objects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrtool import fit_one_cycle
from lrtool.engine import evaluate, samples_in
from lrtool.errors import ConfigError


def test_samples_in_counts_the_samples_of_every_batch_shape():
    x = torch.zeros(7, 3)
    assert samples_in(x, torch.zeros(7)) == 7
    assert samples_in(x, torch.zeros(7, 3)) == 7
    assert samples_in(torch.zeros(3), torch.tensor(2)) == 1  # one unbatched sample
    assert samples_in(torch.zeros(5, 2), (torch.zeros(5, 1), torch.zeros(5))) == 5  # not 2
    assert samples_in(torch.zeros(6, 2), {"y": torch.zeros(6), "w": torch.zeros(6)}) == 6
    # Per-sample sequences in a list (a custom collate): one per sample, whatever their length.
    assert samples_in({"tokens": x}, [torch.zeros(9), torch.zeros(2)]) == 2
    assert samples_in(torch.zeros(4, 9), [torch.zeros(9)] * 4) == 4


def test_validation_runs_without_autograd():
    """A misplaced decorator once left evaluate with autograd on: every batch's graph stayed
    in memory until the pass ended."""
    seen = []

    class Spy(nn.Linear):
        def forward(self, x):
            seen.append(torch.is_grad_enabled())
            return super().forward(x)

    evaluate(Spy(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 3,
             nn.functional.cross_entropy)  # fmt: skip
    assert seen == [False] * 3


def test_validation_weighs_a_list_of_per_sample_targets_by_its_length():
    """Targets collated as a list of variable-length sequences: batches of 4 and 1 samples."""

    class Const(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x

    def loss(out, targets):
        return torch.stack([t.float().mean() for t in targets]).mean()

    batches = [
        ({"n": 4}, [torch.ones(3), torch.ones(5), torch.ones(2), torch.ones(7)]),
        ({"n": 1}, [torch.full((4,), 3.0)]),
    ]
    assert evaluate(Const(), batches, loss, device="cpu")["val_loss"] == pytest.approx(1.4)


def test_validation_loss_is_the_mean_over_samples_whatever_the_targets_hold():
    """Batches of 32, 32, 32 and 4 with (value, weight) targets: each batch weighs its 32 or 4
    samples, not the 2 parts of its target (the mean was 1.36 for a true 1.50)."""
    torch.manual_seed(0)
    x, y, w = torch.randn(100, 8), torch.randn(100, 1), torch.rand(100)
    batches = [(x[i : i + 32], (y[i : i + 32], w[i : i + 32])) for i in range(0, 100, 32)]
    model = nn.Linear(8, 1)

    def loss(out, target):
        return ((out - target[0]) ** 2).mean()

    got = evaluate(model, batches, loss)["val_loss"]
    with torch.no_grad():
        true = ((model(x) - y) ** 2).mean().item()
    assert got == pytest.approx(true, rel=1e-6)


def test_unbatched_validation_samples_are_averaged_one_each():
    torch.manual_seed(0)
    x, labels = torch.randn(20, 4), torch.randint(0, 2, (20,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, labels), batch_size=None)
    model = nn.Linear(4, 2)
    got = evaluate(model, loader, nn.functional.cross_entropy)["val_loss"]
    with torch.no_grad():
        true = nn.functional.cross_entropy(model(x), labels).item()
    assert got == pytest.approx(true, rel=1e-5)


def test_metrics_on_a_model_that_returns_a_dict_are_refused_in_words():
    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return {"logits": self.fc(x)}

    def loss(out, y):
        return nn.functional.cross_entropy(out["logits"], y)

    def accuracy(out, y):
        return (out.argmax(1) == y).sum()

    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    model = DictNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ConfigError, match=r"metrics \(accuracy\) take the model's output as one"):
        fit_one_cycle(model, data, data, opt, loss, 0.01, epochs=1, metrics={"accuracy": accuracy})
    # Without metrics the same model trains and validates.
    done = fit_one_cycle(model, data, data, opt, loss, 0.01, epochs=1)
    assert done.final["val_loss"] is not None


def test_find_lr_puts_back_modes_gradients_and_unsaved_buffers():
    """README: the model is left exactly as it was. A BatchNorm the user froze in eval mode
    came back in train mode, held gradients were erased, a non-persistent buffer kept counting."""
    from lrtool import find_lr

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)
            self.bn = nn.BatchNorm1d(8)
            self.head = nn.Linear(8, 2)
            self.register_buffer("seen", torch.zeros(()), persistent=False)

        def forward(self, x):
            self.seen += len(x)
            return self.head(self.bn(self.fc(x)))

    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    data = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    model = Net()
    model.train()
    model.bn.eval()
    nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    seen = model.seen.clone()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    find_lr(model, data, opt, nn.functional.cross_entropy, num_steps=12)

    assert model.training and not model.bn.training
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())
    assert torch.equal(model.seen, seen)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_find_lr_leaves_an_epoch_counter_of_the_users_own_alone():
    """A re-iterable source with an `epoch` attribute but no set_epoch: the sweep finished and
    then failed putting the epoch back (AttributeError, the result lost)."""
    from lrtool import find_lr

    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))

    class Counted:
        def __init__(self):
            self.epoch = 0

        def __iter__(self):
            self.epoch += 1
            for i in range(0, 64, 16):
                yield x[i : i + 16], y[i : i + 16]

    data = Counted()
    model = nn.Linear(4, 2)
    found = find_lr(
        model, data, torch.optim.SGD(model.parameters(), lr=0.1), nn.functional.cross_entropy,
        num_steps=20,
    )  # fmt: skip
    assert found.steps > 4 and data.epoch > 1


def test_fit_one_cycle_does_not_replace_another_runs_checkpoint(tmp_path):
    """checkpoint=DIR replaced the checkpoint.pt of the run already there; resume=it goes on."""
    torch.manual_seed(0)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(3)]

    def fresh():
        model = nn.Linear(4, 2)
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    model, opt = fresh()
    fit_one_cycle(model, data, None, opt, nn.functional.cross_entropy, 0.1, epochs=2,
                  checkpoint=tmp_path)  # fmt: skip
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    other, other_opt = fresh()
    with pytest.raises(ConfigError, match="already holds another run's checkpoint.pt"):
        fit_one_cycle(other, data, None, other_opt, nn.functional.cross_entropy, 0.1, epochs=2,
                      checkpoint=tmp_path)  # fmt: skip
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved
    again, again_opt = fresh()
    resumed = fit_one_cycle(again, data, None, again_opt, nn.functional.cross_entropy, 0.1,
                            epochs=2, checkpoint=tmp_path, resume=tmp_path)  # fmt: skip
    assert resumed.stop_reason == "completed"


@pytest.mark.parametrize(
    "batch, got",
    [
        ({"x": torch.randn(8, 4), "y": torch.randint(0, 2, (8,))}, "a dict with keys 'x', 'y'"),
        ((torch.randn(8, 4), torch.randint(0, 2, (8,)), torch.ones(8)), "a tuple of 3"),
    ],
)
def test_batches_that_are_not_pairs_are_refused_in_words(batch, got):
    """A dict batch was unpacked into its keys ("linear(): argument 'input' must be Tensor,
    not str"); a triple failed to unpack."""
    from lrtool import find_lr

    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for call in (
        lambda: find_lr(model, [batch] * 4, opt, nn.functional.cross_entropy, num_steps=8),
        lambda: fit_one_cycle(
            model, [batch] * 4, None, opt, nn.functional.cross_entropy, 0.1, epochs=1
        ),  # fmt: skip
        lambda: evaluate(model, [batch], nn.functional.cross_entropy),
    ):
        with pytest.raises(ConfigError, match=f"must yield \\(inputs, targets\\) pairs.*{got}"):
            call()


def test_the_engine_refuses_what_the_schema_refuses_in_its_own_words():
    """Tracebacks from deep inside (StopIteration, NaN to int, str < int, a missing closure)
    for arguments a notebook passes; numpy integers are whole numbers."""
    import numpy as np

    from lrtool import find_lr

    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    data = [(x, y)] * 4
    model = nn.Linear(8, 2)
    ce = nn.functional.cross_entropy

    def sgd():
        return torch.optim.SGD(model.parameters(), lr=0.1)

    refused = {
        "start_lr and end_lr must be numbers": [
            lambda: find_lr(model, data, sgd(), ce, end_lr=float("inf"), num_steps=10),
            lambda: find_lr(model, data, sgd(), ce, start_lr="1e-5", num_steps=10),
        ],
        "num_steps must be a whole number": [
            lambda: find_lr(model, data, sgd(), ce, num_steps=10.0),
        ],
        "LBFGS cannot be used with lrtool": [
            lambda: find_lr(model, data, torch.optim.LBFGS(model.parameters()), ce, num_steps=10),
            lambda: fit_one_cycle(
                model, data, None, torch.optim.LBFGS(model.parameters()), ce, 0.01, epochs=1
            ),  # fmt: skip
        ],
        "pct_start must be between 0 and 1": [
            lambda: fit_one_cycle(model, data, None, sgd(), ce, 0.01, epochs=1, pct_start="0.3"),
        ],
        "div_factor and train.final_div_factor must be positive": [
            lambda: fit_one_cycle(model, data, None, sgd(), ce, 0.01, epochs=1, div_factor=None),
        ],
    }
    for message, calls in refused.items():
        for call in calls:
            with pytest.raises(ConfigError, match=message):
                call()

    class Wrapper(nn.Module):  # no parameters of its own: the optimizer holds the inner model's
        def forward(self, inputs):
            return model(inputs)

    assert find_lr(Wrapper(), data, sgd(), ce, num_steps=10).steps > 0
    done = fit_one_cycle(model, data, None, sgd(), ce, 0.01, epochs=np.int64(2))
    assert done.stop_reason == "completed" and len(done.epochs) == 2


def test_find_lr_puts_back_what_a_wrapper_steps_and_a_resized_buffer():
    """A wrapper holding no parameters of its own (the optimizer steps the inner model's) was
    left with the sweep's weights and gradients; a cache buffer the forward resized made the
    restore fail after the whole sweep."""
    from lrtool import find_lr

    inner = nn.Linear(8, 2)
    before = {k: v.clone() for k, v in inner.state_dict().items()}

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("cache", torch.zeros(2), persistent=False)

        def forward(self, x):
            self.cache = torch.zeros(len(x))  # resized by every batch
            return inner(x)

    wrapper = Wrapper()
    data = [(torch.randn(5, 8), torch.randint(0, 2, (5,)))] * 4
    opt = torch.optim.SGD(inner.parameters(), lr=0.1)
    find_lr(wrapper, data, opt, nn.functional.cross_entropy, num_steps=20)
    assert all(torch.equal(v, before[k]) for k, v in inner.state_dict().items())
    assert all(p.grad is None for p in inner.parameters())
    assert wrapper.cache.shape == (2,)


def test_sparse_adam_still_trains_an_all_sparse_model_in_python():
    """Only the YAML path refuses SparseAdam (its models have dense layers); a model of sparse
    embeddings alone is its right use."""
    from lrtool import find_lr

    class Factors(nn.Module):
        def __init__(self):
            super().__init__()
            self.users = nn.Embedding(10, 4, sparse=True)
            self.items = nn.Embedding(10, 4, sparse=True)

        def forward(self, pairs):
            return (self.users(pairs[:, 0]) * self.items(pairs[:, 1])).sum(1)

    torch.manual_seed(0)
    data = [(torch.randint(0, 10, (16, 2)), torch.randn(16)) for _ in range(4)]
    model = Factors()
    opt = torch.optim.SparseAdam(list(model.parameters()), lr=0.01)
    assert find_lr(model, data, opt, nn.functional.mse_loss, num_steps=10).steps > 0
    done = fit_one_cycle(model, data, None, opt, nn.functional.mse_loss, 0.01, epochs=1)
    assert done.stop_reason == "completed"


def test_an_empty_validation_shard_adds_nothing_to_the_mean():
    """Under torchrun a rank with no validation sample (fewer samples than processes) got an
    empty batch whose mean loss is NaN, and NaN x 0 made the global val_loss NaN."""
    model = nn.Linear(4, 2)
    empty = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert evaluate(model, [empty], nn.functional.cross_entropy)["val_loss"] is None
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with torch.no_grad():
        true = nn.functional.cross_entropy(model(x), y).item()
    got = evaluate(model, [empty, (x, y)], nn.functional.cross_entropy)["val_loss"]
    assert got == pytest.approx(true, rel=1e-6)
