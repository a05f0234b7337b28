"""Dossier benchmark: render and sign the dossier of an N-item audit (target: under 2 s, the first included).

    python benchmarks/dossier_render.py [--items 12000] [--repeat 3] [--out results.json]

Builds a throwaway instance (SQLite), runs a real gate audit of N items (demo backend, the shipped policies,
the builtin bank repeated to N items) through the workflow, then times `operations.dossiers.emit` (context,
chart, rendering, signing, storing, the log checkpoint) for its audit gate, the first emit in the process
first. Run it once per size: `--items 12000` and `--items 100000`.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--profile", type=Path, help="write cProfile statistics of the first emit here")
    arguments = parser.parse_args()

    from benchmarks.audit_throughput import machine
    from governance import migrate
    from governance.app import create_app
    from governance.db import get_db
    from governance.dossier.keys import init_keys
    from governance.operations import dossiers as dossier_ops
    from tests.factories import Factory

    folder = Path(tempfile.mkdtemp(prefix="dossier-bench-"))
    bank = whole_bank_file(arguments.items, folder)
    database = f"sqlite:///{folder / 'db.sqlite3'}"
    migrate.upgrade(database)
    (folder / "instance").mkdir()
    app = create_app({"instance_path": folder / "instance", "database_url": database, "secret_key": "x" * 40,
                      "demo_mode": True, "audit_dispatch": "inline", "dossier_dispatch": "queue",
                      "item_sets": {"builtin": str(bank)}, "signing_passphrase": "benchmark passphrase"})
    settings = app.config["GOVERNANCE"]
    init_keys(settings)
    with app.app_context():
        session = get_db(app).session_factory()
        factory = Factory(app, session)
        started = time.perf_counter()
        case = factory.case_in("in_review", example="emr_generation")
        audit_seconds = time.perf_counter() - started
        timings, dossier = [], None
        for _ in range(arguments.repeat):
            began = time.perf_counter()
            if arguments.profile and not timings:
                import cProfile

                with cProfile.Profile() as profile:
                    dossier = dossier_ops.emit(session, settings, case, "audit")
                profile.dump_stats(arguments.profile)
            else:
                dossier = dossier_ops.emit(session, settings, case, "audit")
            session.commit()
            timings.append(time.perf_counter() - began)
        size = (settings.instance_path / "dossiers" / dossier.path).stat().st_size
    report = {"machine": machine(), "command": " ".join(["python", "benchmarks/dossier_render.py", *sys.argv[1:]]),
              "items": arguments.items, "audit_seconds_demo_backend": round(audit_seconds, 2),
              "emit_seconds_first_in_process_first": [round(t, 2) for t in timings],
              "first_seconds": round(timings[0], 2), "best_seconds": round(min(timings), 2),
              "pages": dossier.page_count, "bytes": size}
    text = json.dumps(report, indent=2)
    print(text)
    if arguments.out:
        arguments.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
