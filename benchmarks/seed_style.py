"""The seed's style-transfer loop (lesson 10), transcribed with only what current libraries force:
`models.vgg19(weights=None)` for `pretrained=False`, `Image.LANCZOS` for the removed
`Image.ANTIALIAS` (the same filter), and the state_dict passed in rather than read from a path.
The tests and benchmarks run it as the reference; `synchronize()` waits for a GPU's queued work
before a clock is read."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision import models, transforms

# As the seed: its GPU when there is one. The tests pin the reference to the CPU.
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

transform = transforms.Compose(
    [transforms.ToTensor(), transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])]
)


def load_image(image_path, transform=None, max_size=None, shape=None):
    image = Image.open(image_path).convert("RGB")
    if max_size:
        scale = max_size / max(image.size)
        size = np.array(image.size) * scale
        image = image.resize(size.astype(int), Image.LANCZOS)
    if shape:
        image = image.resize(shape, Image.LANCZOS)
    if transform:
        image = transform(image)
        image = image.unsqueeze(dim=0)
    return image.to(device)


class VGGnet(nn.Module):
    def __init__(self, state_dict=None):
        super().__init__()
        vgg19 = models.vgg19(weights=None)
        if state_dict is not None:
            vgg19.load_state_dict(state_dict)
        self.select = ["0", "5", "10", "19", "28"]
        self.vgg = vgg19.features

    def forward(self, x):
        features = []
        for name, layer in self.vgg._modules.items():
            x = layer(x)
            if name in self.select:
                features.append(x)
        return features


def synchronize() -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load_pair(content_path, style_path, max_size=400):
    content = load_image(content_path, transform=transform, max_size=max_size)
    style = load_image(style_path, transform=transform, shape=[content.size(3), content.size(2)])
    return content, style


def stylize(model, content, style, num_step=2000, on_step=None):
    """The seed's loop; `on_step(step, content_loss, style_loss)` sees each step's losses."""
    target = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([target], lr=0.003, betas=[0.5, 0.999])
    for step in range(num_step):
        target_features = model.forward(target)
        content_features = model.forward(content)
        style_features = model.forward(style)
        style_loss = 0
        content_loss = 0
        for f1, f2, f3 in zip(target_features, content_features, style_features):
            content_loss += torch.mean((f1 - f2) ** 2)
            n, c, h, w = f1.size()
            f1 = f1.view(c, h * w)
            f3 = f3.view(c, h * w)
            f1 = torch.mm(f1, f1.t())
            f3 = torch.mm(f3, f3.t())
            style_loss += torch.mean((f1 - f3) ** 2) / (c * h * w)
        loss = content_loss + style_loss * 100.0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step, content_loss.item(), style_loss.item())
    return target
