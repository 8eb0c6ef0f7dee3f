"""Markdown tables from benchmark results, for people to read first.

A benchmark may hand over its own tables (`result["tables"] = [{"title", "columns", "rows"}]`); those
are rendered as given. Everything else is rendered generically: every latency summary found in the
result (a dict with p50/p99 keys) becomes a row of one table, and the remaining scalar facts a
key/value table. Long sample arrays are never printed, only counted.
"""

from __future__ import annotations

import math

#: Columns of a latency-summary row, in order (only those present in some row are shown).
STAT_COLUMNS = ("count", "p50", "p90", "p99", "max", "mean", "min", "unit")

#: Top-level keys never shown in the key/value table (big, internal, or shown elsewhere: the suite
#: describes the machine once at the top of the report).
HIDDEN_KEYS = ("tables", "traceback", "not_measured", "targets", "plots", "machine")


def fmt(value) -> str:
    """Numbers with 3-4 significant digits, None as an em dash, bools as yes/no."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        a = abs(value)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        if a >= 0.001:
            return f"{value:.4f}".rstrip("0")
        return f"{value:.2e}"
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: list[str], rows: list[list]) -> str:
    if not rows:
        return "_(no rows)_\n"
    head = "| " + " | ".join(fmt(c) for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join([head, sep, *body]) + "\n"


def is_stat(d) -> bool:
    return isinstance(d, dict) and ("p50" in d or "p99" in d) and not any(isinstance(v, dict) for v in d.values())


def _is_number_list(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, (int, float)) or x is None for x in v)


def flatten(result: dict, prefix: str = "") -> tuple[list[tuple[str, dict]], list[tuple[str, object]]]:
    """Split a nested result into (latency-summary rows, scalar facts), each keyed by dotted path."""
    stats: list[tuple[str, dict]] = []
    facts: list[tuple[str, object]] = []
    for key, value in result.items():
        if not prefix and key in HIDDEN_KEYS:
            continue
        path = f"{prefix}{key}"
        if is_stat(value):
            stats.append((path, value))
        elif isinstance(value, dict):
            s, f = flatten(value, path + ".")
            stats += s
            facts += f
        elif _is_number_list(value):
            if len(value) <= 8:
                facts.append((path, ", ".join(fmt(x) for x in value)))
            else:
                facts.append((path, f"[{len(value)} samples]"))
        elif isinstance(value, list):
            if value and all(isinstance(x, dict) for x in value):
                for i, item in enumerate(value):
                    s, f = flatten(item, f"{path}[{i}].")
                    stats += s
                    facts += f
            else:
                facts.append((path, ", ".join(fmt(x) for x in value) if value else "[]"))
        else:
            facts.append((path, value))
    return stats, facts


def stat_table(stats: list[tuple[str, dict]]) -> str:
    cols = [c for c in STAT_COLUMNS if any(c in s for _, s in stats)]
    rows = [[path, *[s.get(c) for c in cols]] for path, s in stats]
    return markdown_table(["measurement", *cols], rows)


def render_result(result: dict, max_facts: int = 60) -> str:
    """Markdown for one benchmark's result dict: its own tables, then summaries, then facts."""
    parts: list[str] = []
    for table in result.get("tables") or []:
        if not isinstance(table, dict):
            continue
        if table.get("title"):
            parts.append(f"**{fmt(table['title'])}**\n")
        parts.append(markdown_table(list(table.get("columns", [])), [list(r) for r in table.get("rows", [])]))
        if table.get("note"):
            parts.append(f"_{fmt(table['note'])}_\n")
    stats, facts = flatten(result)
    own_tables = bool(result.get("tables"))
    if stats and not own_tables:
        parts.append(stat_table(stats))
    if facts or (stats and own_tables):
        shown = facts[:max_facts]
        parts.append("<details><summary>All reported values</summary>\n\n"
                     + (stat_table(stats) + "\n" if stats and own_tables else "")
                     + markdown_table(["key", "value"], [[k, v] for k, v in shown])
                     + (f"\n_{len(facts) - max_facts} more in results.json_\n" if len(facts) > max_facts else "")
                     + "\n</details>\n")
    return "\n".join(parts)
