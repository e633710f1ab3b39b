"""Architectures of the demo zoo (pure PyTorch; the segmenter is MONAI's UNet).

- :class:`LesionCNN`: a small 3D CNN classifier (lesion present / absent) in the
  class-activation-map layout (Zhou et al., CVPR 2016): ``features`` (conv blocks, 1/2
  resolution), a 1x1x1 convolution to one *class map* per class, and a logit per class
  that is the average of the class map's global mean and global max. Mean pooling alone
  did not learn (a lesion fills about 0.1 % of the volume and averaging drowns it); max
  pooling keeps it. Because pooling comes *after* the linear class map, Grad-CAM on
  ``features`` is exactly the (rectified) class map, so it points where the model looked.
  (An earlier head pooled each feature first, mean and max, then mixed them linearly;
  Grad-CAM on it found the lesion in only 4 of 20 positive cases, since a feature's max
  can sit anywhere and Grad-CAM averages the gradients over space. With the class-map
  head it was 3 of 20 at 1/8 resolution and 7 of 20 at 1/4: the cells were too coarse.)
- :class:`ProtoNet3D`: a ProtoPNet-style prototype network (Chen et al., NeurIPS 2019) in
  3D: the same backbone, add-on layers, a prototype layer (squared L2 distance of every
  latent voxel to each prototype, similarity ``log((d + 1) / (d + eps))``, max over space)
  and a linear layer from prototype similarities to classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["LesionCNN", "ProtoNet3D", "conv_backbone"]


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=False),
    ]
    if pool:
        layers.append(nn.MaxPool3d(2))
    return nn.Sequential(*layers)


def conv_backbone(
    channels: tuple[int, ...] = (8, 16, 32, 48), in_channels: int = 1, pooled_blocks: int = 1
) -> nn.Sequential:
    """Conv-BN-ReLU blocks; the first ``pooled_blocks`` halve the resolution (1/2 by default).

    1/2 of the 3 mm model grid is a 6 mm cell: fine enough for a class-activation map to
    point at a lesion of 3-15 mm radius. Measured on 20 positive test cases, Grad-CAM
    peaks within 5 mm of the lesion: 3/20 at 1/8 (24 mm cells), 7/20 at 1/4, 20/20 at 1/2.
    The parameters do not depend on ``pooled_blocks``, so weights move between layouts:
    the demo zoo trains at 1/8 first (where a lesion is found quickly), then fine-tunes
    at 1/2 (see ``sample_data/train_zoo.py``).
    """
    blocks = []
    cin = in_channels
    for i, c in enumerate(channels):
        blocks.append(_block(cin, c, pool=i < pooled_blocks))
        cin = c
    return nn.Sequential(*blocks)


class LesionCNN(nn.Module):
    """3D CNN classifier. Input ``(B, 1, D, H, W)``; output logits ``(B, n_classes)``.

    The class-activation layer is ``features`` (its last block, ``features.3``, at 1/4
    resolution). ``classifier`` maps it to one class map per class; the logit of class
    ``c`` is ``(mean(M_c) + max(M_c)) / 2``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        channels: tuple[int, ...] = (8, 16, 32, 48),
        pooled_blocks: int = 1,
    ):
        super().__init__()
        self.features = conv_backbone(tuple(channels), in_channels, pooled_blocks)
        self.classifier = nn.Conv3d(channels[-1], n_classes, 1)

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Class maps ``(B, n_classes, d, h, w)`` at 1/2 resolution (before pooling)."""
        return self.classifier(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.class_maps(x)
        return 0.5 * (m.mean(dim=(2, 3, 4)) + torch.amax(m, dim=(2, 3, 4)))


class ProtoNet3D(nn.Module):
    """3D prototype network ("this looks like that").

    Parameters
    ----------
    n_prototypes_per_class : int
        Prototypes per class; prototype ``j`` belongs to class ``j // n_prototypes_per_class``.
    latent : int
        Depth of the latent space the prototypes live in (1x1x1 prototypes).
    """

    eps = 1e-4

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        n_prototypes_per_class: int = 5,
        latent: int = 16,
        channels: tuple[int, ...] = (8, 16, 32, 48),
        pooled_blocks: int = 1,
    ):
        super().__init__()
        self.n_classes = n_classes
        self.n_prototypes = n_classes * n_prototypes_per_class
        self.features = conv_backbone(tuple(channels), in_channels, pooled_blocks)
        self.add_on = nn.Sequential(
            nn.Conv3d(channels[-1], latent, 1), nn.ReLU(), nn.Conv3d(latent, latent, 1), nn.Sigmoid()
        )
        self.prototypes = nn.Parameter(torch.rand(self.n_prototypes, latent, 1, 1, 1))
        identity = torch.zeros(self.n_prototypes, n_classes)
        identity[
            torch.arange(self.n_prototypes), torch.arange(self.n_prototypes) // n_prototypes_per_class
        ] = 1
        self.register_buffer("prototype_class_identity", identity)
        self.last_layer = nn.Linear(self.n_prototypes, n_classes, bias=False)
        with torch.no_grad():  # +1 to the own class, -0.5 to the others (ProtoPNet's initialisation)
            self.last_layer.weight.copy_(identity.t() - 0.5 * (1 - identity.t()))

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """Latent map ``(B, latent, d, h, w)`` the prototypes are compared with."""
        return self.add_on(self.features(x))

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """Squared L2 distance of every latent voxel to every prototype: ``(B, P, d, h, w)``."""
        z2 = (z**2).sum(dim=1, keepdim=True)
        p2 = (self.prototypes**2).sum(dim=(1, 2, 3, 4)).view(1, -1, 1, 1, 1)
        zp = nn.functional.conv3d(z, self.prototypes)
        return torch.relu(z2 - 2 * zp + p2)

    def similarity_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Similarity of each latent voxel to each prototype, ``(B, P, d, h, w)``."""
        d = self.distances(self.latent(x))
        return torch.log((d + 1) / (d + self.eps))

    def forward_details(self, x: torch.Tensor) -> dict[str, Any]:
        z = self.latent(x)
        d = self.distances(z)
        min_d = torch.amin(d, dim=(2, 3, 4))
        similarity = torch.log((min_d + 1) / (min_d + self.eps))
        return {
            "logits": self.last_layer(similarity),
            "min_distances": min_d,
            "similarity": similarity,
            "latent": z,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_details(x)["logits"]
