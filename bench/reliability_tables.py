#!/usr/bin/env python3
"""Markdown tables for RELIABILITY.md from the raw logs of bench/abuse.sh and bench/faults.sh.

    bench/reliability_tables.py bench/results/2026-12-02-abuse-*.log bench/results/2026-12-02-faults-*.log
"""
import json
import re
import sys
from collections import defaultdict


def runs(path):
    """(case header, JSON report) pairs of one log."""
    case, broken = None, None
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("## abuse ") or line.startswith("## fault "):
            case, broken = line[3:].strip(), None
        elif line.startswith("{") or broken is not None:
            # A JSON line the table (stderr) cut in two: its rest is a later line.
            if broken is not None and (line.startswith("  ") or line.startswith("scenario ")):
                continue
            text = (broken or "") + re.sub(r"scenario \S+ +(OK|FAILED)$", "", line.strip())
            try:
                yield case, json.loads(text)
                broken = None
            except json.JSONDecodeError:
                broken = text if broken is None else None


def backend(path):
    m = re.search(r"-(abuse|faults)-(\w+)\.log$", path)
    return m.group(2) if m else path


def attacker(r):
    f, s = r["figures"], r["scenario"]
    if s == "abuse_partial_frames":
        return (f"{f['attacker_closed_by_server']}/{r['params']['connections']} closed by the server, "
                f"p50 {f['attacker_closed_after_ms_p50']} ms, max {f['attacker_closed_after_ms_max']} ms; "
                f"{f['attacker_still_open_at_end']} open at the end")
    if s == "abuse_flood":
        cut = f.get("attacker_disconnected_after_ms")
        out = (f"{f['attacker_events_written']} of {r['params']['events']} events written, "
               f"{'cut off after %s ms' % cut if cut is not None else 'never disconnected'}, "
               f"{f['attacker_refusals_received']} refusals received; "
               f"server CPU {f.get('server_cpu_seconds_after_sender_stopped')} s in the {f['after_secs']} s after")
        if "polling_posts" in f:
            out += "; polling POSTs: " + ", ".join(f"{k} x{v}" for k, v in f["polling_posts"].items())
        return out
    if s == "abuse_slow_admin":
        if f.get("slow_admin_disconnected_by_server"):
            return (f"slow admin disconnected after {f['slow_admin_disconnected_after_ms']} ms of load "
                    f"({r['params']['rate']} msg/s); the other admin: {r['lost']} lost of {r['expected']}")
        return f"slow admin NOT disconnected; the other admin: {r['lost']} lost of {r['expected']}"
    if s == "abuse_slowloris":
        fresh = f.get("fresh_clients", [])
        ok_other = sum(1 for c in fresh if c["other_address"]["ok"])
        ok_same = sum(1 for c in fresh if c["attacker_address"]["ok"])
        return (f"{f['attacker_connected']} connected ({f['attacker_connect_failed']} failed), "
                f"{f['attacker_closed_by_server']} closed by the server "
                f"(p50 {f['attacker_closed_after_ms_p50']} ms, max {f['attacker_closed_after_ms_max']} ms), "
                f"{f['attacker_open_at_end']} still open after {r['params']['seconds']} s; fresh clients chatting: "
                f"{ok_other}/{len(fresh)} from another address, {ok_same}/{len(fresh)} from the attacker's")
    if s == "abuse_amplification":
        cut = f.get("attacker_disconnected_after_ms")
        return (f"{f['attacker_bytes_sent']:,} bytes sent, {f['server_bytes_sent_back']:,} sent back "
                f"(x{f['amplification_ratio']}); log grew {f.get('server_log_grew_bytes', '?'):,} bytes; "
                f"{'cut off after %s ms' % cut if cut is not None else 'not disconnected'}")
    return ""


