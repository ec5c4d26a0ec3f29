import pytest
from conftest import REPO

from datamodules.configkit import ConfigError
from launch.cli import main
from launch.config import RunConfig, load_config, save_resolved


def test_defaults_preset_and_override_compose():
    cfg = load_config(REPO / "configs" / "fashion_mnist_demo.yaml", ["wd.value=5e-5", "seed=3"])
    assert isinstance(cfg, RunConfig)
    assert cfg.wd.value == 5e-5
    assert cfg.seed == 3
    assert cfg.model.arch == "cnn3"  # from the preset
    assert cfg.optim.momentum == 0.9  # from the defaults


def test_unknown_key_names_key_and_suggests_near_miss():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["wd.valeu=0.1"])
    msg = str(e.value)
    assert "wd.valeu" in msg
    assert "Did you mean 'wd.value'" in msg
    assert "exclude" in msg and "schedule" in msg  # lists the allowed keys


def test_moved_weight_decay_key_points_to_new_place():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.weight_decay'.*moved to 'wd.value'"):
        load_config(None, ["optim.weight_decay=0.1"])


def test_unknown_section_in_yaml_names_file(tmp_path):
    preset = tmp_path / "x.yaml"
    preset.write_text("optimm:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optimm'.*x.yaml.*Did you mean 'optim'"):
        load_config(preset)


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.arch=resnet51"])
    msg = str(e.value)
    assert "model.arch" in msg and "resnet51" in msg and "resnet50" in msg and "Did you mean 'resnet50'" in msg


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("optim.lr=0", "optim.lr"),
        ("optim.momentum=1.0", "optim.momentum"),
        ("data.batch_size=0", "data.batch_size"),
        ("optim.label_smoothing=-0.1", "optim.label_smoothing"),
    ],
)
def test_out_of_range_values_fail(override, fragment):
    with pytest.raises(ConfigError, match=rf"'{fragment}'.*Allowed range"):
        load_config(None, [override])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"data.batch_size.*lots"):
        load_config(None, ["data.batch_size=lots"])


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["optim.lr"])


def test_missing_preset_file():
    with pytest.raises(ConfigError, match="does-not-exist.yaml"):
        load_config("does-not-exist.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["optim.lr=0.05", "trainer.max_epochs=7"])
    save_resolved(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg


def test_cli_bad_key_fails_before_any_work(tmp_path, capsys):
    rc = main(["fit", f"out_dir={tmp_path}", "data.root=/nonexistent", "trainer.max_epoch=3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "trainer.max_epoch" in err and "Did you mean 'trainer.max_epochs'" in err
    assert list(tmp_path.iterdir()) == []  # nothing was created
