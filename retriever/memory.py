"""Peak memory of the current process, measured so that a child process reports its own."""

from __future__ import annotations


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` of /proc/self/status on Linux, which starts afresh
    when a program is exec'd. ``getrusage``'s ``ru_maxrss`` does not: a process started by fork + exec (a
    subprocess, a Ray worker, densepipe's isolated JVM child) inherits its parent's high-water mark, so it is only
    the fallback where /proc is missing (macOS reports it in bytes, Linux in KB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_rss_mb() -> float:
    return round(peak_rss_bytes() / 2**20, 1)
