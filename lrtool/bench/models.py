"""Model families the built-in ones (mlp, cnn, linear) do not cover, for the benchmark's tasks.

Each is a factory an experiment names by import path, e.g.
`model: {name: "lrtool.bench.models:gru_classifier", args: {vocab_size: 12, num_classes: 3}}`.
All are small on purpose: one one-cycle run of a benchmark task must take a second or two on
one CPU thread.
"""

from __future__ import annotations

import torch
from torch import nn


def conv1d(
    in_channels: int = 1,
    num_classes: int = 4,
    width: int = 16,
    depth: int = 2,
    kernel_size: int = 5,
) -> nn.Sequential:
    """1-D conv net for sequences (N, C, L): conv-ReLU-pool blocks, no normalisation, then a
    global average and a linear head (num_classes 1 for a regression)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(depth):
        out = width * 2**i
        layers.append(
            nn.Sequential(
                nn.Conv1d(channels, out, kernel_size, padding=kernel_size // 2),
                nn.ReLU(),
                nn.MaxPool1d(2),
            )
        )
        channels = out
    layers.append(nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten()))
    layers.append(nn.Linear(channels, num_classes))
    return nn.Sequential(*layers)


class _Block(nn.Module):
    """He et al.'s basic block: conv-BN-ReLU-conv-BN plus the input, then ReLU. A 1x1 conv
    shortcut matches the shape when the block halves the size or changes the width."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet(in_channels: int = 1, num_classes: int = 10, width: int = 16, stages: int = 2):
    """A small residual net with BatchNorm: a conv stem, one basic block per stage (each stage
    after the first halves the size and doubles the width), global average, linear head."""
    layers: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
    ]
    channels = width
    for i in range(stages):
        out = width * 2**i
        layers.append(_Block(channels, out, stride=1 if i == 0 else 2))
        channels = out
    layers.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    layers.append(nn.Linear(channels, num_classes))
    return nn.Sequential(*layers)


class _NamedResNet(nn.Module):
    """`resnet`'s layers under names a fine-tuning run can address: `body` (stem, blocks,
    pooling) and the classifier head `fc`, as torchvision's resnets call it, so a pretrained
    `body` can be given a fresh `fc` for another number of classes."""

    def __init__(self, in_channels: int, num_classes: int, width: int, stages: int) -> None:
        super().__init__()
        layers = list(resnet(in_channels, num_classes, width, stages))
        self.body = nn.Sequential(*layers[:-1])
        self.fc = layers[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def resnet_fc(in_channels: int = 1, num_classes: int = 10, width: int = 16, stages: int = 2):
    """`resnet` with its head named `fc` (for the fine-tuning benchmark)."""
    return _NamedResNet(in_channels, num_classes, width, stages)


class _Recurrent(nn.Module):
    """Embedding, a one-layer GRU or LSTM, and a linear head on the last hidden state."""

    def __init__(
        self, cell: type[nn.Module], vocab_size: int, num_classes: int, embed: int, hidden: int
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = cell(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(self.embed(tokens))
        return self.head(outputs[:, -1])


def gru_classifier(
    vocab_size: int, num_classes: int, embed: int = 16, hidden: int = 32
) -> nn.Module:
    """Token sequences (N, L) of integer ids to class logits, through a GRU."""
    return _Recurrent(nn.GRU, vocab_size, num_classes, embed, hidden)


def lstm_classifier(
    vocab_size: int, num_classes: int, embed: int = 16, hidden: int = 32
) -> nn.Module:
    """Token sequences (N, L) of integer ids to class logits, through an LSTM."""
    return _Recurrent(nn.LSTM, vocab_size, num_classes, embed, hidden)


class _Transformer(nn.Module):
    def __init__(
        self, vocab_size: int, num_classes: int, length: int, dim: int, heads: int, layers: int
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(torch.zeros(1, length, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position[:, : tokens.shape[1]]
        return self.head(self.norm(self.encoder(x)).mean(dim=1))


def transformer_classifier(
    vocab_size: int,
    num_classes: int,
    length: int,
    dim: int = 32,
    heads: int = 2,
    layers: int = 1,
) -> nn.Module:
    """A tiny pre-norm transformer encoder on token sequences (N, L): learned positions, mean
    pooling, linear head (num_classes 1 for a binary task with bce_with_logits)."""
    return _Transformer(vocab_size, num_classes, length, dim, heads, layers)


def deep_tanh_mlp(in_features: int, num_classes: int, width: int = 48, depth: int = 8):
    """A deep plain MLP: `depth` hidden tanh layers, no normalisation, PyTorch's default init.

    Such a net learns slowly at first: its range test can stay almost flat for most of the
    sweep, the case where a rule must still find a rate (or say clearly why not).
    """
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(in_features if i == 0 else width, width), nn.Tanh()]
    layers.append(nn.Linear(width if depth else in_features, num_classes))
    return nn.Sequential(*layers)


def cnn_plain(in_channels: int = 1, num_classes: int = 10, width: int = 12) -> nn.Module:
    """Two 3x3 convolutions with ReLU, no BatchNorm, a max-pool, global average pooling and a
    linear head: a CNN whose usable rates are not widened by normalisation."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


class _SequenceRegressor(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(x)
        return self.head(outputs[:, -1])


def gru_regressor(hidden: int = 32) -> nn.Module:
    """Real-valued sequences (N, L, 1) to one number, through a GRU's last hidden state."""
    return _SequenceRegressor(hidden)


def transformer_regressor(
    vocab_size: int, length: int, dim: int = 16, heads: int = 2, layers: int = 2
) -> nn.Module:
    """`transformer_classifier` with one output, for a regression on token sequences."""
    return _Transformer(vocab_size, 1, length, dim, heads, layers)
