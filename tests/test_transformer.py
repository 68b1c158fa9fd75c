import pytest
import torch

import grokbench
from grokbench.config.run import resolve_config
from grokbench.plugin.contracts import DataSpec

TINY = {"d_model": 16, "n_heads": 2, "d_mlp": 32}


def build(registry, spec, dtype=torch.float32, seed=0, **params):
    cls = registry.get("model", "transformer")
    return cls(cls.Params(**{**TINY, **params}), spec, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_shapes_on_pairs_and_triples(registry):
    cls_model = build(registry, DataSpec(positions=2, vocab_size=7, output_dim=7))
    shapes = {k: tuple(v.shape) for k, v in cls_model.parameters().items()}
    assert shapes["W_E"] == (8, 16)  # 7 residues + "="
    assert shapes["W_pos"] == (3, 16)  # a, b, "="
    assert shapes["W_Q"] == (2, 16, 8) and shapes["W_O"] == (2, 8, 16)
    assert shapes["W_in"] == (16, 32) and shapes["W_U"] == (16, 7)
    x = torch.tensor([[0, 1], [6, 6], [3, 2]])
    assert cls_model(x).shape == (3, 7)

    reg_model = build(registry, DataSpec(positions=3, vocab_size=5, output_dim=1))
    assert reg_model.parameters()["W_pos"].shape == (4, 16)
    assert reg_model(torch.tensor([[0, 1, 2], [4, 4, 4]])).shape == (2, 1)


def test_heads_must_divide_d_model(registry):
    cls = registry.get("model", "transformer")
    with pytest.raises(ValueError, match="divisible"):
        cls.Params(d_model=10, n_heads=3)


def test_same_seed_same_init_and_inputs_matter(registry):
    spec = DataSpec(positions=2, vocab_size=7, output_dim=7)
    a, b, c = build(registry, spec, seed=1), build(registry, spec, seed=1), build(registry, spec, seed=2)
    assert all(torch.equal(a.parameters()[k], b.parameters()[k]) for k in a.parameters())
    assert not torch.equal(a.parameters()["W_E"], c.parameters()["W_E"])
    out = a(torch.tensor([[1, 2], [2, 1]]))
    assert not torch.allclose(out[0], out[1])  # positional embeddings tell a from b


def test_gradients_match_finite_differences(registry):
    task_cls = registry.get("task", "modadd-cls")
    task = task_cls(task_cls.Params(p=5, train_fraction=0.5))
    data = task.make_data(0).to("cpu", torch.float64)
    model = build(registry, data.spec, dtype=torch.float64, activation="gelu")  # smooth, so differences converge
    loss, grads = model.loss_and_grads(data.x_train, data.y_train, task)
    names = list(model.parameters())
    assert [g.shape for g in grads] == [model.parameters()[k].shape for k in names]
    eps = 1e-6
    for name in ("W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O", "W_in", "b_in", "W_out", "b_out", "W_U"):
        grad = grads[names.index(name)]
        flat = model.parameters()[name].view(-1)
        for i in (0, flat.numel() // 2, flat.numel() - 1):
            old = flat[i].item()
            flat[i] = old + eps
            up = task.loss(model(data.x_train), data.y_train).item()
            flat[i] = old - eps
            down = task.loss(model(data.x_train), data.y_train).item()
            flat[i] = old
            assert grad.reshape(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9), (name, i)


def test_apply_is_pure_so_torch_func_can_differentiate_it(registry):
    """The generic empirical-NTK path needs jacobians of apply with respect to its params argument."""
    model = build(registry, DataSpec(positions=2, vocab_size=5, output_dim=5), dtype=torch.float64)
    x = torch.tensor([[1, 2], [3, 4]])
    jac = torch.func.jacrev(lambda ps: model.apply(ps, x))(model.parameters())
    assert jac["W_U"].shape == (2, 5, 16, 5)
    # f = last · W_U, so d f[n, c] / d W_U[:, c] is the same residual vector for every class c
    assert torch.allclose(jac["W_U"][0, 0, :, 0], jac["W_U"][0, 3, :, 3])


def test_nanda_preset_is_the_papers_configuration(registry):
    cfg = resolve_config(registry, task="modadd-cls", model="transformer", preset="nanda")
    assert cfg.task.params["p"] == 113 and cfg.task.params["train_fraction"] == 0.3
    assert {k: cfg.model.params[k] for k in ("d_model", "n_heads", "d_mlp", "activation")} == {
        "d_model": 128,
        "n_heads": 4,
        "d_mlp": 512,
        "activation": "relu",
    }
    assert cfg.optimizer.name == "adamw"
    assert {k: cfg.optimizer.params[k] for k in ("lr", "weight_decay", "beta1", "beta2")} == {
        "lr": 1e-3,
        "weight_decay": 1.0,
        "beta1": 0.9,
        "beta2": 0.98,
    }
    assert cfg.regularizer.name == "none" and cfg.train.batch_size is None
    assert cfg.train.steps == 40000 and cfg.train.flush_denormal  # measured: the same numbers, bit for bit
    # with no preset named, any task gets the literature's optimizer
    default = resolve_config(registry, task="modadd-reg", model="transformer")
    assert default.optimizer.name == "adamw" and default.optimizer.params["weight_decay"] == 1.0


def test_learns_a_tiny_task_through_the_runner(registry):
    result = grokbench.run(
        "modadd-cls",
        "transformer",
        overrides={
            "task": {"p": 7, "train_fraction": 0.6},
            "model": TINY,
            "optimizer": {"lr": 1e-2, "weight_decay": 0.0},
            "train": {"steps": 150, "eval_every": 50},
        },
        registry=registry,
    )
    assert result.status == "completed", result.message
    assert result.curves["train_acc"].iloc[0] < 0.5
    assert result.summary["final_train_acc"] == 1.0
    assert result.plugins["model"]["plugin"] == "transformer" and result.plugins["model"]["distribution"] == "grokbench"


def test_runs_on_the_regression_task(registry):
    result = grokbench.run(
        "modadd-reg",
        "transformer",
        overrides={"task": {"p": 5}, "model": TINY, "train": {"steps": 20, "eval_every": 10}},
        registry=registry,
    )
    assert result.status == "completed", result.message
    assert result.curves["train_loss"].iloc[-1] < result.curves["train_loss"].iloc[0]


def test_laptop_preset_is_nandas_network_and_optimizer_on_a_smaller_problem(registry):
    nanda, laptop = (
        resolve_config(registry, task="modadd-cls", model="transformer", preset=name) for name in ("nanda", "laptop")
    )
    assert (
        laptop.model == nanda.model and laptop.optimizer == nanda.optimizer and laptop.regularizer == nanda.regularizer
    )
    assert laptop.task.params["p"] == 59 and laptop.task.params["train_fraction"] == 0.5
    assert laptop.train.early_stop and laptop.train.steps == 10000
    assert not laptop.train.flush_denormal  # not measured with it: a preset flushes only where shown to change nothing


def per_example_reference(model, params, x):
    """The transformer as first written: every example's queries, keys and values from its residual stream."""
    import math

    n = x.shape[0]
    equals = torch.full((n, 1), model.spec.vocab_size, dtype=x.dtype)
    resid = params["W_E"][torch.cat([x, equals], dim=1)] + params["W_pos"]
    q = torch.einsum("nd,hde->nhe", resid[:, -1], params["W_Q"])
    k = torch.einsum("nsd,hde->nhse", resid, params["W_K"])
    v = torch.einsum("nsd,hde->nhse", resid, params["W_V"])
    attn = (torch.einsum("nhe,nhse->nhs", q, k) / math.sqrt(q.shape[-1])).softmax(-1)
    last = resid[:, -1] + torch.einsum("nhe,hed->nd", torch.einsum("nhs,nhse->nhe", attn, v), params["W_O"])
    last = last + model._act(last @ params["W_in"] + params["b_in"]) @ params["W_out"] + params["b_out"]
    return last @ params["W_U"]


@pytest.mark.parametrize("activation,positions", [("relu", 2), ("gelu", 3)])
def test_table_formulation_equals_the_per_example_one(registry, activation, positions):
    """apply (per-token tables) against the per-example formulation: outputs and every gradient, float64."""
    spec = DataSpec(positions=positions, vocab_size=7, output_dim=7)
    model = build(registry, spec, dtype=torch.float64, activation=activation, init_scale=2.0)
    x = torch.randint(0, 7, (40, positions), generator=torch.Generator().manual_seed(1))
    names = list(model.parameters())
    outputs, grads = [], []
    for fn in (model.apply, lambda ps, x: per_example_reference(model, ps, x)):
        leaves = {k: model.parameters()[k].detach().clone().requires_grad_(True) for k in names}
        out = fn(leaves, x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outputs.append(out.detach())
        grads.append([leaves[k].grad for k in names])
    assert outputs[0].abs().max() > 0.1
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
    for name, a, b in zip(names, *grads):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize(
    "task_name,activation,positions", [("modadd-cls", "relu", 2), ("modadd-reg", "gelu", 2), ("modadd-cls", "gelu", 3)]
)
def test_hand_written_step_equals_autograd_through_the_per_example_formulation(
    registry, task_name, activation, positions
):
    """loss_and_grads (per-example backward by hand, autograd only on the tables) against the generic autograd
    step through the per-example formulation: loss and every gradient, float64, full batch and a minibatch."""
    from grokbench.plugin.contracts import Model

    task_cls = registry.get("task", task_name)
    task = task_cls(task_cls.Params(p=7, train_fraction=0.6))
    data = task.make_data(0).to("cpu", torch.float64)
    if positions == 3:  # triples of tokens with the same labels: the step only reads the DataSpec's shapes
        data.x_train = torch.cat([data.x_train, data.x_train[:, :1]], 1)
    spec = DataSpec(positions=positions, vocab_size=data.spec.vocab_size, output_dim=data.spec.output_dim)
    model = build(registry, spec, dtype=torch.float64, activation=activation, init_scale=2.0)
    reference = build(registry, spec, dtype=torch.float64, activation=activation, init_scale=2.0)
    reference.apply = lambda ps, x: per_example_reference(reference, ps, x)
    for rows in (slice(None), slice(3, 11)):
        x, y = data.x_train[rows], data.y_train[rows]
        loss, grads = model.loss_and_grads(x, y, task)
        ref_loss, ref_grads = Model.loss_and_grads(reference, x, y, task)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
        for name, a, b in zip(model.parameters(), grads, ref_grads, strict=True):
            assert b.abs().max() > 0, name
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
