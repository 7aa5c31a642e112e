import os
import subprocess
import sys
import time

import pytest

from bench.cpu_usage import ProcessGroups, core_busy_seconds, spent


def test_spent_counts_new_processes_in_full_and_sums_per_group() -> None:
    before = {("gateway", 1): 1.0, ("postgres", 7): 2.0}
    after = {("gateway", 1): 1.5, ("postgres", 7): 2.25, ("postgres", 8): 0.25}
    assert spent(before, after) == {"gateway": 0.5, "postgres": 0.5}


def test_groups_see_a_busy_child_process() -> None:
    burner = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ninput()"],
        stdin=subprocess.PIPE,
    )
    try:
        groups = ProcessGroups({"burner": burner.pid})
        first = groups.snapshot()
        time.sleep(0.6)
        used = spent(first, groups.snapshot())
        assert 0.1 < used["burner"] <= 0.6
    finally:
        burner.kill()
        burner.wait()


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_core_busy_reads_proc_stat() -> None:
    assert core_busy_seconds(0) is not None and core_busy_seconds(0) > 0
    assert core_busy_seconds(None) is None
