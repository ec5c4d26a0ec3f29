"""`classreg report --wandb`: the report as one W&B run of ``job_type=report`` in the sweep's group.

The run id is fixed per sweep (``run_id(group, "report")``), so every re-run of the report continues the same
run (``resume="allow"``). It logs the headline (run notes and summary), settings.csv and comparisons.csv as
tables, the figures, the HTML page, and the report folder as an artifact whose metadata lists the point runs'
``per_class-<run id>`` artifacts it was built from. Online, the report run uses those artifacts
(``run.use_artifact``); W&B refuses that in offline mode, so an offline report keeps the list in
``wandb_report.json`` and `classreg sweep sync` declares the uses once everything is uploaded.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import pandas as pd
from rich.console import Console

from datamodules.configkit import atomic_write_text
from launch.report.errors import ReportError
from lightning_modules.run_record import run_completed
from lightning_modules.wandb_logging import resolve_mode, run_id

RECORD = "wandb_report.json"  # in the report folder: the run, its mode, and the artifacts it uses
KEY = "report"  # prefix of everything the report logs


def _common(runs, key: str, default: str) -> str:
    values = Counter(str(r.config.get(key) if r.config.get(key) is not None else default) for r in runs)
    if len(values) > 1:
        listing = ", ".join(f"'{v}' ({n} runs)" for v, n in values.most_common())
        raise ReportError(
            f"--wandb: the runs have different {key}: {listing}; report on one sweep at a time to log it to W&B"
        )
    return next(iter(values))


def _records(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).where(df.notna(), None)


def used_artifacts(runs) -> tuple[list[dict], int]:
    """The ``per_class-<run id>`` artifact of every finished run that logged to W&B, and how many runs have none
    yet (still training, or trained with logger.wandb=false)."""
    used, without = [], 0
    for r in runs:
        if r.config.get("logger.wandb") is False or not run_completed(r.path):
            without += 1
            continue
        rid = run_id(str(r.config.get("logger.group") or ""), str(r.config.get("name")))
        used.append({"artifact": f"per_class-{rid}:latest", "run_id": rid, "run": str(r.path)})
    return used, without


def log_report(
    report,
    study,
    options,
    tables: dict[str, pd.DataFrame],
    figs,
    coverage: str,
    console: Console,
    sweep_dir: Optional[Path] = None,
) -> dict:
    """Log ``report`` (a build.Report) to W&B; returns what was logged (also written to wandb_report.json)."""
    try:
        import wandb
    except ImportError:
        raise ReportError("--wandb needs the wandb package: `pip install wandb`") from None

    runs = study.runs
    group = _common(runs, "logger.group", "")
    project = _common(runs, "logger.project", "classreg")
    entity = _common(runs, "logger.entity", "")
    mode, why = resolve_mode(_common(runs, "logger.mode", "auto"))
    if mode == "disabled":
        console.print(f"W&B: not logging the report ({why})")
        return {"mode": mode}
    out_dir = report.out_dir.resolve()
    rid = run_id(group or f"report folder {out_dir}", KEY)
    record_path = out_dir / RECORD
    previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    revision = int(previous.get("revision", -1)) + 1
    used, without = used_artifacts(runs)

    run = wandb.init(
        project=project,
        entity=entity or None,
        group=group or None,
        job_type="report",
        id=rid,
        name=f"report {group}" if group else "report",
        notes=report.headline,
        resume="allow",
        mode=mode,
        dir=str(out_dir),
        config={"report": asdict(options), "varying_keys": study.keys, "settings": study.labels},
        settings=wandb.Settings(silent=True),  # the two W&B lines printed here say where the run is
    )
    try:
        run.notes = report.headline  # a resumed run keeps its old notes otherwise
        comparisons = tables["comparisons"]
        shown = comparisons
        if len(comparisons) > wandb.Table.MAX_ROWS:  # W&B truncates longer tables logged to a run
            shown = comparisons.sort_values(["q_value", "p_value"], na_position="last").head(wandb.Table.MAX_ROWS)
            console.print(
                f"W&B: {KEY}/comparisons holds the {len(shown)} rows with the smallest q of {len(comparisons)}; "
                "all of them are in the report artifact"
            )
        logged = {
            f"{KEY}/settings": wandb.Table(dataframe=_records(tables["settings"])),
            f"{KEY}/comparisons": wandb.Table(dataframe=_records(shown)),
            f"{KEY}/page": wandb.Html(report.html.read_text(), inject=False),  # self-contained: no W&B stylesheet
        }
        for name, caption, path in figs:
            logged[f"{KEY}/figures/{name}"] = wandb.Image(str(path), caption=caption)
        run.log(logged, step=max(run.step, revision))
        run.summary.update(
            {
                f"{KEY}/headline": report.headline,
                f"{KEY}/coverage": coverage,
                f"{KEY}/runs": len(runs),
                f"{KEY}/runs_without_artifact": without,
                f"{KEY}/comparisons_rows": len(comparisons),
                f"{KEY}/reference": report.reference,
                f"{KEY}/best_mean": report.best,
            }
        )
        artifact = wandb.Artifact(
            rid,
            type="report",
            description=report.headline,
            metadata={"headline": report.headline, "coverage": coverage, "uses": [u["artifact"] for u in used]},
        )
        for path in sorted(set(report.files.values())):
            artifact.add_file(str(path), name=str(Path(path).resolve().relative_to(out_dir)))
        artifact.add(wandb.Table(dataframe=_records(comparisons)), "comparisons")
        not_found = []
        if mode == "online":
            for u in used:
                try:
                    run.use_artifact(u["artifact"], type="per_class_results")
                    u["declared"] = True
                except (wandb.errors.CommError, ValueError):
                    not_found.append(u["artifact"])  # that point's run is still offline: `sweep sync` uploads it
        run.log_artifact(artifact)
        sync_dir = str(run.settings.sync_dir)
    finally:
        run.finish()
    info = {
        "run_id": rid,
        "project": project,
        "entity": entity,
        "group": group,
        "mode": mode,
        "why": why,
        "revision": revision,
        "sync_dir": sync_dir,
        "uses": used,
        "synced": previous.get("synced", {}),  # kept for `classreg sweep sync` (launch/sweep/sync.py)
    }
    atomic_write_text(record_path, json.dumps(info, indent=1))
    console.print(
        f"W&B: report run {rid} in group '{group}' ({mode}: {why}); it uses {len(used)} per-class artifacts"
        + (f", {len(not_found)} of them not on W&B yet" if not_found else "")
        + (f"; {without} runs have none (not finished, or logger.wandb=false)" if without else ""),
        soft_wrap=True,
    )
    if mode == "offline":
        how = f"`wandb sync {sync_dir}`"
        if sweep_dir is not None:
            inside = out_dir.parent == Path(sweep_dir).resolve()
            how = f"`classreg sweep sync {sweep_dir}" + ("`" if inside else f" --report {out_dir}`")
        console.print(f"W&B: the report run is offline; upload it with {how}", soft_wrap=True)
    return info
