"""Many readers, one study: merge without loss or duplicates (also under concurrent writers),
CSV import, and the export -> import -> export round trip."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from napari_mlmi_interp.cli import main
from napari_mlmi_interp.store import StoreError, StudyStore
from napari_mlmi_interp.store.merge import merge_studies
from napari_mlmi_interp.store.ratings_csv import import_ratings_csv

CASES = [f"case-{i:016x}" for i in range(4)]


def rate_some(path, reader, *, offset=0, method="gradcam"):
    """Four runs (two share parameters with the other reader's file), two ratings and an action each."""
    with StudyStore(path, reader=reader) as s:
        for i, case in enumerate(CASES):
            run = s.add_run(
                case, model="m", model_sha256="abc", method=method, target="lesion", params={"k": i % 2}
            )
            s.rate(run, "localization", 1 + (i + offset) % 5, f"{reader} on {i}")
            s.rate(run, "actionability", None)
            s.set_action(run, "accept" if i % 2 else "refer")


def count(path, table):
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_merge_keeps_every_rating_once_and_is_idempotent(tmp_path):
    a, b, out = tmp_path / "ana.sqlite", tmp_path / "ben.sqlite", tmp_path / "all.sqlite"
    rate_some(a, "ana")
    rate_some(b, "ben", offset=2)
    report = merge_studies(out, [a, b])
    assert report.added[str(a)]["ratings"] == 8 and report.added[str(b)]["ratings"] == 8
    assert report.added[str(a)]["runs"] == 4 and report.added[str(b)]["runs"] == 0  # the same runs
    assert count(out, "ratings") == 16 and count(out, "actions") == 8 and count(out, "runs") == 4
    # again, in the other order, with the output among the sources: nothing new
    report = merge_studies(out, [b, a, out])
    assert report.added[str(a)]["ratings"] == 0 and report.skipped[str(b)]["ratings"] == 8
    assert count(out, "ratings") == 16
    with StudyStore(out) as s:
        rows = s.rows()
    with StudyStore(a) as s:
        ana = [r for r in s.rows()]
    assert [r for r in rows if r["reader"] == "ana"] == ana  # ana's ratings as she left them
    # the sources were read, never written
    assert count(a, "ratings") == 8 and count(b, "ratings") == 8


def test_merge_order_does_not_change_the_current_rating(tmp_path):
    """A reader who rated on two machines: the latest rating is current, whatever the merge order."""
    a, b = tmp_path / "laptop.sqlite", tmp_path / "desk.sqlite"
    for path, value, at in ((a, 2, 1000.0), (b, 4, 2000.0)):
        with StudyStore(path, reader="ana") as s:
            run = s.add_run(CASES[0], model="m", model_sha256="abc", method="gradcam", target="lesion")
            s._write(
                "INSERT INTO ratings (run_id, reader, element, rating, note, created_at) "
                "VALUES (?, ?, ?, ?, '', ?)",
                (run, "ana", "localization", value, at),
            )
    for order, name in (([a, b], "ab.sqlite"), ([b, a], "ba.sqlite")):
        merge_studies(tmp_path / name, order)
        with StudyStore(tmp_path / name, reader="ana") as s:
            assert s.ratings(1)["localization"]["rating"] == 4


WRITER = textwrap.dedent(
    """
    import sys
    from napari_mlmi_interp.store import StudyStore
    path, reader, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with StudyStore(path, reader=reader) as s:
        for i in range(n):
            run = s.add_run("case-%016x" % (i % 7), model="m", model_sha256="abc", method="gradcam",
                            target="lesion")
            s.rate(run, "localization", 1 + i % 5, "rating %d" % i)
    """
)


def test_merge_while_readers_write_loses_nothing(tmp_path):
    """ana keeps rating into her file and cho into the merged one while merges run."""
    a, out = tmp_path / "ana.sqlite", tmp_path / "all.sqlite"
    StudyStore(a).close()
    StudyStore(out).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(a), "ana", "200"]),
        subprocess.Popen([sys.executable, "-c", WRITER, str(out), "cho", "200"]),
    ]
    merges = 0
    while any(p.poll() is None for p in procs):
        merge_studies(out, [a])
        merges += 1
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    merge_studies(out, [a])  # what ana rated after the last merge
    con = sqlite3.connect(out)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    notes = dict(con.execute("SELECT reader, COUNT(DISTINCT note) FROM ratings GROUP BY reader"))
    rows = dict(con.execute("SELECT reader, COUNT(*) FROM ratings GROUP BY reader"))
    con.close()
    assert merges >= 2
    assert notes == {"ana": 200, "cho": 200}  # every rating of both
    assert rows == {"ana": 200, "cho": 200}  # and none twice


