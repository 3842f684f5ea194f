"""Plain Lloyd k-means in torch (float32 matmuls, chunked so memory stays bounded), deterministic by seed.

Used to fit the offline codec's codebooks. Initialisation picks k distinct data points at random; a
cluster that empties is re-seeded on the points that are currently worst fitted.
"""

from __future__ import annotations

import torch

# Rows per distance block: 8192 x 2048 float32 distances = 64 MiB.
CHUNK = 8192


def nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centroid of every row of x [N, D] and its squared distance."""
    cn = (centroids * centroids).sum(1)
    idx = torch.empty(len(x), dtype=torch.long)
    dist = torch.empty(len(x))
    for i in range(0, len(x), chunk):
        block = x[i : i + chunk]
        d = cn[None, :] - 2.0 * block @ centroids.T
        v, j = d.min(1)
        idx[i : i + chunk] = j
        dist[i : i + chunk] = (v + (block * block).sum(1)).clamp(min=0)
    return idx, dist


def kmeans(x: torch.Tensor, k: int, iters: int = 8, seed: int = 0) -> torch.Tensor:
    """Centroids [k, D] of x [N, D]. With fewer than k points, the extra centroids repeat data points
    (they are then never the unique nearest, so the codes simply use fewer entries)."""
    x = x.float().contiguous()
    n = len(x)
    if n == 0:
        raise ValueError("k-means on no data")
    g = torch.Generator().manual_seed(seed)
    if n >= k:
        c = x[torch.randperm(n, generator=g)[:k]].clone()
    else:
        c = x[torch.cat([torch.randperm(n, generator=g), torch.randint(n, (k - n,), generator=g)])].clone()
        return c
    for _ in range(iters):
        a, d = nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, a, x)
        counts = torch.bincount(a, minlength=k)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp(min=1)[:, None].float())
        if empty.any():
            c[empty] = x[torch.topk(d, int(empty.sum())).indices]
    return c
