"""Dossier benchmark: render and sign the dossier of an N-item audit (target: under 2 s, the first included).

    python benchmarks/dossier_render.py [--items 12000] [--repeat 3] [--out results.json]

Builds a throwaway instance (SQLite), runs a real gate audit of N items (demo backend, the shipped policies, the
builtin bank repeated to N items) through the workflow, whose completion seals the run's evidence; then, in two new
processes that each assemble the app, times `operations.dossiers.emit` (context, chart, rendering, signing, storing,
the log checkpoint) for its audit gate ``--repeat`` times:

- **cold**: nothing of the renderer loaded before the first emit (the first includes importing WeasyPrint and
  pyHanko and setting up the fonts), as in `govern dossier emit`;
- **worker**: after :func:`governance.dossier.render.warm_up`, which the Celery worker runs before it forks its pool
  (timed apart), as for every dossier the worker emits.

Also times sealing the evidence once more in this process (what the audit's completion spent on it). Run it once per
size: ``--items 12000`` and ``--items 100000``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def whole_bank_file(n: int, folder: Path) -> Path:
    """The shipped bank, every item type, repeated with new ids to ``n`` items (the policies' behaviour criteria
    need their behaviour items)."""
    from governance.audit.items import load_items, write_items

    base = list(load_items("builtin").items)
    items = [base[k % len(base)].model_copy(update={"item_id": f"{base[k % len(base)].item_id}-r{k // len(base)}"})
             for k in range(n)]
    path = folder / f"bank-{n}.jsonl"
    write_items(items, path)
    return path


def emit_in(folder: Path, case_id: int, repeat: int, warm: bool, profile: Path | None, profile_at: int) -> dict:
    """The child process: assemble the app on the built instance and time ``repeat`` emits (after the worker's
    warm-up when ``warm``)."""
    from governance.app import create_app
    from governance.db import get_db
    from governance.models import Submission
    from governance.operations import dossiers as dossier_ops

    app = create_app(json.loads((folder / "config.json").read_text()))
    settings = app.config["GOVERNANCE"]
    warm_seconds = None
    if warm:
        from governance.dossier.render import warm_up

        warm_seconds = warm_up(settings.reports_dir)
    timings, dossier = [], None
    with app.app_context():
        session = get_db(app).session_factory()
        case = session.get(Submission, case_id)
        for index in range(repeat):
            began = time.perf_counter()
            if profile and index == profile_at:
                import cProfile

                with cProfile.Profile() as profiler:
                    dossier = dossier_ops.emit(session, settings, case, "audit")
                profiler.dump_stats(profile)
            else:
                dossier = dossier_ops.emit(session, settings, case, "audit")
            session.commit()
            timings.append(round(time.perf_counter() - began, 3))
        size = (settings.instance_path / "dossiers" / dossier.path).stat().st_size
    return {"warm_up_seconds": warm_seconds and round(warm_seconds, 3), "emit_seconds": timings,
            "pages": dossier.page_count, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--profile", type=Path, help="write cProfile statistics of one emit here (cold process)")
    parser.add_argument("--profile-at", type=int, default=0, help="which emit to profile (0: the first)")
    parser.add_argument("--emit-in", type=Path, help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.emit_in:
        print(json.dumps(emit_in(arguments.emit_in, arguments.case, arguments.repeat, arguments.warm,
                                 arguments.profile, arguments.profile_at)))
        return

    from benchmarks.audit_throughput import machine
    from governance import migrate, queries
    from governance.app import create_app
    from governance.audit.store import run_rows
    from governance.db import get_db, make_session_factory
    from governance.dossier import evidence
    from governance.dossier.keys import init_keys
    from tests.factories import Factory

    folder = Path(tempfile.mkdtemp(prefix="dossier-bench-"))
    bank = whole_bank_file(arguments.items, folder)
    database = f"sqlite:///{folder / 'db.sqlite3'}"
    migrate.upgrade(database)
    (folder / "instance").mkdir()
    config = {"instance_path": str(folder / "instance"), "database_url": database, "secret_key": "x" * 40,
              "demo_mode": True, "audit_dispatch": "inline", "dossier_dispatch": "queue",
              "item_sets": {"builtin": str(bank)}, "signing_passphrase": "benchmark passphrase"}
    (folder / "config.json").write_text(json.dumps(config))
    app = create_app(config)
    settings = app.config["GOVERNANCE"]
    init_keys(settings)
    with app.app_context():
        session = get_db(app).session_factory()
        started = time.perf_counter()
        case = Factory(app, session).case_in("in_review", example="emr_generation")
        audit_seconds = time.perf_counter() - started
        run = queries.latest_audit(session, case)
        rows = run_rows(make_session_factory(session.get_bind()), run.id)
        began = time.perf_counter()
        sealed = evidence.seal(settings, run, rows)
        seal_seconds = time.perf_counter() - began
        case_id = case.id
        session.close()

    def child(warm: bool) -> dict:
        command = [sys.executable, str(Path(__file__).resolve()), "--emit-in", str(folder), "--case", str(case_id),
                   "--repeat", str(arguments.repeat)]
        if warm:
            command.append("--warm")
        elif arguments.profile:
            command += ["--profile", str(arguments.profile), "--profile-at", str(arguments.profile_at)]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        return json.loads(done.stdout.strip().splitlines()[-1])

    cold, worker = child(False), child(True)
    report = {"machine": machine(), "command": " ".join(["python", "benchmarks/dossier_render.py", *sys.argv[1:]]),
              "items": arguments.items, "audit_seconds_demo_backend": round(audit_seconds, 2),
              "evidence_sealed_at_completion": {"seconds": round(seal_seconds, 2), "json_bytes": sealed.size,
                                                "deflated_bytes": len(sealed.deflated)},
              "cold_process": {"emit_seconds": cold["emit_seconds"], "first_seconds": cold["emit_seconds"][0],
                               "best_seconds": min(cold["emit_seconds"])},
              "worker_process": {"warm_up_seconds": worker["warm_up_seconds"], "emit_seconds": worker["emit_seconds"],
                                 "first_seconds": worker["emit_seconds"][0],
                                 "best_seconds": min(worker["emit_seconds"])},
              "pages": cold["pages"], "bytes": cold["bytes"]}
    text = json.dumps(report, indent=2)
    print(text)
    if arguments.out:
        arguments.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
