"""Where a run's arrays live: a ("pairs", "rows") mesh and the shardings of each array on it.

Every array of a run carries a leading pairs axis (size 1 for one picture). Its shardings:
  * the pairs axis is split over the mesh's "pairs" axis; a batch is padded to a multiple of
    that axis's size with copies of its last pair, whose results are dropped;
  * leaves of rank >= 4 ((P, H, W, 3) images, (P, 1, h, w, c) features, (P, h, w, 1) region
    masks, L-BFGS's (P, m, H, W, 3) memory) have their rows (axis -3) split over the "rows"
    axis; XLA's partitioner exchanges the convolutions' halo rows between neighbours and sums
    the Gram matrices' per-block parts.
    Heights the axis does not divide are carried padded with zero rows and cropped inside the
    compiled step, so the padding never reaches the loss;
  * params and everything of lower rank (Gram matrices, weights, counters) are replicated over rows.
So a 1 x 1 mesh is one device, (n, 1) splits pairs and (1, n) splits one picture's rows.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxart import vgg
from jaxart.errors import ConfigError

PAIRS, ROWS = "pairs", "rows"


def make_mesh(pairs: int = 1, rows: int = 1) -> Mesh:
    """A (pairs, rows) mesh over the first pairs * rows local devices: by default one device.

    Auto axes: the partitioner, not the array types, decides how intermediate values are laid out.
    """
    available = jax.local_devices()
    if not (pairs >= 1 and rows >= 1 and pairs * rows <= len(available)):
        raise ConfigError(f"a {pairs} x {rows} mesh needs {pairs * rows} device(s); this process has {len(available)}")
    return jax.make_mesh((pairs, rows), (PAIRS, ROWS), (AxisType.Auto,) * 2, devices=available[: pairs * rows])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def spec(ndim: int) -> P:
    """The PartitionSpec of a leaf of rank `ndim` (see the module's rules)."""
    if ndim >= 4:
        return P(PAIRS, *[None] * (ndim - 4), ROWS, None, None)
    return P(PAIRS) if ndim else P()


def shardings(tree: Any, mesh: Mesh) -> Any:
    """A NamedSharding per leaf of `tree` (arrays or shape structs) with a leading pairs axis."""
    return jax.tree.map(lambda x: NamedSharding(mesh, spec(np.ndim(x))), tree)


def constrain(tree: Any, mesh: Mesh) -> Any:
    """`tree` inside a compiled step, held to `shardings`."""
    return jax.lax.with_sharding_constraint(tree, shardings(tree, mesh))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad(tree: Any, mesh: Mesh) -> Any:
    """Each leaf's pairs padded (copies of the last) and its rows padded (zeros, rank >= 4) to
    multiples of the mesh's axes."""
    pairs, rows = mesh.shape[PAIRS], mesh.shape[ROWS]

    def pad_leaf(x):
        if x.ndim and x.shape[0] % pairs:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], _round_up(x.shape[0], pairs) - x.shape[0], axis=0)])
        return pad_rows(x, rows)

    return jax.tree.map(pad_leaf, tree)


def pad_rows(tree: Any, multiple: int) -> Any:
    """Zero rows appended (axis -3) to each rank >= 4 leaf, to a multiple of `multiple`."""

    def pad_leaf(x):
        if x.ndim < 4 or x.shape[-3] % multiple == 0:
            return x
        widths = [(0, 0)] * x.ndim
        widths[-3] = (0, _round_up(x.shape[-3], multiple) - x.shape[-3])
        return jnp.pad(x, widths)

    return jax.tree.map(pad_leaf, tree)


def crop(tree: Any, rows: int | None = None, pairs: int | None = None) -> Any:
    """The first `rows` rows (rank >= 4) and `pairs` pairs of each leaf (default: all): `pad`
    undone (leaves that need no cropping are handed on as they are)."""

    def crop_leaf(x):
        if pairs is not None and x.ndim and x.shape[0] != pairs:
            x = x[:pairs]
        return x[..., :rows, :, :] if rows is not None and x.ndim >= 4 and x.shape[-3] != rows else x

    return jax.tree.map(crop_leaf, tree)


def crop_features(content: dict[str, jax.Array], rows: int) -> dict[str, jax.Array]:
    """Features {layer: (P, 1, h, w, c)} (or a region's masks, {layer: (P, h, w, 1)}) of an image
    of `rows` true rows, row padding cut."""
    # Each pooling floors the height: a layer after k poolings has rows // 2**k rows.
    return {name: f[..., : rows >> vgg.downsampling([name]), :, :] for name, f in content.items()}


def place(tree: Any, mesh: Mesh) -> Any:
    """`tree` padded (see `pad`) and put on `mesh` with its `shardings`."""
    # Every array reaches the sharded step as a jax.Array placed here: once several processes
    # have joined (jax.distributed), jit refuses host (numpy) arguments with a non-trivial
    # sharding. The mesh is this process's own devices, so its device_put is the whole array.
    tree = pad(jax.tree.map(jnp.asarray, tree), mesh)
    return jax.device_put(tree, shardings(tree, mesh))


def planned_bytes(compiled: jax.stages.Compiled) -> int:
    """Bytes per device XLA plans for a compiled step: arguments + outputs - donated aliases +
    scratch (`memory_analysis()` of the per-device program the partitioner made)."""
    m = compiled.memory_analysis()
    if m is None:
        raise NotImplementedError(f"{jax.default_backend()} gives no memory analysis")
    return m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
