"""What a run says: the machine and versions it ran with, and the markdown tables printed at the end."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from bench._common import cores

PACKAGES: tuple[str, ...] = ("fastapi", "starlette", "pydantic", "sqlalchemy", "asyncpg", "uvicorn")
PACKAGES += ("uvloop", "httptools", "pyjwt", "bcrypt", "orjson", "structlog", "prometheus-client")


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": cores(),
        "cpu_model": model,
        "memory_gib": round(memory, 1),
        "kernel": platform.release(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions(postgres: str, wrk: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    return found | {"postgres": postgres, "wrk": wrk}


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:,.{digits}f}"


def _row(label: str, r: dict[str, Any], digits: int = 1) -> str:
    s, f = r["service"], r["floor"]
    return (
        f"| {label} | {_f(s['rps'], digits)} | {_f(f['rps'], digits)} | **{_x(r['rps_ratio'])}** "
        f"| {_f(s['p50_ms'], 2)} / {_f(f['p50_ms'], 2)} | {_f(s['p99_ms'], 2)} / {_f(f['p99_ms'], 2)} "
        f"| {_x(r['p99_ratio'])} | {s['errors']} / {f['errors']} | {_cpu(r)} |"
    )


def _cpu(r: dict[str, Any]) -> str:
    if "cpu_ms_per_request" not in r["service"]:
        return "-"
    s, f = r["service"]["cpu_ms_per_request"], r["floor"]["cpu_ms_per_request"]
    return f"{_f(s, 3)} / {_f(f, 3)} ({_x(r['cpu_ratio'])})"


def _x(value: float) -> str:
    return "-" if value != value else f"{value:.2f}x"


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "**FAIL**"


def markdown(results: dict[str, Any]) -> str:
    m, v, sc = results["machine"], results["versions"], results["scenarios"]
    lines = [
        f"## userapi bench {results['started_at']}{' (quick)' if results['options']['quick'] else ''}",
        "",
        f"- machine: {m['cores']} cores, {m['cpu_model']}, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"load average at start {m['loadavg_start'][0]}, at end {m.get('loadavg_end', ['?'])[0]}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- service: `userapi serve --workers N`, {results['service_config']}",
        f"- rounds: {results['options']['rounds']} x {results['options']['duration']} s, A/B alternated, "
        "medians; ratio = service / floor",
        f"- other processes on the machine used {_interference(sc)} of its CPU during the measured runs",
        "",
        "| scenario | service req/s | floor req/s | ratio | p50 ms service / floor "
        "| p99 ms service / floor | p99 ratio | errors service / floor | CPU ms/request service / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = ["", "| scenario | target | measured | result |", "|---|---|---|---|"]
    if "1" in sc:
        for workers, r in sc["1"]["configs"].items():
            lines.append(_row(f"1 GET /users/me, {workers} worker(s), c64", r))
            stretch = " (stretch 0.6x met)" if r["rps_ratio"] >= 0.6 else ""
            targets.append(
                f"| 1 /users/me, {workers} worker(s) | >= 0.5x floor req/s, p99 <= 4x floor, 0 errors "
                f"| {r['rps_ratio']:.2f}x{stretch}, p99 {r['p99_ratio']:.2f}x, "
                f"{r['service']['errors']} errors{_restarts(r['worker_restarts']['service'])} "
                f"| {_verdict(r['passed'])} |"
            )
    if "2" in sc:
        r = sc["2"]
        live = r["live_during_storm"]
        lines.append(_row("2 POST /auth/login, c16 (rate by Little's law)", r, 2))
        lines.append(
            "| 2 GET /health/live during the storm, c4 "
            f"| {_f(live['service']['rps'])} | {_f(live['floor']['rps'])} | - "
            f"| {_f(live['service']['p50_ms'], 2)} / {_f(live['floor']['p50_ms'], 2)} "
            f"| {_f(live['service']['p99_ms'], 2)} / {_f(live['floor']['p99_ms'], 2)} | - "
            f"| {live['service']['errors']} / {live['floor']['errors']} | - |"
        )
        targets.append(
            f"| 2 login storm | >= 0.9 x {m['cores']} cores / {r['bcrypt']['verify_s']:.3f} s per verify "
            f"= {r['target_logins_per_s']:.2f}/s; /health/live p99 < 50 ms; RSS per worker < 150 MB "
            f"during it; 0 errors | {r['service']['rps']:.2f}/s; p99 {live['service']['p99_ms']:.1f} ms; "
            f"peak RSS {_rss(r.get('peak_rss_mb', {}).get('service', {}))}; "
            f"{r['service']['errors']} errors | {_verdict(r['passed'])} |"
        )
    if "3" in sc:
        r = sc["3"]
        names = {"first_page": "first page", "deep_page": f"page {r['deep_page_number']:,}"}
        names["email_prefix"] = f"email={r['email_prefix']}"
        for case, res in r["cases"].items():
            lines.append(_row(f"3 GET /users?limit=100 {names[case]} ({r['users']:,} users), c1", res))
        used = r["email_index_used"]
        index = "yes" if used["first"] and used["warm"] else "custom plan only" if used["first"] else "NO"
        targets.append(
            "| 3 admin listing | deep page and email prefix p50 <= 2x first page p50; prefix served by "
            f"uq_users_email | deep {r['deep_over_first_p50']:.2f}x, "
            f"prefix {r['prefix_over_first_p50']:.2f}x; index: {index} | {_verdict(r['passed'])} |"
        )
    if "4" in sc:
        r = sc["4"]
        lines.append(_row("4 POST /auth/register, c16 (rate by Little's law)", r, 2))
        targets.append(
            f"| 4 registration | >= 0.9 x {m['cores']} cores / {r['bcrypt']['hash_s']:.3f} s per hash "
            f"= {r['target_per_s']:.2f}/s; 0 errors | {r['service']['rps']:.2f}/s; "
            f"{r['service']['errors']} errors | {_verdict(r['passed'])} |"
        )
    if "5" in sc:
        r = sc["5"]
        targets.append(
            f"| 5 cold start | serve -> /health/ready < 2 s ({r['workers']} workers); migrate empty db < 2 s "
            f"| {r['serve_to_ready_s']['median']:.2f} s; {r['migrate_empty_s']['median']:.2f} s"
            f"{_restarts(r['worker_restarts'])} "
            f"| {_verdict(r['passed'])} |"
        )
    if "6" in sc:
        r = sc["6"]
        rss = "; ".join(
            f"{w} worker(s): service {_rss(x['service'])}, floor {_rss(x['floor'])}"
            for w, x in r["rss_mb"].items()
        )
        targets.append(
            f"| 6 memory after 1 | RSS per worker < 120 MB | max {r['max_worker_mb']:.1f} MiB ({rss}) "
            f"| {_verdict(r['passed'])} |"
        )
    return "\n".join([*lines, *targets, ""])


def _interference(sc: dict[str, Any]) -> str:
    found: list[tuple[str, float]] = []
    for number, r in sc.items():
        parts = [r, *r.get("configs", {}).values(), *r.get("cases", {}).values()]
        found += [(number, p["other_processes_cpu"]["share"]) for p in parts if "other_processes_cpu" in p]
    if not found:
        return "(not measured)"
    worst = max(share for _, share in found)
    each = ", ".join(
        f"{n}: {max(s for m, s in found if m == n):.0%}" for n in dict.fromkeys(n for n, _ in found)
    )
    flag = " (**figures disturbed**)" if worst > 0.1 else ""
    return f"at most {worst:.0%}{flag} (by scenario {each})"


def _restarts(count: int) -> str:
    return f" ({count} worker(s) killed by uvicorn's health check and restarted)" if count else ""


def _rss(rss: dict[str, float]) -> str:
    workers = [f"{v:.0f}" for k, v in rss.items() if k.startswith("worker")]
    extra = [f"supervisor {v:.0f}" for k, v in rss.items() if k.startswith("supervisor")]
    return " + ".join(workers) + (f" ({extra[0]})" if extra else "") + " MiB"
