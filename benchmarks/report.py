"""Ratios, goals and the markdown table, from one run's results (benchmarks/run.py)."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.consumer import FRAME_INTERVAL_S, SLOW_WORK_S
from benchmarks.systems import LABELS

PEERS = ("imagezmq", "netgear", "stack")
FRESHER_GOAL = 50.0
FLOOR_GOAL = 1.15
FANOUT_GOAL = 1.2
POOL_GOAL = 2.7  # 3 members: processed fps ≈ 10 / 20 / 29 (issue 14), so ≥ 2.7× one member's
RELAY_UPLINK_GOAL = 0.2  # edge bytes with 16 workers through the relay within ±20 % of with 1
RELAY_HOP_GOAL_MS = 3.0
RELAY_CPU_GOAL = 1.2


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _last_trend(slow: dict[str, Any] | None) -> float | None:
    trend = _get(slow, "age_trend_ms")
    return list(trend.values())[-1] if trend else None


def _consumer_total(fast: dict[str, Any] | None) -> float | None:
    """Consumer CPU per frame, plus the Manager's server process for the stack."""
    c = _get(fast, "consumer_ms_per_frame")
    b = _get(fast, "broker_ms_per_frame")
    return None if c is None else round(c + (b or 0.0), 3)


def node_ms_per_frame(results: dict[str, Any]) -> float | None:
    """framebus capture node CPU per published frame with one subscriber (fast + fan-out 1)."""
    values = [
        _get(results, "fast", "framebus", "sender_ms_per_frame"),
        _get(results, "fanout", "framebus", "1", "sender_ms_per_frame"),
    ]
    values = [v for v in values if v is not None]
    return round(statistics.mean(values), 3) if values else None


