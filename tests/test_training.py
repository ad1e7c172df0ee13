"""Training data, split, schedule, and the bundle's train config end to end (tiny)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fusion_pairs import write_pairs
from ignite.engine import Engine

from mixfuse_med.errors import InputError
from mixfuse_med.losses import sobel_gradient
from mixfuse_med.networks import MixFuse
from mixfuse_med.training.data import SPECT_VALIDATION_SUBJECTS, find_pairs, load_pair, split_pairs
from mixfuse_med.training.engine import (
    LearningRateSchedule,
    WeightAverage,
    learning_rate_at,
    parameter_groups,
)
from mixfuse_med.training.pipeline import EdgeWeightd, pair_dataset, train_transforms

BUNDLE = Path(__file__).parents[1] / "workflows" / "mixfuse_bundle"


def test_split_holds_out_whole_spect_subjects_and_pet_slice_runs(tmp_path):
    write_pairs(tmp_path, "SPECT", subjects=(3, SPECT_VALIDATION_SUBJECTS[0]), slices=range(5, 9))
    write_pairs(tmp_path, "PET", subjects=(25, 30), slices=range(10, 20))
    pairs = find_pairs(tmp_path)
    train, val = split_pairs(pairs)
    assert sorted(p.functional for p in train + val) == sorted(p.functional for p in pairs)
    assert not {p.functional for p in train} & {p.functional for p in val}
    spect_val = {p.subject for p in val if p.modality == "SPECT"}
    spect_train = {p.subject for p in train if p.modality == "SPECT"}
    assert spect_val == {SPECT_VALIDATION_SUBJECTS[0]} and spect_train == {3}
    for subject in (25, 30):  # one contiguous run of 2 of 10 slices, from the middle
        held = sorted(p.slice_index for p in val if p.subject == subject)
        assert held == [14, 15]


def test_pairs_load_as_unit_range_luma(tmp_path):
    write_pairs(tmp_path, "PET", slices=[10])
    item = load_pair(find_pairs(tmp_path)[0])
    assert item["mri"].shape == item["functional"].shape == (1, 40, 40)
    for key in ("mri", "functional"):
        assert item[key].dtype == np.float32 and 0 <= item[key].min() and item[key].max() <= 1


def test_bad_pair_folders_are_named(tmp_path):
    with pytest.raises(InputError, match="no MRI/"):
        find_pairs(tmp_path)
    folder = write_pairs(tmp_path, "PET", slices=[10])
    (folder / "MRI" / "25010.png").unlink()
    with pytest.raises(InputError, match="25010.png: no MRI of the same name"):
        find_pairs(tmp_path)


def test_learning_rate_schedule():
    assert learning_rate_at(0, 1.0, warmup=4) == 0.25
    assert learning_rate_at(3, 1.0, warmup=4) == 1.0
    assert learning_rate_at(500, 1.0, warmup=4) == 1.0
    args = dict(base_lr=1.0, warmup=0, decay_start=100, decay_end=200, min_lr=0.1)
    assert learning_rate_at(100, **args) == 1.0
    assert learning_rate_at(150, **args) == pytest.approx(0.55)
    assert learning_rate_at(250, **args) == pytest.approx(0.1)


def test_head_learns_at_its_own_scaled_rate():
    network = MixFuse(embed_dim=8, iterations=1, cross_depth=2, self_depth=2, num_heads=2)
    groups = parameter_groups(network, head_lr_scale=10.0)
    head_ids = {id(p) for p in network.head.parameters()}
    assert {id(p) for p in groups[1]["params"]} == head_ids
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(network.parameters()))
    optimizer = torch.optim.Adam(groups, lr=0.0)
    schedule = LearningRateSchedule(optimizer, base_lr=1e-3, warmup=0)
    engine = Engine(lambda engine, batch: None)
    schedule.attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3, 1e-2])


def test_weight_average_is_an_exponential_moving_average_of_the_iterates():
    network = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(network, decay=0.5)
    engine = Engine(lambda engine, batch: network.weight.data.fill_(float(batch)))
    average.attach(engine)
    engine.run([2.0, 4.0, 8.0], max_epochs=1)
    # the first iterate is copied, then w <- 0.5 w + 0.5 x: 2 -> 3 -> 5.5
    assert average.network.weight.item() == pytest.approx(5.5)
    assert network.weight.item() == 8.0  # the trained weights are left alone
    restored = WeightAverage(torch.nn.Linear(1, 1, bias=False), decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.network.weight.item() == pytest.approx(5.5)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(network, decay=1.0)


def test_training_crops_are_centred_on_tissue(tmp_path):
    write_pairs(tmp_path, "PET", slices=[10, 11], size=64)
    dataset = pair_dataset(find_pairs(tmp_path), train_transforms(crop_size=16))
    for i in range(6):
        (item,) = dataset[i % 2]
        assert item["mri"].shape == item["functional"].shape == (1, 16, 16)
        assert float(torch.maximum(item["mri"], item["functional"]).max()) > 0.05


def striped_quadrant_pair(size: int = 64) -> dict:
    """Flat grey tissue everywhere, fine stripes only in the top-left quadrant."""
    mri = np.full((1, size, size), 0.4, dtype=np.float32)
    mri[0, : size // 2, : size // 2] = np.where(np.arange(size // 2) % 2 == 0, 0.9, 0.1)[:, None]
    functional = np.full((1, size, size), 0.3, dtype=np.float32)
    return {"mri": mri, "functional": functional}


def test_edge_weight_is_the_loss_sobel_and_sums_to_one():
    pair = striped_quadrant_pair()
    weight = EdgeWeightd(edge_fraction=1.0)(pair)["edge_weight"]
    target = sobel_gradient(torch.from_numpy(pair["mri"])[None])[0].numpy()
    np.testing.assert_allclose(weight, target / target.sum(), rtol=1e-5, atol=1e-9)
    half = EdgeWeightd(edge_fraction=0.5)(pair)["edge_weight"]
    assert half.sum() == pytest.approx(1.0, rel=1e-5)
    assert half.min() == pytest.approx(0.5 / half.size, rel=1e-5)  # flat pixels keep a share
    flat = EdgeWeightd()({"mri": np.zeros((1, 8, 8)), "functional": np.zeros((1, 8, 8))})
    np.testing.assert_allclose(flat["edge_weight"], 1.0 / 64)
    with pytest.raises(ValueError, match="edge_fraction"):
        EdgeWeightd(edge_fraction=1.5)


def test_edge_sampled_crops_favour_the_striped_quadrant():
    pair = striped_quadrant_pair()
    edges = train_transforms(crop_size=16, foreground_fraction=0.9, crop_sampling="edges")
    tissue = train_transforms(crop_size=16, foreground_fraction=1.0)
    edges.set_random_state(0)
    tissue.set_random_state(0)

    def striped_share(transform) -> float:
        # a crop from the striped quadrant has a value far from the flat 0.4
        crops = [transform(dict(pair))[0]["mri"] for _ in range(60)]
        return float(np.mean([float((c - 0.4).abs().max()) > 0.3 for c in crops]))

    assert striped_share(edges) > 0.8  # 90 % of centres on edges, all in that quadrant
    assert striped_share(tissue) < 0.6  # tissue everywhere: about a third of crops touch it
    with pytest.raises(ValueError, match="crop_sampling"):
        train_transforms(crop_sampling="corners")


def run_bundle_training(bundle_root: Path, data_dir: Path, max_epochs: int) -> subprocess.CompletedProcess:
    tiny = ["--network_def#embed_dim", "8", "--network_def#iterations", "1",
            "--network_def#cross_depth", "2", "--network_def#self_depth", "2",
            "--network_def#num_heads", "2"]
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run",
         "--config_file", str(BUNDLE / "configs" / "train.json"),
         "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
         "--bundle_root", str(bundle_root), "--data_dir", str(data_dir),
         "--max_epochs", str(max_epochs), "--epoch_length", "2", "--batch_size", "2",
         "--crop_size", "24", "--val_interval", "1", "--val_every_nth_image", "1",
         "--log_interval", "1", "--checkpoint_interval", "1", "--num_threads", "1", *tiny],
        capture_output=True, text=True, timeout=600)


def test_bundle_train_config_runs_and_resumes(tmp_path):
    data = tmp_path / "data"
    write_pairs(data, "PET", slices=range(10, 15), size=32)
    done = run_bundle_training(tmp_path / "bundle", data, max_epochs=1)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = tmp_path / "bundle" / "runs" / "train"
    log = [json.loads(line) for line in (run_dir / "loss_terms.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2]
    assert all(np.isfinite(r["loss"]["total"]) for r in log)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert checkpoint["trainer"] == {"iteration": 2, "epoch": 1}
    assert "weight_average" in checkpoint  # the average resumes with the run
    assert (run_dir / "best_network.pt").is_file()
    assert "SSIM" in (run_dir / "metrics.csv").read_text()

    again = run_bundle_training(tmp_path / "bundle", data, max_epochs=2)  # continues, does not restart
    assert again.returncode == 0, again.stderr[-3000:]
    log = [json.loads(line) for line in (run_dir / "loss_terms.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3, 4]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["trainer"]["iteration"] == 4
