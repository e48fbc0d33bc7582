"""GuardExplainer through Guard.evaluate: inference mode, opt-in methods, save/load."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.explain import GuardExplainer, fit_explainer


def _fit(guard, tiny_real) -> GuardExplainer:  # noqa: ANN001
    """The small explainer every test here uses (40 distillation steps)."""
    return fit_explainer(
        guard,
        tiny_real["train"],
        tiny_real["val"],
        steps=40,
        progress=False,
        n_background=8,
        max_val=24,
    )


@pytest.fixture(scope="module")
def explained_guard(tiny_guard, tiny_real):
    expl = _fit(tiny_guard, tiny_real)
    tiny_guard.attach_explainer(expl)
    yield tiny_guard
    tiny_guard.attach_explainer(None)


def test_same_seed_same_explainer(explained_guard, tiny_real) -> None:
    torch.manual_seed(987)  # the caller's global RNG state must not matter
    again = _fit(explained_guard, tiny_real)
    mine = explained_guard.explainer.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in again.state_dict().items())


def test_fit_report_and_chosen_parameters(explained_guard) -> None:
    expl = explained_guard.explainer
    rep = expl.fit_report
    assert -1.0 <= rep["spearman_f_vs_detector"] <= 1.0
    assert float(expl.alpha.sum()) == pytest.approx(1.0) and bool((expl.alpha >= 0).all())
    assert 0.0 < float(expl.tau) < 1.0
    assert bool((expl.map_scale > 0).all())
    assert set(rep["val_kinds"]) == {"blur_local", "checkerboard", "dropout", "noise_local"}


def test_explanations_inside_inference_mode(explained_guard, tiny_real) -> None:
    x = tiny_real["test"][:3]
    with torch.inference_mode():
        v = explained_guard.evaluate(x, explain=True)
    for name in ("gradcam", "shap", "heatmap"):
        m = getattr(v, name)
        assert m.shape == (3, 1, 32, 32) and m.dtype == torch.float32
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert v.heatmap_mask.dtype == torch.bool
    assert torch.equal(v.heatmap_mask, v.heatmap > explained_guard.explainer.tau)
    assert torch.equal(v.mask, v.anomaly_map > 0.5)  # the verdict's mask keeps its meaning
    with torch.no_grad():
        v2 = explained_guard.evaluate(x, explain=True)
    torch.testing.assert_close(v2.heatmap, v.heatmap)


def test_explanations_stream_in_chunks(explained_guard, tiny_real) -> None:
    x = tiny_real["test"][:5].clone()
    x[1] = float("nan")  # explained as a zero image, as the guard scores it
    whole = explained_guard.evaluate(x, explain=True, batch_size=5)
    chunked = explained_guard.evaluate(x, explain=True, batch_size=2)
    for name in ("gradcam", "shap", "heatmap"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name))
        assert getattr(chunked, name).shape == (5, 1, 32, 32)
    assert torch.isfinite(whole.heatmap).all()
    assert torch.equal(chunked.heatmap_mask, chunked.heatmap > explained_guard.explainer.tau)


def test_explanations_are_opt_in(explained_guard, tiny_real) -> None:
    x = tiny_real["test"][:2]
    plain = explained_guard.evaluate(x)
    assert plain.gradcam is None and plain.shap is None and plain.heatmap is None
    only = explained_guard.evaluate(x, explain=("gradcam",))
    assert only.gradcam is not None and only.shap is None and only.heatmap is None
    assert torch.equal(only.mask, plain.mask) and only.heatmap_mask is None
    full = explained_guard.evaluate(x, explain=True)
    assert torch.equal(full.mask, plain.mask)  # explaining never changes the verdict's mask
    assert full.to_records()[0]["mask_fraction"] == plain.to_records()[0]["mask_fraction"]
    assert "heatmap_mask_fraction" in full.to_records()[0]
    with pytest.raises(ValueError, match="explanations must be among"):
        explained_guard.evaluate(x, explain=("lime",))
    with pytest.raises(ValueError, match="explanations must be among"):
        explained_guard.evaluate(x, explain=("mask",))


def test_save_load_round_trip_gives_identical_maps(explained_guard, tiny_real, tmp_path) -> None:
    from safegen_guard import Guard

    x = tiny_real["test"][:2]
    before = explained_guard.evaluate(x, explain=True)
    loaded = Guard.load(explained_guard.save(tmp_path / "g"))
    after = loaded.evaluate(x, explain=True)
    assert isinstance(loaded.explainer, GuardExplainer)
    for name in ("gradcam", "shap", "heatmap", "heatmap_mask", "mask"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    assert torch.equal(loaded.explainer.alpha, explained_guard.explainer.alpha)


def test_bad_configuration_raises() -> None:
    with pytest.raises(ValueError, match="`gradcam_layer` must be one of"):
        GuardExplainer(gradcam_layer="stem")
    with pytest.raises(ValueError, match="`shap_method` must be one of"):
        GuardExplainer(shap_method="kernel")
    with pytest.raises(ValueError, match="`n_background` must be a positive int"):
        GuardExplainer(n_background=0)


class _RecordingExplainer(torch.nn.Module):
    """A minimal explainer written against the protocol alone."""

    def __init__(self, returns: str = "gradcam") -> None:
        super().__init__()
        self.returns, self.contexts = returns, []

    def config_dict(self) -> dict:
        return {"returns": self.returns}

    @classmethod
    def from_config(cls, config: dict) -> _RecordingExplainer:
        return cls(**config)

    def explain(self, context, x, anomaly_map, methods):  # noqa: ANN001
        self.contexts.append(context)
        return {self.returns: anomaly_map.flip(-1)}


def test_explainer_gets_a_context_not_the_guard(tiny_guard, tiny_real) -> None:
    from safegen_guard.explain import ExplainContext, Explainer
    from safegen_guard.guard import Guard

    x = tiny_real["test"][:2]
    expl = _RecordingExplainer()
    assert isinstance(expl, Explainer) and isinstance(GuardExplainer(image_size=32), Explainer)
    try:
        v = tiny_guard.attach_explainer(expl).evaluate(x, explain=True)
        (ctx,) = expl.contexts
        assert isinstance(ctx, ExplainContext) and not isinstance(ctx, Guard)
        assert ctx.autoencoder is tiny_guard.detector.autoencoder and ctx.image_size == 32
        assert torch.equal(v.gradcam, v.anomaly_map.flip(-1))
        assert torch.equal(ctx.anomaly_map(x), v.anomaly_map)
        assert ctx.statistic(x).shape == (2,)
        tiny_guard.attach_explainer(_RecordingExplainer(returns="mask"))
        with pytest.raises(ValueError, match=r"returned \['mask'\]; explanations must be among"):
            tiny_guard.evaluate(x, explain=True)
        with pytest.raises(TypeError, match="`explainer` must be an nn.Module with config_dict"):
            tiny_guard.attach_explainer(object())
    finally:
        tiny_guard.attach_explainer(None)
