"""Training a ShapesWorld VQGAN (ofa.imagegen.train_vqgan): config checks, the Gumbel loss, a
few-second run that writes a taming-layout folder load_vqgan reads, byte-identical reruns, the
CLI, and the tokenizer shipped in ofa/assets/shapes-demo/vqgan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from ofa.cli import main
from ofa.data.shapes import ShapesWorld
from ofa.errors import InputError
from ofa.imagegen.train_vqgan import (
    OUTPUT_FILES,
    VQGANTrainConfig,
    build_vqgan_train_config,
    evaluate_vqgan,
    far_tiles,
    foreground_mask,
    gumbel_one_hot,
    load_vqgan_train_config,
    pixels_to_input,
    render_foreground,
    render_scenes,
    restart_dead_codes,
    shape_scales,
    temperature_at,
    train_vqgan,
    training_loss,
)
from ofa.imagegen.vqgan import VQGAN
from ofa.imagegen.vqgan_io import load_vqgan, preprocess, read_vqgan_state_dict

ROOT = Path(__file__).resolve().parents[2]
ASSET = ROOT / "src" / "ofa" / "assets" / "shapes-demo" / "vqgan"
CONFIG = ROOT / "configs" / "shapes-vqgan.yaml"

# a run of a few seconds: 32 px, two levels (16 x 16 codes), 64 codes
TINY = {"resolution": 32, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 32,
        "n_embed": 64, "train_scenes": 8, "test_scenes": 4, "steps": 6, "batch_size": 4,
        "warmup_steps": 1, "log_interval": 2, "eval_batch_size": 4}


def tiny(tmp_path: Path, name: str = "run", **changes) -> VQGANTrainConfig:
    return build_vqgan_train_config({**TINY, "output_dir": str(tmp_path / name), **changes})


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(("changes", "message"), [
    ({"resolutoin": 64}, "unknown setting(s) in config: resolutoin"),
    ({"resolution": 61}, "resolution must be a multiple of 2"),
    ({"resolution": 256}, "between 16 and render_size (128)"),
    ({"steps": 0}, "steps must be a positive integer, got 0"),
    ({"steps": 2.5}, "steps must be an int, got 2.5"),
    ({"batch_size": True}, "batch_size must be an int, got True"),
    ({"batch_size": 9}, "batch_size (9) must not exceed train_scenes (8)"),
    ({"lr": -1}, "lr must be a positive number, got -1.0"),
    ({"lr": "fast"}, "lr must be a float, got 'fast'"),
    ({"kl_weight": float("nan")}, "kl_weight must be a number >= 0"),
    ({"ch_mult": 2}, "ch_mult must be a list, got 2"),
    ({"ch": 48}, "not a multiple of the 32 normalisation groups"),
    ({"betas": [0.5]}, "betas must be a list of 2 numbers"),
    ({"save_dtype": "bf16"}, "save_dtype must be fp32 or fp16, got 'bf16'"),
    ({"temperature_steps": 0}, "temperature_steps must be a positive integer or null"),
    ({"warmup_steps": 6}, "warmup_steps must lie in [0, steps), got 6"),
    ({"n_embed": 1}, "n_embed must lie in [2, 65536], got 1"),
    ({"max_shapes": 5}, "max_shapes must lie in 1..4, got 5"),
    ({"l1_weight": 0, "mse_weight": 0}, "l1_weight or mse_weight must be positive"),
    ({"quantizer": "kmeans"}, "quantizer must be gumbel or vq, got 'kmeans'"),
    ({"embed_dim": 8}, "a gumbel quantizer needs embed_dim equal to z_channels"),
    ({"quantizer": "vq", "restart_interval": -1}, "restart_interval must be >= 0"),
    ({"shape_balance": 4.0}, "shape_balance scales foreground_weight"),
    ({"foreground_weight": 1.0, "shape_balance": -1}, "shape_balance must be a number >= 0"),
])
def test_bad_config_values_are_one_line_errors(tmp_path, changes, message):
    with pytest.raises(InputError) as e:
        build_vqgan_train_config({**TINY, "output_dir": str(tmp_path), **changes})
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_yaml_config_and_output_override(tmp_path):
    path = tmp_path / "vq.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output_dir": "somewhere"}))
    cfg = load_vqgan_train_config(path, {"output_dir": str(tmp_path / "out")})
    assert cfg.output_dir == str(tmp_path / "out") and cfg.ch_mult == (1, 2)
    assert cfg.vqgan_config.grid_size == 16 and cfg.vqgan_config.quantizer == "gumbel"
    assert build_vqgan_train_config(cfg.to_dict()) == cfg  # round-trips as plain data
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="must hold a mapping"):
        load_vqgan_train_config(path)
    with pytest.raises(InputError, match="config file not found"):
        load_vqgan_train_config(tmp_path / "missing.yaml")


def test_shipped_config_is_valid():
    cfg = load_vqgan_train_config(CONFIG)
    assert cfg.resolution in (64, 96) and cfg.vqgan_config.downsample_factor == 8
    assert 100 <= cfg.n_embed <= 1024


# ----------------------------------------------------------------------------- pieces
def test_scene_pixels_are_what_preprocess_gives():
    world = ShapesWorld(seed=0)
    pixels, captions = render_scenes(world, "test", 3, 64)
    assert pixels.shape == (3, 64, 64, 3) and pixels.dtype == torch.uint8
    assert captions == [world.scene("test", i).caption() for i in range(3)]
    expected = preprocess([world.scene("test", i).render() for i in range(3)], 64)
    assert torch.equal(pixels_to_input(pixels), expected)


def test_foreground_marks_the_shapes_and_weighs_their_errors(tmp_path):
    world = ShapesWorld(seed=0)
    pixels, _ = render_scenes(world, "test", 2, 64)
    masks, empty = render_foreground(world, "test", 2, 64)
    assert masks.shape == (2, 64, 64) and masks.dtype == torch.bool
    assert empty.shape == pixels.shape and empty.dtype == torch.uint8
    gap = (empty.int() - pixels.int()).abs().amax(-1)  # within the resize's ringing off the shapes
    assert gap[~masks].max() <= 8 and gap[masks].float().mean() > 20
    plain_masks, flat = render_foreground(world, "test", 2, 64, plain=True)
    assert all((flat[i] == flat[i, 0, 0]).all() for i in range(2))  # plain: a flat background
    assert plain_masks.any() and not torch.equal(flat, empty)
    bare, captions = render_scenes(world, "test", 2, 64, shapeless=True)  # what it compares with
    assert torch.equal(bare, empty) and torch.equal(foreground_mask(pixels, bare), masks)
    assert captions == [world.scene("test", i).caption() for i in range(2)]  # the scenes' own
    for i in range(2):
        frame = [round(v / 2) for v in world.scene("test", i).shapes[0].frame]  # 128 -> 64 px
        cx, cy = (frame[0] + frame[2]) // 2, (frame[1] + frame[3]) // 2
        assert masks[i, cy, cx]  # the centre of a shape
        assert 0.02 < masks[i].float().mean() < 0.5 and not masks[i, 0, 0]
    cfg = tiny(tmp_path, resolution=64, ch_mult=[1, 2, 2, 2], foreground_weight=4.0)
    torch.manual_seed(0)
    model = VQGAN(cfg.vqgan_config)
    x = pixels_to_input(pixels)
    torch.manual_seed(1)
    plain, parts = training_loss(model, x, cfg, 0, torch.Generator().manual_seed(0))
    weighted, same = training_loss(model, x, cfg, 0, torch.Generator().manual_seed(0),
                                   foreground=masks)
    assert same["l1"] == parts["l1"]  # the reported L1 is the plain one
    assert weighted.item() != pytest.approx(plain.item(), rel=1e-3)


def test_shape_scales_weigh_each_shape_by_the_median_area_over_its_own():
    foreground = torch.zeros(2, 16, 16, dtype=torch.bool)
    foreground[0, 0:2, 0:2] = True  # area 4
    foreground[0, 5:9, 5:9] = True  # 16
    foreground[1, 10:16, 0:6] = True  # 36
    foreground[1, 0, 15] = True  # 1; the median of 1, 4, 16, 36 is 10
    scales = shape_scales(foreground, cap=8.0)
    assert scales.shape == (2, 16, 16) and scales.dtype == torch.float32
    assert torch.equal(scales > 0, foreground)  # zero off the shapes
    assert scales[0, 0, 0] == 2.5 and scales[0, 6, 6] == 0.625
    assert scales[1, 12, 3] == pytest.approx(10 / 36) and scales[1, 0, 15] == 8.0  # 10 capped
    # 4-connected: a diagonal neighbour is another shape
    diagonal = torch.zeros(1, 4, 4, dtype=torch.bool)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = diagonal[0, 2, 2] = diagonal[0, 2, 3] = True
    assert shape_scales(diagonal, cap=8.0)[0, 0, 0] == 1.0  # areas 1, 1, 2: median 1
    assert shape_scales(torch.zeros(1, 4, 4, dtype=torch.bool), 8.0).abs().sum() == 0


def test_shape_balance_scales_the_foreground_weight_per_pixel(tmp_path):
    world = ShapesWorld(seed=0)
    pixels, _ = render_scenes(world, "test", 2, 64)
    masks, _ = render_foreground(world, "test", 2, 64)
    cfg = tiny(tmp_path, resolution=64, ch_mult=[1, 2, 2, 2], quantizer="vq",
               foreground_weight=4.0, shape_balance=8.0)
    torch.manual_seed(0)
    model = VQGAN(cfg.vqgan_config)
    x = pixels_to_input(pixels)
    with torch.no_grad():
        error = (model.decode_codes(model.encode(x)) - x).abs()
    scales = shape_scales(masks, cfg.shape_balance)
    assert scales[masks].min() < 1 < scales.max()  # larger and smaller shapes than the median
    for given, emphasis in ((None, masks.float()), (torch.ones(2, 64, 64), masks.float()),
                            (scales, scales)):
        _, parts = training_loss(model, x, cfg, 0, foreground=masks, scales=given)
        weights = 1 + cfg.foreground_weight * emphasis[:, None]
        expected = (weights / weights.mean() * error).mean()  # the L1 term (mse_weight 0)
        term = parts["loss"] - parts["codebook"] - cfg.commitment_weight * parts["commitment"]
        assert term == pytest.approx(expected.item(), rel=1e-4)


def test_far_tiles_leave_out_a_shape_and_its_neighbour_tiles():
    foreground = torch.zeros(1, 32, 32, dtype=torch.bool)
    foreground[0, 9, 17] = True  # tile (1, 2) of a 4 x 4 grid of 8 px tiles
    far = far_tiles(foreground, 8)
    near = torch.zeros(4, 4, dtype=torch.bool)
    near[0:3, 1:4] = True
    assert torch.equal(far[0], ~near)


def test_context_term_pulls_far_tiles_towards_the_shapeless_scene(tmp_path):
    world = ShapesWorld(seed=0)
    pixels, _ = render_scenes(world, "test", 2, 64)
    masks, empty = render_foreground(world, "test", 2, 64)
    cfg = tiny(tmp_path, resolution=64, ch_mult=[1, 2, 2, 2], quantizer="vq",
               context_weight=1.0)
    torch.manual_seed(0)
    model = VQGAN(cfg.vqgan_config)
    x = pixels_to_input(pixels)
    loss, parts = training_loss(model, x, cfg, 0, foreground=masks, empty=pixels_to_input(empty))
    assert parts["context"] > 0
    base = parts["loss"] - parts["context"]
    # the term is the squared gap between the two encodings at the far tiles
    z, target = model.encode_to_prequant(x), model.encode_to_prequant(pixels_to_input(empty))
    far = far_tiles(masks, 8)
    expected = ((z - target).pow(2).mean(1) * far).sum() / far.sum()
    assert parts["context"] == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() == pytest.approx(base + expected.item(), rel=1e-5)
    # the gradient reaches the encoder through the scene's encoding only
    loss.backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    # a scene is its own shapeless twin when it has no shapes: the term is zero
    _, none = training_loss(model, x, cfg, 0, foreground=torch.zeros_like(masks), empty=x)
    assert none["context"] == 0
    with pytest.raises(ValueError, match="context_weight needs"):
        training_loss(model, x, cfg, 0)
    with pytest.raises(InputError, match="vq quantizer only"):
        tiny(tmp_path, context_weight=1.0)


def test_temperature_follows_a_cosine_to_its_end(tmp_path):
    cfg = tiny(tmp_path, temperature_start=1.0, temperature_end=0.25, temperature_steps=4)
    values = [temperature_at(cfg, s) for s in range(7)]
    assert values[0] == 1.0 and values[2] == pytest.approx(0.625)
    assert values[4:] == [0.25] * 3
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_gumbel_one_hot_is_hard_forward_soft_backward():
    logits = torch.randn(2, 5, 3, 3, requires_grad=True)
    hard = gumbel_one_hot(logits, 0.5, True, torch.Generator().manual_seed(0))
    again = gumbel_one_hot(logits, 0.5, True, torch.Generator().manual_seed(0))
    assert torch.equal(hard, again)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.detach().sum(1), torch.ones(2, 3, 3))
    (hard * torch.arange(5.0)[None, :, None, None]).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # straight-through
    soft = gumbel_one_hot(logits.detach(), 1.0, False, torch.Generator().manual_seed(0))
    assert torch.allclose(soft.sum(1), torch.ones(2, 3, 3)) and (soft < 1).all()


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    cfg = tiny(tmp_path, kl_weight=1e-3)
    pixels, _ = render_scenes(ShapesWorld(seed=0), "train", 4, cfg.resolution)
    x = pixels_to_input(pixels)
    torch.manual_seed(0)
    model = VQGAN(cfg.vqgan_config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=cfg.betas)
    noise = torch.Generator().manual_seed(0)
    losses = []
    for step in range(30):
        loss, parts = training_loss(model, x, cfg, step, noise)
        assert parts["loss"] == pytest.approx(parts["l1"] + 1e-3 * parts["kl"], rel=1e-5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(parts["l1"])
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_vq_loss_counts_codes_and_restarts_the_unused(tmp_path):
    cfg = tiny(tmp_path, quantizer="vq", embed_dim=8, restart_interval=2)
    pixels, _ = render_scenes(ShapesWorld(seed=0), "train", 4, cfg.resolution)
    x = pixels_to_input(pixels)
    torch.manual_seed(0)
    model = VQGAN(cfg.vqgan_config).train()
    usage = torch.zeros(cfg.n_embed, dtype=torch.long)
    loss, parts = training_loss(model, x, cfg, 0, usage=usage)
    assert parts["loss"] == pytest.approx(parts["l1"] + parts["codebook"] +
                                          0.25 * parts["commitment"], rel=1e-5)
    assert int(usage.sum()) == 4 * 16 * 16  # one code per position
    loss.backward()  # straight-through: the encoder learns from the reconstruction
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quantize.codebook.grad.abs().sum() > 0
    used = usage > 0
    before = model.quantize.codebook.detach().clone()
    moved = restart_dead_codes(model, x, usage, torch.Generator().manual_seed(0))
    assert moved == int((~used).sum()) > 0
    after = model.quantize.codebook.detach()
    assert torch.equal(after[used], before[used]) and not torch.equal(after, before)
    with torch.no_grad():
        z = model.encode_to_prequant(x).permute(0, 2, 3, 1).reshape(-1, 8)
    # each restarted entry is one of the batch's encoder outputs
    assert all((z == row).all(1).any() for row in after[~used])


# ----------------------------------------------------------------------------- a whole run
def test_training_writes_a_loadable_reproducible_folder(tmp_path, capsys):
    rng_before = torch.get_rng_state()
    threads = torch.get_num_threads()
    cfg = tiny(tmp_path, "api", save_dtype="fp16")
    metrics = train_vqgan(cfg, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    out = Path(cfg.output_dir)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)

    # the same config through the CLI, into another folder: the same bytes
    path = tmp_path / "vq.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert main(["train-vqgan", str(path), "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name

    written = json.loads((out / "metrics.json").read_text())
    assert written == {k: v for k, v in metrics.items()
                       if k not in ("train_seconds", "eval_seconds")}
    assert written["grid"] == 16 and written["steps"] == 6 and len(written["train_loss"]) == 3
    assert written["originals"]["colors"] == 1.0  # the ceiling: the checker reads renders
    assert set(written["reconstructions"]) >= {"colors", "sizes", "positions", "exact"}
    assert 0 < written["psnr"] < 100 and "output_dir" not in written["config"]

    # only inference weights, in the saved dtype; taming's layout read by load_vqgan
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6
    assert {t.dtype for t in ckpt["state_dict"].values()} == {torch.float16}
    assert set(read_vqgan_state_dict(out / "last.ckpt")) == set(ckpt["state_dict"])
    model_yaml = yaml.safe_load((out / "model.yaml").read_text())["model"]
    assert model_yaml["target"] == "taming.models.vqgan.GumbelVQ"
    vq = load_vqgan(out)
    assert vq.config == cfg.vqgan_config
    pixels, captions = render_scenes(ShapesWorld(seed=0), "test", 2, 32)
    with torch.no_grad():
        codes = vq.encode(pixels_to_input(pixels))
        images = vq.decode_codes(codes)
    assert codes.shape == (2, 16, 16) and int(codes.max()) < 64
    assert images.shape == (2, 3, 32, 32)
    assert torch.equal(vq.encode(pixels_to_input(pixels)), codes)  # argmax: deterministic
    again = evaluate_vqgan(vq, *render_scenes(ShapesWorld(seed=0), "test", 4, 32), 4)
    assert again["psnr"] == written["psnr"]


def test_a_vq_run_writes_a_vqmodel_folder(tmp_path):
    cfg = tiny(tmp_path, "vq", quantizer="vq", embed_dim=8, restart_interval=2)
    metrics = train_vqgan(cfg, progress=False)
    out = Path(cfg.output_dir)
    model_yaml = yaml.safe_load((out / "model.yaml").read_text())["model"]
    assert model_yaml["target"] == "taming.models.vqgan.VQModel"
    assert "temperature_scheduler_config" not in model_yaml["params"]
    vq = load_vqgan(out)
    assert vq.config == cfg.vqgan_config and vq.config.quantizer == "vq"
    assert metrics["codes_restarted"] > 0 and {"codebook", "commitment"} <= set(
        metrics["train_loss"][0])


def test_a_folder_with_other_files_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds files a VQGAN run does not write"):
        train_vqgan(tiny(tmp_path), progress=False)
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "vq.yaml"
    path.write_text(yaml.safe_dump({**TINY, "steps": -3}))
    assert main(["train-vqgan", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ofa: error: ") and "steps must be a positive integer" in err
    assert err.count("\n") == 1


# ----------------------------------------------------------------------------- the asset
def test_shipped_tokenizer_reads_shapesworld():
    """The tokenizer in ofa/assets draws held-out scenes back so that the checker reads them."""
    vq = load_vqgan(ASSET)
    metrics = json.loads((ASSET / "metrics.json").read_text())
    cfg = build_vqgan_train_config(metrics["config"])
    assert vq.config == cfg.vqgan_config
    assert (ASSET / "last.ckpt").stat().st_size < 3 * 2**20
    world = ShapesWorld(seed=cfg.world_seed, image_size=cfg.render_size,
                        max_shapes=cfg.max_shapes)
    got = evaluate_vqgan(vq, *render_scenes(world, cfg.test_split, 60, cfg.resolution))
    assert got["psnr"] > 28 and got["codes_used"] > 400
    for key in ("colors", "sizes", "positions"):
        # what the shipped metrics.json says of 500 scenes: 0.79 (small shapes' kinds)
        assert got["reconstructions"][key] >= 0.7, got
        assert metrics["reconstructions"][key] >= 0.75, metrics
    # the locality term it was trained with (configs/shapes-vqgan.yaml)
    assert cfg.context_weight > 0


@pytest.mark.slow
def test_shipped_tokenizer_is_reproduced_byte_for_byte(tmp_path):
    """configs/shapes-vqgan.yaml retrains ofa/assets/shapes-demo/vqgan exactly (about 25
    minutes on 2 cores); only on the CPU kind and torch version it was trained with."""
    metrics = json.loads((ASSET / "metrics.json").read_text())
    if (metrics["cpu_capability"], metrics["torch"]) != (
            torch.backends.cpu.get_cpu_capability(), torch.__version__):
        pytest.skip("trained on another CPU kind or torch version")
    cfg = load_vqgan_train_config(CONFIG, {"output_dir": str(tmp_path / "again")})
    train_vqgan(cfg, progress=False)
    for name in OUTPUT_FILES:
        assert (tmp_path / "again" / name).read_bytes() == (ASSET / name).read_bytes(), name
