"""`classreg sweep plan|submit|resume|status|sync|cancel|run`: argument parsing and the command functions."""

from __future__ import annotations

import argparse
import sys


def _cmd_plan(a) -> int:
    from launch.sweep.folder import Sweep, measured_epoch_minutes
    from launch.sweep.report import plan_summary, print_plan
    from launch.sweep.spec import load_spec, locate_spec, resolve_points

    a.spec = locate_spec(a.spec)
    spec = load_spec(a.spec)
    points = resolve_points(spec, a.spec)
    minutes, source = a.epoch_minutes, "--epoch-minutes"
    if minutes is None and a.dir:
        minutes, source = measured_epoch_minutes(Sweep.open(a.dir)), f"measured in {a.dir}"
    if minutes is None and spec.estimate.epoch_minutes:
        minutes, source = spec.estimate.epoch_minutes, "spec estimate.epoch_minutes"
    summary = plan_summary(spec, points, minutes, source if minutes else "none")
    if a.json:
        import json

        print(
            json.dumps(
                {**summary, "points_list": [{"index": p.index, "id": p.id, "params": p.params} for p in points]},
                indent=1,
            )
        )
    else:
        print_plan(summary, points, a.limit)
    return 0


def _submit_and_report(sweep, dry_run: bool, hold: bool = False, max_array_size=None) -> int:
    from launch.sweep.submit import submit

    arrays, ids = submit(sweep, dry_run=dry_run, hold=hold, max_array_size=max_array_size)
    if not ids:
        print("nothing to submit: every point is done, queued or running")
    elif dry_run:
        print(f"dry run: would submit {len(ids)} points; script in {sweep.dir / 'submissions'}")
    else:
        what = f"job array {arrays[0]}" if len(arrays) == 1 else f"{len(arrays)} job arrays ({', '.join(arrays)})"
        print(
            f"submitted {what} with {len(ids)} points (`classreg sweep status {sweep.dir}`)"
            + (
                f"; held: `scontrol release {','.join(arrays)}` starts {'it' if len(arrays) == 1 else 'them'}"
                if hold
                else ""
            )
        )
    return 0


def _cmd_submit(a) -> int:
    from launch.sweep.folder import prepare
    from launch.sweep.spec import locate_spec
    from launch.sweep.submit import array_limit

    prepared = prepare(locate_spec(a.spec), a.dir)
    limit = array_limit(a.dry_run)  # SLURM answers (and says how large an array may be) before anything is written
    sweep, new, total = prepared.write()
    print(f"sweep {sweep.name} in {sweep.dir}: {total} points ({new} new)")
    return _submit_and_report(sweep, a.dry_run, a.hold, max_array_size=limit)


def _cmd_resume(a) -> int:
    from launch.sweep.folder import Sweep

    return _submit_and_report(Sweep.open(a.dir), a.dry_run, a.hold)


def _cmd_status(a) -> int:
    from launch.sweep.folder import Sweep
    from launch.sweep.report import print_status, status_json, status_rows
    from launch.sweep.slurm import SlurmError

    sweep = Sweep.open(a.dir)
    if a.watch is not None:
        from launch.sweep.watch import watch

        if a.json or a.watch <= 0:
            print("classreg sweep: error: --watch takes a positive number of seconds, without --json", file=sys.stderr)
            return 2
        return watch(sweep, a.watch)
    try:
        queued = sweep.queued_jobs()
    except SlurmError:
        queued = None  # no SLURM client here: queue states unknown
    rows = status_rows(sweep, queued, log_lines=a.log_lines if a.json else 0)
    if a.json:
        print(status_json(sweep, rows))
    else:
        print_status(sweep, rows, a.limit, log_lines=a.log_lines)
    return 0


