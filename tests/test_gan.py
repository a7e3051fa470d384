"""The GAN step against a float64 PyTorch reference of the seed, and its determinism."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import FIXTURE, assert_same_bits

from jaxart import data
from jaxart.gan import GANConfig, init_state, run_keys, sample, train_step, train_steps
from jaxart.gan.models import make_models
from jaxart.gan.train import discriminator_loss, generator_loss, hyperparams, init, sample_latent, to_unit

CONFIG = GANConfig()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return data.load(str(FIXTURE)).images


def host(tree):
    """A numpy copy, safe from donation."""
    return jax.tree.map(np.array, tree)


def torch_seed_step(g_params, d_params, real, z):
    """The seed's step verbatim in float64 torch, from the given weights.

    Returns (metrics, D grads, G grads, D after its update, G after its update),
    parameters and grads as flax-shaped {'Dense_i': {'kernel', 'bias'}} numpy trees.
    """
    import torch
    from torch import nn

    def mlp(params, acts):
        layers = []
        for i, act in enumerate(acts):
            p = params[f"Dense_{i}"]
            linear = nn.Linear(*p["kernel"].shape).double()
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.asarray(p["kernel"], np.float64).T))
                linear.bias.copy_(torch.from_numpy(np.asarray(p["bias"], np.float64)))
            layers += [linear, act]
        return nn.Sequential(*layers)

    def tree(module, attr):
        linears = [m for m in module if isinstance(m, nn.Linear)]
        get = (lambda t: t.grad) if attr == "grad" else (lambda t: t.detach())
        return {
            f"Dense_{i}": {"kernel": get(m.weight).numpy().T.copy(), "bias": get(m.bias).numpy().copy()}
            for i, m in enumerate(linears)
        }

    D = mlp(d_params, [nn.LeakyReLU(0.2), nn.LeakyReLU(0.2), nn.Sigmoid()])
    G = mlp(g_params, [nn.ReLU(), nn.ReLU(), nn.Sigmoid()])
    loss_fn = nn.BCELoss()
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-4)
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-4)
    images = torch.from_numpy(np.asarray(real, np.float64).reshape(len(real), -1))
    z = torch.from_numpy(np.asarray(z, np.float64))
    ones, zeros = torch.ones(len(images), 1, dtype=torch.float64), torch.zeros(len(images), 1, dtype=torch.float64)

    real_out = D(images)
    d_loss_real = loss_fn(real_out, ones)
    fake = G(z)
    fake_out = D(fake.detach())
    d_loss = d_loss_real + loss_fn(fake_out, zeros)
    d_opt.zero_grad()
    d_loss.backward()
    d_grads = tree(D, "grad")
    d_opt.step()
    g_out = D(fake)
    g_loss = loss_fn(g_out, ones)
    g_opt.zero_grad()
    g_loss.backward()
    g_grads = tree(G, "grad")
    g_opt.step()
    metrics = {
        "d_loss": d_loss.item(),
        "g_loss": g_loss.item(),
        "d_x": real_out.mean().item(),
        "d_g_z": fake_out.mean().item(),
    }
    return metrics, d_grads, g_grads, tree(D, "data"), tree(G, "data")


def assert_close_tree(actual, expected, rtol) -> None:
    """Each array within rtol of the reference, relative to the array's largest entry."""
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        scale = np.abs(b).max()
        np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=0, atol=rtol * scale, err_msg=str(path))


