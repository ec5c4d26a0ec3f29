"""classreg as a package: what the wheel holds and declares, packaged presets, the command's conventions."""

from __future__ import annotations

import ast
import configparser
import dataclasses
import importlib.metadata
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from datamodules.configkit import ConfigError, dump_yaml, field_facts, validate
from launch.cli import main
from launch.config import RunConfig, load_config

PACKAGES = ("launch", "datamodules", "lightning_modules")
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def _requirements(text: str) -> list[Requirement]:
    return [Requirement(line) for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _declared() -> tuple[dict[str, Requirement], dict[str, dict[str, Requirement]]]:
    cfg = _setup_cfg()
    core = {canonicalize_name(r.name): r for r in _requirements(cfg["options"]["install_requires"])}
    extras = {
        extra: {canonicalize_name(r.name): r for r in _requirements(value)}
        for extra, value in cfg["options.extras_require"].items()
    }
    return core, extras


def _imports() -> dict[str, set[str]]:
    """Every absolute import (and ``importlib.util.find_spec("name")``) in the three packages -> the files."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                elif (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", "") == "find_spec"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    names = [node.args[0].value]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] not in (*PACKAGES, *sys.stdlib_module_names):
                        found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def _distributions(module: str) -> set[str]:
    """The installed distributions that provide ``module``; for a namespace package (nvidia.*) only those
    holding the imported sub-package."""
    top, *rest = module.split(".")
    dists = importlib.metadata.packages_distributions().get(top, [])
    if rest and len(dists) > 1:
        sub = f"{top}/{rest[0]}/"
        dists = [d for d in dists if any(str(f).startswith(sub) for f in importlib.metadata.distribution(d).files)]
    return {canonicalize_name(d) for d in dists}


def test_every_third_party_import_is_declared():
    core, extras = _declared()
    nodeps = {canonicalize_name(r.name) for r in _requirements((REPO / "requirements-nodeps.txt").read_text())}
    dali = {"nvidia-dali-cuda120", "nvidia-dali-cuda130"}
    assert set(extras["dali-cuda12"]) == {"nvidia-dali-cuda120"} and set(extras["dali-cuda13"]) == {
        "nvidia-dali-cuda130"
    }
    used = set()
    for module, files in sorted(_imports().items()):
        dists = _distributions(module)
        assert dists, f"{module} (imported in {sorted(files)}) is not installed here"
        used |= dists
        if dists & dali:
            assert not dists & set(core), f"{module}: DALI belongs in the dali-cuda12/dali-cuda13 extras"
            continue
        assert dists & (set(core) | nodeps), f"{module} (imported in {sorted(files)}) is not in install_requires"
    unused = set(core) - used
    assert not unused, f"install_requires declares {sorted(unused)}, which the code never imports"
    assert set(extras["test"]) >= {"pytest", "scikit-learn", "ruff", "import-linter"}
    # scipy.stats.false_discovery_control is new in scipy 1.11; hashlib.file_digest in Python 3.11
    assert core["scipy"].specifier.contains("1.11") and not core["scipy"].specifier.contains("1.10.1")
    assert _setup_cfg()["options"]["python_requires"] == ">=3.11"


def test_the_lock_pins_every_declared_requirement_within_its_range():
    core, extras = _declared()
    lock = {canonicalize_name(r.name): r for r in _requirements((REPO / "requirements.txt").read_text())}
    assert all(len(r.specifier) == 1 and str(r.specifier).startswith("==") for r in lock.values()), "not a lock"
    for name, req in {**core, **extras["dali-cuda13"], **extras["test"]}.items():
        assert name in lock, f"requirements.txt does not pin {name}"
        assert req.specifier.contains(str(lock[name].specifier)[2:]), f"{lock[name]} is outside {req}"
    assert str(lock["torch"].specifier) == "==2.14.1" and str(lock["torchvision"].specifier) == "==0.29.1"
    assert "nvidia-dali-cuda120" not in lock  # CI tests the CUDA 13 build


def test_importing_the_packages_leaves_the_warning_filters_alone():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, warnings
        import pytorch_lightning, torch, torchvision, wandb  # noqa: F401  (their own filters do not count)
        before = list(warnings.filters)
        for package in ("launch", "datamodules", "lightning_modules"):
            module = importlib.import_module(package)
            for info in pkgutil.walk_packages(module.__path__, package + "."):
                importlib.import_module(info.name)
        changed = [f for f in warnings.filters if f not in before]
        print("CHANGED", changed)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CHANGED []" in proc.stdout, proc.stdout


def test_the_test_configuration_fails_on_the_projects_own_deprecations(tmp_path):
    (tmp_path / "test_uses_old_api.py").write_text(
        textwrap.dedent(
            """
            import warnings

            def test_own_deprecated_call():
                warnings.warn("this API is going away", DeprecationWarning)

            def test_third_party_deprecation_is_only_shown():
                code = compile("import warnings; warnings.warn('old', DeprecationWarning)", "somelib.py", "exec")
                exec(code, {"__name__": "somelib"})
            """
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(REPO / "setup.cfg"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout[-2000:]
    assert "DeprecationWarning: this API is going away" in proc.stdout
    assert "DeprecationWarning: old" in proc.stdout  # shown in the warnings summary


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    import launch

    assert capsys.readouterr().out.strip() == f"classreg {launch.__version__}"
    assert _setup_cfg()["metadata"]["version"] == "attr: launch.__version__"


def test_packaged_presets_resolve_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    for name in ("cifar10_resnet18", "imagenet_resnet50", "paper_grid", "fashion_mnist_demo", "linear_probe"):
        assert f"  {name} " in listed
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "packaged presets" in capsys.readouterr().out

    for preset in ("cifar10_resnet18", "cifar10_resnet18.yaml", "configs/cifar10_resnet18.yaml"):
        assert main(["fit", "-c", preset, "--print-config"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["name"] == "cifar10_resnet18"
    assert main(["fit", "-c", "cifar10_resnet19"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Did you mean 'cifar10_resnet18'?" in err and "imagenet_resnet50" in err

    assert main(["sweep", "plan", "paper_grid", "--json"]) == 0
    assert '"points": 105' in capsys.readouterr().out
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\nbase: cifar10_resnet18\nseeds: [0, 1]\nresources: {gpus_per_node: 0}\n")
    assert main(["sweep", "plan", str(spec), "--json"]) == 0
    assert '"points": 2' in capsys.readouterr().out
    assert not list(tmp_path.glob("runs*")) and sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]


def test_print_config_prints_the_resolved_config_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    overrides = ["wd.value=5e-5", "aug.class_overrides={3: {rrc: {min_scale: 1.0}}}", "data.root=/nowhere"]
    assert main(["fit", "-c", "cifar10_resnet18", "--print-config", *overrides]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    assert load_config(tmp_path / "printed.yaml") == load_config(REPO / "configs" / "cifar10_resnet18.yaml", overrides)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["printed.yaml"]  # no run folder, no training


def _other_value(schema: type, key: str, value):
    """A value of the field ``key`` that differs from ``value`` and stresses the YAML writer."""
    facts = field_facts(schema, key) or {}
    if "choices" in facts:
        others = [c for c in facts["choices"] if c != value]
        return others[-1] if others else value
    if isinstance(value, bool):
        return not value
    if "range" in facts:
        low, high, _, _ = facts["range"]

        def pick(v):
            if isinstance(v, int):
                candidate = v + 3
                return candidate if high is None or candidate <= high else max(low or 0, v - 1)
            lo = low if low is not None else -1.0
            hi = high if high is not None else lo + 2.0
            return lo + (hi - lo) * 0.000173 if hi - lo > 0.01 else lo + (hi - lo) / 3

        return [pick(v) for v in value] if isinstance(value, list) else pick(value)
    if isinstance(value, str):
        return "1e-5: yes # no"
    return value


def _perturbed_config() -> tuple[RunConfig, list[str]]:
    """The defaults with every field that can take another valid value changed (one at a time, kept if valid)."""
    cfg, changed = RunConfig(), []

    def walk(obj, prefix):
        for f in dataclasses.fields(obj):
            value, key = getattr(obj, f.name), prefix + f.name
            if dataclasses.is_dataclass(value):
                walk(value, key + ".")
                continue
            new = _other_value(RunConfig, key, value)
            if new == value:
                continue
            setattr(obj, f.name, new)
            try:
                validate(cfg)
                changed.append(key)
            except ConfigError:
                setattr(obj, f.name, value)

    walk(cfg, "")
    cfg.wd.value = 5e-5
    cfg.aug.class_overrides = {3: {"flip": {"p": 0.25}}, "cat": {"policy": ["flip"]}}
    validate(cfg)
    return cfg, changed


def test_every_config_field_survives_the_yaml_round_trip(tmp_path):
    cfg, changed = _perturbed_config()
    leaves = []

    def count(obj, prefix=""):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            count(v, prefix + f.name + ".") if dataclasses.is_dataclass(v) else leaves.append(prefix + f.name)

    count(cfg)
    assert len(changed) >= 0.8 * len(leaves), sorted(set(leaves) - set(changed))
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg
    assert isinstance(load_config(path).wd.value, float) and load_config(path).wd.value == 5e-5
    assert set(load_config(path).aug.class_overrides) == {3, "cat"}
    for preset in sorted((REPO / "configs").glob("*.yaml")):
        path.write_text(dump_yaml(load_config(preset)))
        assert load_config(path) == load_config(preset), preset.name

    cfg.wd.value = math.nan
    path.write_text(dump_yaml(cfg))
    with pytest.raises(ConfigError, match="wd.value.*finite"):
        load_config(path)
    with pytest.raises(ConfigError, match="finite"):
        load_config(None, ["optim.lr=nan"])


def test_dali_backend_without_dali_says_which_extra_to_install(cifar_shards, tmp_path):
    code = (
        "import sys; sys.modules['nvidia'] = None\n"  # as if no DALI wheel were installed
        "from launch.cli import main\n"
        f"sys.exit(main(['fit', 'data.root={cifar_shards}', 'data.backend=dali', 'out_dir={tmp_path}', "
        "'logger.wandb=false']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert "\n" not in err and err.startswith("classreg fit: error: data.backend=dali needs NVIDIA DALI"), err
    assert 'pip install "classreg[dali-cuda12]"' in err and '"classreg[dali-cuda13]"' in err
    assert 'pip install ".[dali-cuda12]"' in err and "data.backend=torchvision" in err
    assert not (tmp_path / "run").exists()


def test_dali_sample_keys_come_from_the_public_source_info_output(cifar_shards):
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from datamodules.dali_backend.datamodule import DaliDataModule
    from lightning_modules.augment import ImageTransforms

    cfg = load_config(None, [f"data.root={cifar_shards}", "data.backend=dali", "data.batch_size=16"])
    dm = DaliDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data))
    dm.setup()
    loader = dm.loader("test", train=False, with_keys=True)
    assert type(loader.iterator) is DALIGenericIterator  # DALI's own iterator, no private method overridden
    assert loader.iterator.output_map == ["images", "labels", "oversized", "keys"]
    keys = [k for batch in loader for k in batch[2]]
    assert len(keys) == len(set(keys)) == 70 and all(k.rsplit("_", 1)[0] in dm.class_names for k in keys)


def test_datamodules_read_nothing_until_setup(tmp_path):
    from datamodules.dali_backend.datamodule import DaliDataModule
    from datamodules.shards.format import ShardError
    from datamodules.torchvision_backend.datamodule import ShardDataModule
    from lightning_modules.augment import ImageTransforms

    cfg = load_config(None, [f"data.root={tmp_path / 'not-yet'}"])
    for module in (ShardDataModule, DaliDataModule):
        dm = module(cfg.data, ImageTransforms.of(cfg.aug, cfg.data))  # the folder does not exist yet
        with pytest.raises(ShardError, match="not-yet"):
            dm.setup("fit")


def _fit_lines(out: str) -> dict[str, int]:
    return {what: out.count(what) for what in ("resuming ", "Per-class validation accuracy", "mean class accuracy")}


@pytest.mark.slow
def test_console_output_is_printed_once_under_ddp(cifar_shards, tmp_path):
    overrides = [
        f"data.root={cifar_shards}",
        f"out_dir={tmp_path}",
        "name=ddp",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "model.arch=resnet20",
        "trainer.limit_train_batches=2",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.progress_bar=false",
        "logger.wandb=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    outs = []
    for epochs in (1, 2):  # the second fit resumes from the first one's last.ckpt
        proc = subprocess.run(
            [sys.executable, "-m", "launch.cli", "fit", *overrides, f"trainer.max_epochs={epochs}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Starting with 2 processes" in proc.stdout + proc.stderr
        outs.append(proc.stdout + proc.stderr)
    assert _fit_lines(outs[0]) == {"resuming ": 0, "Per-class validation accuracy": 1, "mean class accuracy": 1}
    assert _fit_lines(outs[1]) == {"resuming ": 1, "Per-class validation accuracy": 1, "mean class accuracy": 1}
    assert sorted(p.name for p in (tmp_path / "ddp" / "logs").glob("metrics*.csv")) == ["metrics.1.csv", "metrics.csv"]


def _wheel_and_venv(tmp: Path) -> tuple[Path, Path]:
    """The wheel built from the repository's files, installed into a fresh venv that sees nothing of them."""
    src = tmp / "src"
    for name in (*PACKAGES, "configs", "slurm"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("classreg-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=CHILD_ENV,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # The heavy third-party packages come from this interpreter's site-packages (a .pth line adds the folder; the
    # .pth files in it, such as an editable install of classreg, are not run).
    (site / "zz_third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)],
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return wheel, venv


@pytest.mark.slow
def test_the_wheel_installed_in_a_clean_venv_plans_renders_and_trains(cifar_shards, tmp_path):
    wheel, venv = _wheel_and_venv(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/")[0] for n in names} == {*PACKAGES, wheel.name.split("-py3")[0] + ".dist-info"}
    assert "launch/configs/sweeps/paper_grid.yaml" in names and "launch/sweep/sweep_array.sbatch" in names
    core, extras = _declared()
    declared = {
        str(Requirement(line.split(": ", 1)[1])) for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    }
    assert {str(r) for r in core.values()} <= declared
    assert 'nvidia-dali-cuda120>=1.10; extra == "dali-cuda12"' in declared
    assert 'nvidia-dali-cuda130>=1.10; extra == "dali-cuda13"' in declared

    work = tmp_path / "empty"
    work.mkdir()

    def classreg(*args: str, python: bool = False) -> str:
        cmd = [str(venv / "bin" / "python"), *args] if python else [str(venv / "bin" / "classreg"), *args]
        proc = subprocess.run(cmd, cwd=work, env=CHILD_ENV, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    where = classreg("-c", "import launch, sys; print(launch.__file__); print(*sys.path, sep='\\n')", python=True)
    launch_file, *path = where.splitlines()
    third_party = sysconfig.get_paths()["purelib"]  # may lie inside the repository (.venv): only its packages are read
    assert launch_file.startswith(str(venv)), launch_file
    assert not [p for p in path if p != third_party and p.startswith(str(REPO))], path  # nothing of the source tree
    assert classreg("--version").strip() == "classreg 0.1.0"
    assert '"points": 105' in classreg("sweep", "plan", "paper_grid", "--json")

    # the demo's spec, with its base preset, found in the package and validated
    classreg(
        "-c",
        "from pathlib import Path; from launch.demo import demo_spec; demo_spec(Path('demo'), Path('demo/shards'), [])",
        python=True,
    )
    assert "points" in classreg("sweep", "plan", "demo/demo_sweep.yaml")

    spec = work / "small.yaml"
    spec.write_text(
        f"name: small\nbase: configs/cifar10_resnet18.yaml\noverrides: [data.root={cifar_shards}]\n"
        "axes: {product: {wd.value: [0.0, 5.0e-4]}}\nresources: {gpus_per_node: 0, cpus_per_task: 1}\n"
    )
    assert "would submit 2 points" in classreg("sweep", "submit", str(spec), "--dir", "sweep", "--dry-run")
    script = (work / "sweep" / "submissions" / "001.sbatch").read_text()
    template = next((venv / "lib").glob("python3*/site-packages/launch/sweep/sweep_array.sbatch")).read_text()
    for line in template.splitlines():
        if "{{" not in line:
            assert line in script  # the installed template, rendered
    assert "PYTHONPATH=" not in script.replace("${PYTHONPATH", "") and "no PYTHONPATH needed" in script
    assert f"srun {venv / 'bin' / 'python'} -m launch.cli fit" in script

    classreg(
        "fit",
        "-c",
        "cifar10_resnet18",
        f"data.root={cifar_shards}",
        "data.batch_size=8",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "logger.wandb=false",
    )
    assert (work / "runs" / "cifar10_resnet18" / "per_class.csv").is_file()
    assert (work / "runs" / "cifar10_resnet18" / "checkpoints" / "last.ckpt").is_file()