def abuse_table(paths):
    print("| backend | attack | what happened to the attacker | server RSS before / peak / after (MB) | server CPU s | innocent p50 / p99 / max (ms) | innocent lost / sent |")
    print("|---|---|---|---|---|---|---|")
    for p in paths:
        for case, r in runs(p):
            f = r["figures"]
            lat = f.get("innocent_latency", {})
            print(f"| {backend(p)} | `{case.removeprefix('abuse ')}` | {attacker(r)} | "
                  f"{f.get('server_rss_before_mb')} / {f.get('server_rss_peak_mb')} / {f.get('server_rss_after_mb')} | "
                  f"{f.get('server_cpu_seconds')} | {lat.get('p50_ms')} / {lat.get('p99_ms')} / {lat.get('max_ms')} | "
                  f"{f.get('innocent_lost')} / {f.get('innocent_sent')} |")


def faults_table(paths):
    print("| backend | case | runs | sent | acked but missing | refused but stored | stored twice | out of order | time | what clients were told |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        by = defaultdict(list)
        for _, r in runs(p):
            by[r["scenario"]].append(r)
        for scenario, rs in by.items():
            tallies = [r["figures"].get("at_restart") or r["figures"].get("stored_vs_answers") or {} for r in rs]
            tot = lambda k: sum(t.get(k, 0) for t in tallies)
            dup_after = sum((r["figures"].get("after_resend") or {}).get("stored_duplicates", 0) for r in rs)
            told = defaultdict(int)
            for t in tallies:
                for e in t.get("refusals", []):
                    told[e["error"][:110]] += e["count"]
            f0 = [r["figures"] for r in rs]
            if scenario == "fault_kill9":
                vals = [f.get("restart_to_first_ack_ms") for f in f0 if f.get("restart_to_first_ack_ms") is not None]
                time = f"restart to first ack {min(vals)}-{max(vals)} ms" if vals else "never ready"
                told_s = f"in flight at the kill: {tot('unanswered')} unanswered ({tot('unanswered_stored')} of them stored)"
            elif scenario == "fault_sigterm":
                vals = [f.get("sigterm_to_exit_ms") for f in f0]
                inflight = [f.get("in_flight_at_sigterm", {}) for f in f0]
                after = [f.get("sent_after_sigterm", {}) for f in f0]
                s = lambda l, k: sum(x.get(k, 0) for x in l)
                time = f"SIGTERM to exit {min(v for v in vals if v is not None)}-{max(v for v in vals if v is not None)} ms" if any(v is not None for v in vals) else "did not exit"
                told_s = (f"in flight at SIGTERM: {s(inflight,'total')}: {s(inflight,'answered_ok')} OK, "
                          f"{s(inflight,'refused')} refused, {s(inflight,'unanswered')} unanswered; "
                          f"sent after: {s(after,'total')}: {s(after,'answered_ok')} OK, {s(after,'refused')} refused, "
                          f"{s(after,'unanswered')} unanswered")
            else:
                vals = [f.get("recovery_ms") for f in f0 if f.get("recovery_ms") is not None]
                time = f"recovery {min(vals)}-{max(vals)} ms" if vals else "no recovery seen"
                told_s = ""
            if told:
                told_s += ("; " if told_s else "") + "; ".join(f"\"{k}\" x{v}" for k, v in told.items())
            if scenario != "fault_sigterm" and not told_s:
                told_s = "no errors"
            if scenario != "fault_sigterm":
                told_s += f"; after resending the unacknowledged with their client_msg_id: {dup_after} stored twice"
            print(f"| {backend(p)} | {scenario.removeprefix('fault_')} | {len(rs)} | {tot('sent'):,} | {tot('acked_missing')} | "
                  f"{tot('refused_but_stored')} | {tot('stored_duplicates')} | {tot('out_of_order')} | {time} | {told_s} |")


if __name__ == "__main__":
    args = sys.argv[1:]
    abuse = [a for a in args if "-abuse-" in a]
    faults = [a for a in args if "-faults-" in a]
    if abuse:
        abuse_table(abuse)
        print()
    if faults:
        faults_table(faults)
