"""Retraining asks the search space (issue 13): one path for NAS-Bench-201 and DARTS-space
genotypes, the space's recipe checks before any work, and the search keys a space does not
support refused (or honoured) rather than ignored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ray_nas import store
from ray_nas.config import IMAGE_SIZES, expand_grid, load_spec, resolve_search
from ray_nas.spaces import get_space

TINY_DARTS = {"space": "darts", "ops": ["skip_connect", "sep_conv_3x3"], "layers": 3, "channels": 2}
#: evaluate.retrain for both spaces: NB201's own keys, and DARTS's proxy recipe made tiny
RETRAIN = {"epochs": 1, "channels": 4, "cells": 1, "batch_size": 8, "steps_per_epoch": 1,
           "recipe": "proxy", "overrides": {"layers": 3, "channels": 2, "epochs": 2,
                                            "auxiliary_weight": 0.0}}  # fmt: skip


def test_nb201_and_darts_genotypes_retrain_through_one_path(write_job):
    """A job searching both spaces (a bundle axis): each space's selections are retrained by the
    same task function, the space naming its recipe, training and cache."""
    from ray_nas.offline.evaluate import run_evaluate
    from ray_nas.search.trial import run_trial

    job = write_job(search={"dataset": "digits", "epochs": 1, "steps_per_epoch": 1, "batch_size": 8},
                    grid={"space_setup": [{"space": "nb201"}, TINY_DARTS]}, criteria=["final"],
                    evaluate={"benchmark": None, "retrain": RETRAIN})  # fmt: skip
    spec = load_spec(job)
    for cfg, rid, _ in expand_grid(spec):
        run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    calls: list[tuple] = []

    def local_map(fn, args, **resources):
        """In this process, recording what each call ran for which space."""
        calls.append((fn.__name__, [(a[0], a[2].key()) for a in args], resources))
        return [fn(*a) for a in args]

    lines: list[str] = []
    sel = run_evaluate(spec, retrain_map=local_map, log=lines.append).selections
    darts_rec = get_space("darts").retrain_recipe(spec.evaluate.retrain)[1]
    nb_rec = get_space("nb201").retrain_recipe(spec.evaluate.retrain)[1]
    res = {"cpu": 1.0, "gpu": 0.0}
    assert calls == [("retrain_task", [("darts", darts_rec.key())], res),
                     ("retrain_task", [("nb201", nb_rec.key())], res)]  # fmt: skip
    assert (darts_rec.layers, darts_rec.epochs, nb_rec.cells) == (3, 2, 1)
    assert any("retrain (darts): 1 distinct genotypes x 1 seeds, 0 cached, 1 to train (recipe proxy, 2 epochs)" in x
               for x in lines), lines  # fmt: skip
    assert any("retrain (nb201): 1 distinct genotypes x 1 seeds, 0 cached, 1 to train (recipe nb201, 1 epochs)" in x
               for x in lines), lines  # fmt: skip
    assert sel["retrain_acc"].between(0, 100).all()
    is_darts = sel["arch"].str.startswith("Genotype(")
    assert is_darts.sum() == 1 and sel.loc[is_darts, "params_m"].gt(0).all()
    assert sel.loc[~is_darts, "params_m"].isna().all()  # NB201's cache keeps accuracy only
    nb = store.read_frame(f"{spec.job_dir}/retrain.parquet")
    dg = store.read_frame(f"{spec.job_dir}/retrain_genotypes.parquet")
    assert list(nb.columns) == ["arch", "dataset", "settings", "test_acc", "seconds"]
    assert nb["settings"].tolist() == [nb_rec.key()] and dg["recipe_key"].tolist() == [
        darts_rec.key()
    ]
    calls.clear()
    again = run_evaluate(spec, retrain_map=local_map, log=lines.append).selections
    assert calls == [] and again["retrain_acc"].tolist() == sel["retrain_acc"].tolist()


def test_recipe_and_space_keys_are_checked_before_any_work(write_job, capsys, tmp_path):
    from ray_nas.cli import main

    darts = {**TINY_DARTS, "dataset": "digits"}
    for search, evaluate, msg in [
        # DARTS's auxiliary head needs 32x32 images: digits are 16x16
        (darts, {}, "evaluate.retrain.overrides.auxiliary_weight: 0.4 needs 32x32 images (DARTS's "
                    "auxiliary head), but digits has 16x16; set evaluate.retrain.overrides.auxiliary_weight: 0"),
        ({**darts, "dataset": "fake"}, {"retrain": {"recipe": "drnas", "overrides": {"epochs": -1}}},
         "evaluate.retrain: retrain recipe epochs: expected a whole number >= 0, got -1"),
        (darts, {"retrain": {"recipe": "nb201"}}, "evaluate.retrain: unknown retrain recipe 'nb201'; valid: darts, drnas, proxy"),
        ({**darts, "impl": "reference"}, {"retrain": None},
         "search.impl: 'reference' is not an implementation of the darts space (valid: fast)"),
    ]:  # fmt: skip
        job = write_job(search=search, evaluate=evaluate)
        assert main(["sweep", str(job), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "store").exists()  # nothing written
    # valid: no auxiliary head on 16x16, or a 32x32 data set with it; NB201 ignores DARTS recipes
    for search, evaluate in [
        (darts, {"retrain": {"overrides": {"auxiliary_weight": 0}}}),
        ({**darts, "dataset": "fake"}, {}),
        ({"dataset": "digits"}, {}),
    ]:
        assert main(["sweep", str(write_job(search=search, evaluate=evaluate)), "--dry-run"]) == 0


def test_image_sizes_are_the_data_sets():
    from ray_nas.training.data import load_dataset

    for name in ("digits", "fake"):
        ds = load_dataset(name)
        assert ds.train.images.shape[1:3] == (IMAGE_SIZES[name],) * 2


def test_darts_search_network_honours_channels_last():
    cfg = resolve_search({**TINY_DARTS, "channels_last": True})
    torch.manual_seed(0)
    net = get_space("darts").build_supernet(cfg, 10).eval()
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = get_space("darts").build_supernet(resolve_search(TINY_DARTS), 10).eval()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), plain(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_every_space_builds_its_evaluation_network(space):
    sp = get_space(space)
    rec = sp.recipes[sp.default_recipe]
    text = sp.genotype_text(np.eye(len(sp.rows()), len(sp.ops))[:, ::-1] + 0.1, sp.ops)
    net = sp.build_eval_network(text, rec, 10)
    assert (
        sum(p.numel() for p in net.parameters()) > 0
        and rec.key() == sp.recipes[sp.default_recipe].key()
    )