def _cmd_sync(a) -> int:
    from launch.sweep.folder import Sweep
    from launch.sweep.sync import sync

    if a.retries < 1 or a.timeout <= 0:
        print("classreg sweep: error: --retries takes 1 or more, --timeout a positive number", file=sys.stderr)
        return 2
    return sync(Sweep.open(a.dir), a.report, dry_run=a.dry_run, retries=a.retries, timeout=a.timeout)


def _cmd_cancel(a) -> int:
    from launch.sweep.folder import Sweep
    from launch.sweep.submit import cancel

    ids = cancel(Sweep.open(a.dir))
    print(f"cancelled {len(ids)} points" + (f": {' '.join(ids)}" if ids else ""))
    return 0


def _cmd_run(a) -> int:
    from launch.sweep.folder import Sweep
    from launch.sweep.local import LocalExecutor

    if not a.local:
        print("classreg sweep run: only --local is supported (use `sweep submit`/`resume` for SLURM)", file=sys.stderr)
        return 2
    counts = LocalExecutor(Sweep.open(a.dir), jobs=a.jobs).run()
    print("local run finished: " + (", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing to run"))
    return 0 if not counts.get("failed") else 1


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="plan, submit, resume, watch and cancel a grid of runs (SLURM or local)")
    ssub = sweep.add_subparsers(dest="sweep_command", required=True)

    p = ssub.add_parser("plan", help="list a spec's points, counts and a GPU-hour estimate (validates every point)")
    p.add_argument("spec", help="sweep spec: a YAML file or a packaged spec's name (`classreg presets`)")
    p.add_argument("--epoch-minutes", type=float, default=None, help="minutes per epoch of one point")
    p.add_argument("--dir", default=None, help="measure minutes per epoch from this sweep's finished points")
    p.add_argument("--limit", type=int, default=50, help="points to list (default 50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_plan)

    p = ssub.add_parser("submit", help="create the sweep folder and submit its points as SLURM job arrays")
    p.add_argument("spec", help="sweep spec: a YAML file or a packaged spec's name")
    p.add_argument("--dir", required=True, help="sweep folder (one sub-folder per point)")
    p.add_argument("--dry-run", action="store_true", help="write the folders and the sbatch script, do not submit")
    p.add_argument("--hold", action="store_true", help="submit held (sbatch --hold); start with `scontrol release`")
    p.set_defaults(func=_cmd_submit)

    p = ssub.add_parser("resume", help="re-submit the points that are not done, queued or running")
    p.add_argument("dir")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--hold", action="store_true", help="submit held (sbatch --hold)")
    p.set_defaults(func=_cmd_resume)

    p = ssub.add_parser("status", help="points by state with progress, last accuracy, job ids and failures")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true", help="machine-readable, every point")
    p.add_argument("--limit", type=int, default=200, help="rows in the table (default 200)")
    p.add_argument("--log-lines", type=int, default=5, help="log lines shown per failed point")
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=10.0,
        default=None,
        metavar="SECONDS",
        help="a live view, refreshed every SECONDS (default 10) until no point is queued or running; Ctrl-C quits",
    )
    p.set_defaults(func=_cmd_status)

    p = ssub.add_parser("sync", help="upload the points' offline W&B runs (and the report's) with `wandb sync`")
    p.add_argument("dir")
    p.add_argument("--dry-run", action="store_true", help="list the offline runs that would be uploaded")
    p.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a report folder outside DIR written by `classreg report --wandb`; repeatable (DIR/*/ is searched)",
    )
    p.add_argument("--retries", type=int, default=3, help="W&B's retries per request, 1 or more (default 3)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one point's `wandb sync` may take")
    p.set_defaults(func=_cmd_sync)

    p = ssub.add_parser("cancel", help="scancel the sweep's queued and running jobs")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_cancel)

    p = ssub.add_parser("run", help="run the points here, N at a time (no SLURM needed)")
    p.add_argument("dir")
    p.add_argument("--local", action="store_true", required=True, help="run on this machine")
    p.add_argument("-j", "--jobs", type=int, default=1, help="points at once (default 1)")
    p.set_defaults(func=_cmd_run)
