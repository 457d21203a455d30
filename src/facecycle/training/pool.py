"""History of generated images (Shrivastava et al.; CycleGAN): D sees a mix of current and past fakes.

Kept on the training device; its random choices come from its own `random.Random`, whose
state is checkpointed with the images, so a resumed run replays exactly.
"""

from __future__ import annotations

import random
from typing import Any

import torch


class ImagePool:
    """Until full, every generated image is stored and returned. Once full, each image is,
    with probability `replay`, swapped with a random stored one (the stored one is returned),
    otherwise returned as is. size 0 turns the pool off.
    """

    def __init__(self, size: int = 50, replay: float = 0.5, seed: int = 0) -> None:
        self.size = size
        self.replay = replay
        self.rng = random.Random(seed)
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """`batch`: `(N, C, H, W)` detached fakes -> `(N, C, H, W)` images for the D step."""
        if self.size == 0:
            return batch
        out = []
        for image in batch.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.random() < self.replay:
                index = self.rng.randrange(self.size)
                out.append(self.images[index])
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        images = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        version, internal, gauss = self.rng.getstate()
        return {"size": self.size, "images": images,
                "rng": torch.tensor(internal, dtype=torch.int64), "rng_version": version}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        images = state["images"]
        self.images = [img.unsqueeze(0).to(device) for img in images] if images.numel() else []
        self.rng.setstate((int(state["rng_version"]), tuple(int(v) for v in state["rng"].tolist()), None))