def test_export_import_export_is_identical(tmp_path):
    a, b, merged = tmp_path / "ana.sqlite", tmp_path / "ben.sqlite", tmp_path / "m.sqlite"
    rate_some(a, "ana")
    rate_some(b, "ben", offset=1, method="integrated_gradients")
    merge_studies(merged, [a, b])
    with StudyStore(merged) as s:
        s.rate(1, "localization", 5, 'a note, with "quotes"\nand a second line', reader="ana")
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert main(["ratings", "export", str(merged), "--csv", str(first)]) == 0
    assert main(["ratings", "import", str(first), "--study", str(tmp_path / "new.sqlite")]) == 0
    assert main(["ratings", "export", str(tmp_path / "new.sqlite"), "--csv", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    rows = list(csv.DictReader(first.open()))
    assert len(rows) == 8 * 2 + 8  # two elements per run and reader, then the actions
    # importing it again, or into the file it came from, adds nothing
    for target in (tmp_path / "new.sqlite", merged):
        with StudyStore(target) as s:
            before = count(target, "ratings")
            report = import_ratings_csv(first, s)
            assert report.ratings == 0 and report.actions == 0 and report.skipped == len(rows)
            assert count(target, "ratings") == before


def test_import_reads_the_required_columns_only_and_pseudonymises_case_names(tmp_path):
    path = tmp_path / "elsewhere.csv"
    path.write_text(
        "case,model,method,target,reader,element,rating\n"
        "PAT-0042,resnet,gradcam,nodule,dr_a,localization,4\n"
        "PAT-0042,resnet,gradcam,nodule,dr_a,actionability,NA\n"
        "PAT-0042,resnet,gradcam,nodule,dr_b,localization,2\n"
        "PAT-0042,resnet,gradcam,nodule,dr_b,action,override\n"
    )
    db = tmp_path / "s.sqlite"
    with StudyStore(db) as s:
        report = import_ratings_csv(path, s)
        assert (report.ratings, report.actions, report.runs, report.pseudonymised_cases) == (3, 1, 1, 1)
        again = import_ratings_csv(path, s)  # no rated_at: the same as the current value is skipped
        assert again.ratings == 0 and again.skipped == 4
        rows = s.rows()
    assert "PAT-0042" not in db.read_bytes().decode("latin-1")
    assert {r["case"] for r in rows} == {rows[0]["case"]} and rows[0]["case"].startswith("case-")
    assert rows[0]["model_sha256"] == "name:resnet"
    assert [(r["reader"], r["element"], r["rating"]) for r in rows] == [
        ("dr_a", "localization", 4),
        ("dr_a", "actionability", "NA"),
        ("dr_b", "localization", 2),
        ("dr_b", "action", "override"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("case-00,m,gradcam,t,ana,localization,7", "line 2: a rating is 1-5 or NA, got '7'"),
        ("case-00,m,gradcam,t,ana,beauty,3", "line 2: element must be one of"),
        ("case-00,m,gradcam,t,ana,action,ignore", "line 2: an action is one of"),
        ("case-00,m,gradcam,t,,localization,3", "line 2: 'reader' is empty"),
    ],
)
def test_a_bad_row_names_its_line_and_imports_nothing(tmp_path, line, message):
    path = tmp_path / "bad.csv"
    path.write_text("case,model,method,target,reader,element,rating\n" + line + "\n")
    with StudyStore(tmp_path / "s.sqlite") as s:
        with pytest.raises(StoreError, match=message):
            import_ratings_csv(path, s)
        assert s.rows() == []


def test_import_and_merge_refuse_what_they_cannot_read(tmp_path, capsys):
    bad = tmp_path / "no_columns.csv"
    bad.write_text("case,reader\nx,y\n")
    assert main(["ratings", "import", str(bad), "--study", str(tmp_path / "s.sqlite")]) == 2
    assert "missing column(s) model, method, target, element, rating" in capsys.readouterr().err
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    assert main(["study", "merge", str(tmp_path / "out.sqlite"), str(junk)]) == 2
    assert "not a usable study file" in capsys.readouterr().err
    assert main(["study", "merge", str(tmp_path / "out.sqlite"), str(tmp_path / "none.sqlite")]) == 2
    assert "no such study file" in capsys.readouterr().err


def test_merging_an_older_file_migrates_a_copy_only(tmp_path):
    old = tmp_path / "old.sqlite"
    with StudyStore(old, upgrade_to=1) as s:
        s._write("INSERT INTO cases VALUES ('case-aaaa', 'MR', 0)")
        s._write(
            "INSERT INTO runs (case_id, model, model_sha256, method, target, created_at) "
            "VALUES ('case-aaaa', 'm', 'h', 'saliency', 'lesion', 0)"
        )
        s._write(
            "INSERT INTO ratings (run_id, reader, element, rating, created_at) "
            "VALUES (1, 'ana', 'localization', 3, 5)"
        )
    merge_studies(tmp_path / "out.sqlite", [old])
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 1  # untouched
    with StudyStore(tmp_path / "out.sqlite", reader="ana") as s:
        assert s.ratings(1)["localization"]["rating"] == 3


def test_one_name_in_two_files_is_reported(tmp_path):
    """Two people who both kept the default name 'reader': the merge and the analysis say so."""
    from napari_mlmi_interp.study import analyze_study

    a, b = tmp_path / "desk1.sqlite", tmp_path / "desk2.sqlite"
    rate_some(a, "reader")
    rate_some(b, "reader", offset=3)
    report = merge_studies(tmp_path / "all.sqlite", [a, b])
    assert report.same_name == {"reader": 4} and "one person on two machines" in report.summary()
    assert merge_studies(tmp_path / "ana.sqlite", [tmp_path / "all.sqlite"]).same_name == {}
    out = analyze_study([a, b], n_boot=0)
    assert out["counts"]["same_name"] == {"reader": 4}


def test_a_csv_imported_beside_its_source_merges_without_duplicates(tmp_path):
    a = tmp_path / "ana.sqlite"
    rate_some(a, "ana")
    with StudyStore(a) as s:
        s.export_csv(tmp_path / "ana.csv")
    with StudyStore(tmp_path / "imported.sqlite") as s:
        import_ratings_csv(tmp_path / "ana.csv", s)
    merge_studies(tmp_path / "all.sqlite", [a, tmp_path / "imported.sqlite"])
    assert count(tmp_path / "all.sqlite", "ratings") == 8 and count(tmp_path / "all.sqlite", "actions") == 4


def test_an_sqlite_file_of_something_else_is_refused_and_left_alone(tmp_path):
    from napari_mlmi_interp.study import analyze_study

    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE patients (name TEXT)")
    con.commit()
    con.close()
    good = tmp_path / "ana.sqlite"
    rate_some(good, "ana")
    with pytest.raises(StoreError, match=r"not a study file .*tables patients"):
        merge_studies(tmp_path / "out.sqlite", [good, other])
    assert not (tmp_path / "out.sqlite").exists()  # checked before a row was written
    with pytest.raises(StoreError, match="not a study file"):
        analyze_study([other])
    con = sqlite3.connect(other)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["patients"]
    con.close()


def test_an_empty_model_hash_survives_the_round_trip(tmp_path):
    db = tmp_path / "s.sqlite"
    with StudyStore(db, reader="ana") as s:
        s.rate(
            s.add_run(CASES[0], model="m", model_sha256="", method="gradcam", target="t"), "localization", 2
        )
        s.export_csv(tmp_path / "a.csv")
        assert import_ratings_csv(tmp_path / "a.csv", s).ratings == 0  # its own export: nothing new
    with StudyStore(tmp_path / "t.sqlite") as s:
        import_ratings_csv(tmp_path / "a.csv", s)
        s.export_csv(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
