"""The seed's MNIST GAN in PyTorch, transcribed from the lesson: its models, optimisers and inner loop.

Shared by `benchmarks.gan_speed` (steps/s) and `benchmarks.gan_quality` (what it learns).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

BATCH = 32
LATENT = 64
HIDDEN = 256
IMAGE = 28 * 28


def mnist_as_written(images: np.ndarray, labels: np.ndarray, root: str | os.PathLike):
    """The seed's data set: `torchvision.datasets.MNIST(root, train=True, transform=ToTensor())`,
    which converts each image through PIL on every access. torchvision reads uncompressed IDX
    files in root/MNIST/raw/ (its download is not reachable here), so they are written there."""
    from torchvision import datasets, transforms

    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, array in (
        ("train-images-idx3-ubyte", images),
        ("train-labels-idx1-ubyte", labels),
        ("t10k-images-idx3-ubyte", images[:1]),
        ("t10k-labels-idx1-ubyte", labels[:1]),
    ):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
        (raw / name).write_bytes(header + np.ascontiguousarray(array, np.uint8).tobytes())
    return datasets.MNIST(str(root), train=True, transform=transforms.ToTensor())


class SeedGAN:
    """The seed's D, G, BCELoss and two Adam(2e-4) over `images` (N, 28, 28) uint8, shuffled each epoch.

    dataset: the seed's torchvision MNIST (`mnist_as_written`); None: the images as one float
    tensor, converted once (torch's fastest pipeline, not the seed's).
    """

    def __init__(self, images: np.ndarray, seed: int | None = None, dataset=None):
        if seed is not None:
            torch.manual_seed(seed)
        self.D = nn.Sequential(
            nn.Linear(IMAGE, HIDDEN),
            nn.LeakyReLU(0.2),
            nn.Linear(HIDDEN, HIDDEN),
            nn.LeakyReLU(0.2),
            nn.Linear(HIDDEN, 1),
            nn.Sigmoid(),
        )
        self.G = nn.Sequential(
            nn.Linear(LATENT, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, IMAGE),
            nn.Sigmoid(),
        )
        self.loss_fn = nn.BCELoss()
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=2e-4)
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=2e-4)
        # ToTensor's scaling to [0, 1]. drop_last: the seed's `images.view(batch_size, ...)`
        # fails on a partial batch; MNIST's 60,000 images have none.
        if dataset is None:
            dataset = torch.utils.data.TensorDataset(torch.from_numpy(images / np.float32(255)))
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True)
        self.batches = iter(())

    def train(self, steps: int) -> int:
        """`steps` iterations of the seed's inner loop, starting a new epoch when one runs out; returns steps."""
        for _ in range(steps):
            try:
                images = next(self.batches)[0]
            except StopIteration:
                self.batches = iter(self.loader)
                images = next(self.batches)[0]
            images = images.view(BATCH, IMAGE)
            real_labels = torch.ones(BATCH, 1)
            fake_labels = torch.zeros(BATCH, 1)
            real_outputs = self.D(images)
            d_loss_real = self.loss_fn(real_outputs, real_labels)
            z = torch.randn(BATCH, LATENT)
            fake_images = self.G(z)
            fake_outputs = self.D(fake_images.detach())
            d_loss = d_loss_real + self.loss_fn(fake_outputs, fake_labels)
            self.d_opt.zero_grad()
            d_loss.backward()
            self.d_opt.step()
            g_outputs = self.D(fake_images)
            g_loss = self.loss_fn(g_outputs, real_labels)
            self.d_opt.zero_grad()
            self.g_opt.zero_grad()
            g_loss.backward()
            self.g_opt.step()
        return steps

    @torch.no_grad()
    def sample(self, n: int) -> np.ndarray:
        """n images (n, 28, 28) float32 in [0, 1] from G(torch.randn(n, 64))."""
        return self.G(torch.randn(n, LATENT)).reshape(n, 28, 28).numpy()