def floor_ms_per_frame(results: dict[str, Any]) -> float | None:
    floors = _get(results, "floor", "paced") or []
    values: list[float] = [f["ms_per_frame"] for f in floors if isinstance(f, dict) and "ms_per_frame" in f]
    return round(statistics.mean(values), 3) if values else None


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Peer / framebus for each figure: above 1, framebus is fresher or cheaper."""
    fb_slow, fb_fast = _get(results, "slow", "framebus"), _get(results, "fast", "framebus")
    fb_fan16 = _get(results, "fanout", "framebus", "16")
    out = {}
    for peer in PEERS:
        slow, fast = _get(results, "slow", peer), _get(results, "fast", peer)
        if slow is None and fast is None:
            continue
        out[peer] = {
            "slow_age_at_end": _ratio(_last_trend(slow), _last_trend(fb_slow)),
            "slow_age_p99": _ratio(_get(slow, "slow_age_ms", "p99"), _get(fb_slow, "slow_age_ms", "p99")),
            "fast_latency_p50": _ratio(_get(fast, "age_ms", "p50"), _get(fb_fast, "age_ms", "p50")),
            "fast_sender_cpu_per_frame": _ratio(
                _get(fast, "sender_ms_per_frame"), _get(fb_fast, "sender_ms_per_frame")
            ),
            "fast_consumer_cpu_per_frame": _ratio(_consumer_total(fast), _consumer_total(fb_fast)),
            "fanout16_sender_cpu_per_frame": _ratio(
                _get(results, "fanout", peer, "16", "sender_ms_per_frame"), _get(fb_fan16, "sender_ms_per_frame")
            ),
        }
    return out


def scale_out_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """A pool against one worker, the relay against direct fan-out (benchmarks/scenarios.py)."""
    phases = {p["members"]: p for p in _get(results, "scale_out", "pool", "phases") or []}
    rows = _get(results, "scale_out", "relay", "uplink") or []
    sent = {(r["mode"], r["workers"]): r["edge_bytes_per_s"] for r in rows}
    hop = _get(results, "scale_out", "relay", "hop") or {}
    relay_p50, direct_p50 = _get(hop, "relay", "p50_ms"), _get(hop, "direct", "p50_ms")
    one = _get(phases, 1, "processed_fps") if 1 in phases else None
    return {
        "pool2_vs_one_processed_fps": _ratio(_get(phases.get(2), "processed_fps"), one),
        "pool3_vs_one_processed_fps": _ratio(_get(phases.get(3), "processed_fps"), one),
        "pool_duplicates": sum(p["duplicates"] for p in phases.values()) if phases else None,
        "edge_bytes_relay16_vs_relay1": _ratio(sent.get(("relay", 16)), sent.get(("relay", 1))),
        "edge_bytes_direct16_vs_relay16": _ratio(sent.get(("direct", 16)), sent.get(("relay", 16))),
        "relay_hop_p50_ms": round(relay_p50 - direct_p50, 2)
        if relay_p50 is not None and direct_p50 is not None
        else None,
        "relay_cpu_vs_subscriber": _get(results, "scale_out", "relay", "cpu", "ratio"),
    }


def _scale_out_goals(r: dict[str, float | None]) -> list[dict[str, Any]]:
    def goal(text: str, target: str, value: float | None, shown: str, met: bool | None) -> dict[str, Any]:
        return {"goal": text, "target": target, "measured": "n/a" if value is None else shown, "met": met}

    pool3, dupes = r["pool3_vs_one_processed_fps"], r["pool_duplicates"]
    even, hop, cpu = r["edge_bytes_relay16_vs_relay1"], r["relay_hop_p50_ms"], r["relay_cpu_vs_subscriber"]
    return [
        goal(
            "a pool of 3 processes >= 2.7x the frames of one worker, none twice",
            f">= {POOL_GOAL}x, 0 duplicates",
            pool3,
            f"{pool3}x, {dupes} duplicates",
            None if pool3 is None else pool3 >= POOL_GOAL and dupes == 0,
        ),
        goal(
            "edge uplink through the relay: 16 workers cost what 1 does",
            f"within ±{RELAY_UPLINK_GOAL:.0%}",
            even,
            f"{even}x",
            None if even is None else abs(even - 1) <= RELAY_UPLINK_GOAL,
        ),
        goal(
            "the relay hop adds <= 3 ms to frame age p50 (loopback)",
            f"<= {RELAY_HOP_GOAL_MS:g} ms",
            hop,
            f"{hop} ms",
            None if hop is None else hop <= RELAY_HOP_GOAL_MS,
        ),
        goal(
            "relay CPU per camera <= 1.2x one subscriber's",
            f"<= {RELAY_CPU_GOAL}x",
            cpu,
            f"{cpu:.2f}x" if cpu is not None else "",
            None if cpu is None else cpu <= RELAY_CPU_GOAL,
        ),
    ]


def goals(results: dict[str, Any], soak: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    limit = 1000 * (SLOW_WORK_S + FRAME_INTERVAL_S)
    p99 = _get(results, "slow", "framebus", "slow_age_ms", "p99")
    out.append(
        {
            "goal": "slow consumer frame age p99 <= processing time + one frame interval",
            "target": f"<= {limit:.0f} ms",
            "measured": f"{p99} ms" if p99 is not None else "n/a",
            "met": None if p99 is None else p99 <= limit,
        }
    )
    span = _get(results, "slow", "framebus", "slow_span_s")
    for peer, r in results.get("ratios", {}).items():
        value = r.get("slow_age_at_end")
        out.append(
            {
                "goal": f"slow consumer >= {FRESHER_GOAL:g}x fresher than {LABELS[peer]} after {span:g} s",
                "target": f">= {FRESHER_GOAL:g}x",
                "measured": f"{value}x" if value is not None else "n/a",
                "met": None if value is None else value >= FRESHER_GOAL,
            }
        )
    node, floor = node_ms_per_frame(results), floor_ms_per_frame(results)
    ratio = _ratio(node, floor)
    out.append(
        {
            "goal": "capture node CPU per frame <= 1.15x the decode + encode floor",
            "target": f"<= {FLOOR_GOAL}x",
            "measured": f"{ratio}x ({node} vs {floor} ms)" if ratio is not None else "n/a",
            "met": None if ratio is None else ratio <= FLOOR_GOAL,
        }
    )
    one = _get(results, "fanout", "framebus", "1", "sender_ms_per_frame")
    sixteen = _get(results, "fanout", "framebus", "16", "sender_ms_per_frame")
    fan = _ratio(sixteen, one)
    out.append(
        {
            "goal": "capture node CPU with 16 subscribers <= 1.2x with one",
            "target": f"<= {FANOUT_GOAL}x",
            "measured": f"{fan}x ({sixteen} vs {one} ms per frame)" if fan is not None else "n/a",
            "met": None if fan is None else fan <= FANOUT_GOAL,
        }
    )
    if "scale_out" in results:
        out += _scale_out_goals(scale_out_ratios(results))
    if soak is not None:
        flat = [p for p in soak.get("processes", []) if p.get("system") == "framebus"]
        growth = ", ".join(
            f"{p['name'].removeprefix('framebus ')} {p['slope_mb_per_hour']:+.1f} MB/h"
            if "slope_mb_per_hour" in p
            else f"{p['name'].removeprefix('framebus ')} {p['rss_end_mb'] - p['rss_start_mb']:+.1f} MB"
            for p in flat
        )
        bound = flat[0].get("bound_mb_per_hour") if flat else None
        out.append(
            {
                "goal": f"memory flat over the soak ({soak.get('minutes')} min, {soak.get('date')})",
                "target": f"each framebus process's RSS slope <= {bound:g} MB/h" if bound else "make soak",
                "measured": growth or "n/a",
                "met": bool(flat) and all(p.get("flat") for p in flat),
            }
        )
    else:
        out.append({"goal": "memory flat over the soak", "target": "make soak", "measured": "not run", "met": None})
    return out


# ----------------------------------------------------------------------------- markdown


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def _age(v: float | None) -> str:
    """An age with its unit: ms below a second, s above."""
    if v is None:
        return "—"
    return f"{v / 1000:.1f} s" if v >= 1000 else f"{_ms(v)} ms"


def _num(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _x(v: float | None) -> str:
    return "—" if v is None else (f"{v:.0f}×" if v >= 10 else f"{v:.2f}×")


def markdown(results: dict[str, Any]) -> str:
    systems = [s for s in ("framebus", *PEERS) if s in results.get("fast", {}) or s in results.get("slow", {})]
    m, v = results["machine"], results["versions"]
    span = _get(results, "slow", "framebus", "slow_span_s") or 60
    trend_keys = list((_get(results, "slow", "framebus", "age_trend_ms") or {"10": 0, "30": 0, "60": 0}).keys())
    lines = [
        f"`{results['command']}`, {results['date']}, {m['cores']} cores ({m['cpu']}), load average "
        f"{m['load_average_at_start'][0]} at start, {m.get('load_average_at_end', ['?'])[0]} at end; run took "
        f"{results.get('run_seconds', '?')} s. Source: the same 1280×720 30 fps {results['clip']['codec'].upper()} "
        "clip for every sender, JPEG quality 80. Python "
        f"{v['python']}, pyzmq {v['pyzmq']} (libzmq {v['libzmq']}), OpenCV {v['opencv']}, simplejpeg {v['simplejpeg']}, "
        f"imagezmq {v['imagezmq']}, vidgear {v['vidgear']}.",
        "",
        "| | " + " | ".join(LABELS[s] for s in systems) + " |",
        "|---|" + "---|" * len(systems),
    ]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in systems) + " |")

    def slow(s: str, *path: str) -> Any:
        return _get(results, "slow", s, *path)

    def fast(s: str, *path: str) -> Any:
        return _get(results, "fast", s, *path)

    def fan(s: str, n: str) -> str:
        return _ms(_get(results, "fanout", s, n, "sender_ms_per_frame"))

    row(
        f"slow consumer (100 ms/frame, {span:g} s): frame age p50 / p99 / max",
        lambda s: (
            " / ".join(_age(slow(s, "slow_age_ms", k)) for k in ("p50", "p99", "max"))
            if slow(s, "slow_age_ms")
            else "error"
        ),
    )
    row(
        "… age at " + " / ".join(f"{k} s" for k in trend_keys),
        lambda s: " / ".join(_age((slow(s, "age_trend_ms") or {}).get(k)) for k in trend_keys),
    )
    row("… delivered frames/s", lambda s: _num(slow(s, "slow_delivered_fps"), 1))
    row("fast consumer: delivered frames/s", lambda s: _num(fast(s, "delivered_fps_per_consumer"), 1))
    row(
        "… latency p50 / p99, ms",
        lambda s: f"{_ms(fast(s, 'age_ms', 'p50'))} / {_ms(fast(s, 'age_ms', 'p99'))}" if fast(s, "age_ms") else "—",
    )
    row("… sender CPU ms per frame", lambda s: _ms(fast(s, "sender_ms_per_frame")))
    row(
        "… consumer CPU ms per frame",
        lambda s: (
            _ms(fast(s, "consumer_ms_per_frame"))
            + (
                f" + {_ms(fast(s, 'broker_ms_per_frame'))} Manager"
                if fast(s, "broker_ms_per_frame") is not None
                else ""
            )
        ),
    )
    row(
        "sender CPU ms per frame, 1 / 4 / 16 subscribers",
        lambda s: (
            " / ".join(fan(s, n) for n in ("1", "4", "16")) if s in results.get("fanout", {}) else "n/a (one reader)"
        ),
    )
    lines.append("")
    lines.append(
        f"Decode + encode floor of the same frames (cv2.VideoCapture.read + simplejpeg q80, one thread, paced): "
        f"{_ms(floor_ms_per_frame(results))} ms per frame; capture node: {_ms(node_ms_per_frame(results))} ms per frame."
    )
    lines += ["", "Ratios within the run, peer ÷ framebus (above 1: framebus fresher or cheaper):", ""]
    peers = [p for p in PEERS if p in results.get("ratios", {})]
    lines.append("| | " + " | ".join(LABELS[p] for p in peers) + " |")
    lines.append("|---|" + "---|" * len(peers))
    labels = {
        "slow_age_at_end": f"slow consumer: frame age at {span:g} s",
        "slow_age_p99": "slow consumer: frame age p99",
        "fast_latency_p50": "fast consumer: latency p50",
        "fast_sender_cpu_per_frame": "sender CPU per frame",
        "fast_consumer_cpu_per_frame": "consumer CPU per frame (+ Manager)",
        "fanout16_sender_cpu_per_frame": "sender CPU per frame, 16 subscribers",
    }
    for key, label in labels.items():
        lines.append(f"| {label} | " + " | ".join(_x(results["ratios"][p].get(key)) for p in peers) + " |")
    if "scale_out" in results:
        lines += ["", *_scale_out_table(results)]
    lines += ["", "| goal | target | measured | |", "|---|---|---|---|"]
    for g in results.get("goals", []):
        mark = "met" if g["met"] else ("—" if g["met"] is None else "**missed**")
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {mark} |")
    return "\n".join(lines) + "\n"


def _scale_out_table(results: dict[str, Any]) -> list[str]:
    """Scale-out, within the run: a pool against one worker, the relay against direct fan-out."""
    r = scale_out_ratios(results)
    pool = _get(results, "scale_out", "pool") or {}
    relay = _get(results, "scale_out", "relay") or {}
    lines = ["Scale-out (hosts are network namespaces):", "", "| | measured | ratio |", "|---|---|---|"]
    if "error" in pool or "error" in relay:
        lines += [
            f"| {name} | error: {d['error']} | |" for name, d in (("pool", pool), ("relay", relay)) if "error" in d
        ]
    fps = " / ".join(_num(p["processed_fps"], 1) for p in pool.get("phases", []))
    dupes = r["pool_duplicates"]
    lines.append(
        f"| pool, 1 / 2 / 3 members ({_num(pool.get('handler_ms'), 0)} ms handler, a {pool.get('camera_fps', '?')} fps camera): "
        f"processed fps | {fps or '—'} ({dupes if dupes is not None else '—'} duplicates) | "
        f"{_x(r['pool2_vs_one_processed_fps'])} / {_x(r['pool3_vs_one_processed_fps'])} one worker |"
    )
    sent = {(row["mode"], row["workers"]): row["edge_bytes_per_s"] for row in relay.get("uplink", [])}
    for mode in ("direct", "relay"):
        figures = " / ".join(f"{sent[(mode, n)] / 1e3:,.0f}" for n in (1, 4, 16) if (mode, n) in sent)
        ratio = (
            f"{_x(r['edge_bytes_direct16_vs_relay16'])} the relay's at 16"
            if mode == "direct"
            else f"{_x(r['edge_bytes_relay16_vs_relay1'])} of 1 worker at 16"
        )
        lines.append(f"| edge uplink kB/s, 1 / 4 / 16 workers, {mode} | {figures or '—'} | {ratio} |")
    hop = relay.get("hop", {})
    ages = " / ".join(f"{name} {_ms(_get(hop, name, 'p50_ms'))}" for name in ("direct", "relay") if name in hop)
    lines.append(f"| frame age p50 on loopback, ms | {ages or '—'} | relay +{_num(r['relay_hop_p50_ms'], 1)} ms |")
    cpu = relay.get("cpu", {})
    lines.append(
        "| CPU per camera, % of a core: relay / one subscriber | "
        f"{_num(100 * cpu['relay_cpu_per_camera'] if cpu else None)} / {_num(100 * cpu['subscriber_cpu_per_camera'] if cpu else None)} | "
        f"{_x(r['relay_cpu_vs_subscriber'])} |"
    )
    return lines