def test_step_matches_float64_reference_of_the_seed(images):
    keys = run_keys(0)
    state = init_state(keys.init, CONFIG)
    g_params, d_params = host(state.g_params), host(state.d_params)
    batch = images[:32]
    real = to_unit(batch)
    z = sample_latent(jax.random.fold_in(keys.train, 0), 32, CONFIG.latent_dim)
    ref_metrics, ref_d_grads, ref_g_grads, ref_d_after, ref_g_after = torch_seed_step(g_params, d_params, real, z)

    new_state, metrics = train_step(state, batch, keys.train)

    for name, value in ref_metrics.items():
        np.testing.assert_allclose(float(metrics[name]), value, rtol=1e-5, err_msg=name)
    generator, _ = make_models(CONFIG)
    fake = generator.apply({"params": g_params}, z)
    d_grads = jax.grad(lambda p: discriminator_loss(p, {}, real, fake, CONFIG)[0])(d_params)
    assert_close_tree(d_grads, ref_d_grads, rtol=1e-4)
    # G's gradient through the reference's updated D, so float32 rounding in D's
    # Adam step (near-zero gradients flip the sign of an lr-sized move) stays out.
    g_grads = jax.grad(lambda p: generator_loss(generator.apply({"params": p}, z), ref_d_after, {}, CONFIG)[0])(
        g_params
    )
    assert_close_tree(g_grads, ref_g_grads, rtol=1e-4)
    # Adam's first move is about lr * sign(grad) for every weight: the updates agree to a tenth of lr.
    for ours, ref in ((new_state.d_params, ref_d_after), (new_state.g_params, ref_g_after)):
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=0, atol=CONFIG.lr / 10)
    assert int(new_state.step) == 1


def test_init_matches_torch_linear_distribution():
    state = init_state(run_keys(1).init, CONFIG)
    for params in (state.g_params, state.d_params):
        for layer in params.values():
            bound = 1 / np.sqrt(layer["kernel"].shape[0])
            for value in (layer["kernel"], layer["bias"]):
                assert np.abs(value).max() <= bound
            assert np.abs(layer["kernel"]).max() > 0.9 * bound


@pytest.mark.parametrize("config", [CONFIG, GANConfig(model="dcgan", hidden_dim=16)], ids=["mlp", "dcgan"])
def test_compiled_init_equals_eager_init(config):
    """init_state is one compiled program (one compilation, not dozens); it must start runs
    where the uncompiled function, as earlier versions ran it, did."""
    key = run_keys(0).init
    eager = init(key, config.static, hyperparams(config))  # op by op
    assert_same_bits(host(eager), host(init_state(key, config)))


def test_same_seed_same_bits_other_seed_other_bits(images):
    def run(seed):
        keys = run_keys(seed)
        state = init_state(keys.init, CONFIG)
        order = np.arange(len(images), dtype=np.int32)
        for start in (0, 10):
            state, _ = train_steps(state, images, order, start, keys.train, length=10)
        return host(state)

    first = run(0)
    assert_same_bits(first, run(0))
    assert not np.array_equal(jax.tree.leaves(first.g_params)[0], jax.tree.leaves(run(1).g_params)[0])


def test_scan_of_steps_equals_single_steps_bit_for_bit(images):
    keys = run_keys(0)
    order = np.asarray(jax.random.permutation(keys.data, len(images)), np.int32)
    single = init_state(keys.init, CONFIG)
    single_metrics = []
    for j in range(12):
        single, metrics = train_step(single, images[order[j * 32 : (j + 1) * 32]], keys.train)
        single_metrics.append(host(metrics))
    scanned = init_state(keys.init, CONFIG)
    scanned, first = train_steps(scanned, images, order, 0, keys.train, length=5)
    scanned, second = train_steps(scanned, images, order, 5, keys.train, length=7)
    assert_same_bits(host(single), host(scanned))
    for name in first:
        stacked = np.concatenate([first[name], second[name]])
        np.testing.assert_array_equal(stacked, [m[name] for m in single_metrics])


def test_sample_shape_range_and_key():
    state = init_state(run_keys(0).init, CONFIG)
    a = sample(state.g_params, jax.random.key(3), 5, CONFIG)
    assert a.shape == (5, 28, 28) and a.dtype == np.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert_same_bits(a, sample(state.g_params, jax.random.key(3), 5, CONFIG))
    assert not np.array_equal(a, sample(state.g_params, jax.random.key(4), 5, CONFIG))
