"""Text the commands print: the table of SE sites and the one-line SE summary."""

from __future__ import annotations


def site_table(sites, max_rows: int | None = None) -> str:
    """A text table of `Site`s: number, anchor, SE layer, channels, spatial size, params."""
    shown = sites if max_rows is None else sites[:max_rows]
    rows = [
        (
            str(i),
            "/".join(s.path + (s.anchor,)),
            s.se_name,
            str(s.channels),
            "x".join("?" if d is None else str(d) for d in s.spatial_shape),
            f"{s.params:,}",
        )
        for i, s in enumerate(shown, 1)
    ]
    header = ("#", "site (anchor layer)", "SE layer", "channels", "spatial", "params")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    right = {0, 3, 5}

    def fmt(row):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()

    lines = [fmt(header), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows]
    if len(sites) > len(shown):
        lines.append(f"... {len(sites) - len(shown)} more")
    return "\n".join(lines)


def se_summary(report: dict) -> str:
    """One line about an `SEReport.to_dict()`: sites, parameters, skipped candidates."""
    reasons: dict[str, int] = {}
    for k in report.get("skipped", []):
        reason = k["reason"] if len(k["reason"]) <= 40 else k["reason"][:37] + "..."
        reasons[reason] = reasons.get(reason, 0) + 1
    skipped = "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
    return (
        f"SE blocks: {report.get('num_sites', 0)} sites (placement {report.get('placement')!r}), "
        f"+{report.get('params_added', 0):,} parameters ({report.get('params_before', 0):,} -> "
        f"{report.get('params_after', 0):,}, +{report.get('percent_added', 0):.2f}%)"
        + (f"; skipped: {skipped}" if skipped else "")
    )
