"""strongroom bench and tools/bench: the parts that do not time anything.

The timings themselves are not asserted (they depend on the machine); what
is checked is that the engine bench runs its round trip and reports the
store size against zstd, that the CSV input is deterministic, and that
tools/bench turns a results file into the table with the right verdicts.
"""
import csv
import subprocess
import sys

from conftest import REPO, SR_BIN, no_valgrind, sr

BENCH = str(REPO / "tools" / "bench")


@no_valgrind("a throughput benchmark: it measures valgrind, not the engine")
def test_engine_bench_reports_every_workload_and_the_store_size_against_zstd(tmp_path):
    p = sr("bench", "--csv", "--size", "2", "--runs", "1", "--chunk-size", "16k,64k",
           "--dir", tmp_path, timeout=300)
    rows = list(csv.reader(p.stdout.splitlines()))
    assert rows[0] == ["chunk_size", "workload", "data", "value", "unit"]
    seen = {(r[0], r[1], r[2]) for r in rows[1:]}
    for chunk in ("16384", "65536"):
        for data in ("random", "csv"):
            assert (chunk, "engine write (vf_write + seal)", data) in seen
            assert (chunk, "engine read (vf_read of a fresh open)", data) in seen
        assert (chunk, "store bytes", "csv") in seen
        assert (chunk, "zstd -3 bytes", "csv") in seen
    sizes = {(r[0], r[1], r[2]): int(r[3]) for r in rows[1:] if r[4] == "bytes"}
    # CSV shrinks; random data costs under 1% extra.
    assert sizes[("65536", "store bytes", "csv")] < (2 << 20) // 2
    assert sizes[("65536", "store bytes", "random")] < (2 << 20) * 101 // 100
    # The temporary store is gone.
    assert list(tmp_path.iterdir()) == []


def test_emitted_csv_is_deterministic_and_exactly_the_asked_size():
    a = subprocess.run([SR_BIN, "bench", "--emit-csv", "100000"],
                       capture_output=True, check=True).stdout
    b = subprocess.run([SR_BIN, "bench", "--emit-csv", "100000"],
                       capture_output=True, check=True).stdout
    assert len(a) == 100000
    assert a == b
    assert a.startswith(b"customer_id,first_name,last_name,")
    # A prefix of a longer stream: the bytes do not depend on the length.
    c = subprocess.run([SR_BIN, "bench", "--emit-csv", "250000"],
                       capture_output=True, check=True).stdout
    assert c[:100000] == a


def test_engine_bench_rejects_a_chunk_size_that_is_not_a_power_of_two():
    p = sr("bench", "--chunk-size", "50000", check=False)
    assert p.returncode == 2
    assert "chunk size" in p.stderr


def test_bench_report_marks_targets_met_and_missed(tmp_path):
    res = tmp_path / "r.csv"
    with open(res, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "metric", "unit", "fs", "run", "value"])
        for run, (gc, srv) in enumerate([(200, 300), (220, 280), (210, 290)], 1):
            w.writerow(["seq write random", "throughput", "MB/s", "gocryptfs", run, gc])
            w.writerow(["seq write random", "throughput", "MB/s", "strongroom", run, srv])
        w.writerow(["small files extract", "time", "s", "gocryptfs", 1, 10.0])
        w.writerow(["small files extract", "time", "s", "strongroom", 1, 5.0])
        w.writerow(["store size csv", "bytes", "MiB", "strongroom", 1, 360.0])
        w.writerow(["reference", "zstd -3 per chunk", "MiB", "zstd", 0, 350.0])
        w.writerow(["daemon", "peak rss after mount", "MiB", "strongroom", 0, 40.0])
        w.writerow(["daemon", "peak rss after mount", "MiB", "gocryptfs", 0, 20.0])
    p = subprocess.run(["/usr/bin/python3", BENCH, "--report", str(res)], capture_output=True,
                       text=True, check=True)
    lines = {l.split("|")[1].strip(): l for l in p.stdout.splitlines() if l.startswith("| ")}
    # Medians: 290 / 210 = 1.38x against >= 1.3.
    assert "1.38x" in lines["seq write random"] and lines["seq write random"].endswith("| ok |")
    # 5 / 10 = 0.50x against <= 0.4.
    assert lines["small files extract"].endswith("| MISSED |")
    # 360 / 350 = 1.03x of zstd -3 against <= 1.05.
    assert "1.03x of zstd -3" in lines["store size csv"]
    assert lines["store size csv"].endswith("| ok |")
    assert lines["daemon peak RSS (after mount)"].endswith("| ok |")
    assert "3 targets met, 1 missed: small files extract" in p.stdout
