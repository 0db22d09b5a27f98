"""``report.html`` for ``imat report``: plotly charts and a sortable per-label slice table in one file.

The page opens offline: plotly.js is inlined once (most of the page's size; measured: docs/benchmarks.md,
"Report page size"), and the table sorts with a few lines of inline JavaScript. Charts give values on
hover and have axes; per-label bars are drawn one figure per task, tall enough for a task's labels (the
competition's largest task has 105). With spans, a "Spans" section: a table of the spans read
(``cli/span_stats.py`` gathers it) and each span's label distribution.
"""

import html
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from cli import span_stats
from cli.label_stats import LabelStats
from imat_common.features import LabelMap

_ROW_PX = 22  # height per label in the bar charts: three bars and a readable tick label
_COLORS = {"precision": "#4c72b0", "recall": "#dd8452", "F1": "#55a868"}
# (header, LabelRow field, kind): the slice table's columns; "n" columns hold numbers.
TABLE_COLUMNS = (
    ("id", "label_id", "n"),
    ("label", "name", "s"),
    ("task", "task", "s"),
    ("images", "support", "n"),
    ("micro-F1 on them", "slice_f1", "n"),
    ("recall on them", "slice_recall", "n"),
    ("precision", "precision", "n"),
    ("recall", "recall", "n"),
    ("F1", "f1", "n"),
    ("AUC", "auc", "n"),
)

# Click a header: sort by it (again: reverse). Empty values ("-") stay last either way.
_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0], up = th.dataset.dir !== 'asc';
    th.closest('tr').querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = up ? 'asc' : 'desc';
    var key = function (tr) { return tr.cells[col].dataset.v; };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === '' || y === '') { return (x === '') - (y === ''); }
      var c = th.dataset.kind === 'n' ? Number(x) - Number(y) : x.localeCompare(y);
      return up ? c : -c;
    });
    rows.forEach(function (tr) { body.appendChild(tr); });
  });
});
"""
_STYLE = """
body { font-family: sans-serif; margin: 1em 2em; }
table.sortable { border-collapse: collapse; font-size: 13px; }
table.sortable th { cursor: pointer; background: #eee; position: sticky; top: 0; padding: 3px 8px; }
table.sortable th[data-dir=asc]::after { content: ' \\25B2'; }
table.sortable th[data-dir=desc]::after { content: ' \\25BC'; }
table.sortable td { padding: 2px 8px; border-bottom: 1px solid #ddd; }
table.sortable td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable td.above { color: #c44e52; font-weight: bold; }
"""


def _none(value: float) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _unique_names(label_map: Optional[LabelMap], ids: Sequence[int]) -> Dict[int, str]:
    """Plotly merges equal category names: a name used by two labels gets its id."""
    names = {label.label_id: label.name for label in label_map.labels} if label_map else {}
    taken = [names.get(k, str(k)) for k in ids]
    return {k: name if taken.count(name) == 1 else f"{name} #{k}" for k, name in zip(ids, taken)}


def _figure_html(figure, first: bool) -> str:
    # plotly.js once, inline (no CDN: the file must open offline); later figures reuse it.
    return figure.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False})


def _task_figure(task: str, rows: Sequence, names: Dict[int, str]):
    import plotly.graph_objects as go

    ticks = [f"{names[r.label_id]} (n={r.support})" for r in rows]
    figure = go.Figure()
    for metric, field in (("precision", "precision"), ("recall", "recall"), ("F1", "f1")):
        figure.add_trace(
            go.Bar(
                name=metric,
                orientation="h",
                y=ticks,
                x=[_none(getattr(r, field)) for r in rows],
                marker_color=_COLORS[metric],
                customdata=[[r.auc, r.slice_f1] for r in rows],
                hovertemplate=f"%{{y}}<br>{metric} %{{x:.3f}}<br>AUC %{{customdata[0]:.3f}}"
                "<br>micro-F1 on its images %{customdata[1]:.3f}<extra></extra>",
            )
        )
    figure.update_layout(
        title=f"{task or 'labels'}: each label's precision, recall and F1 at its served threshold",
        title_y=1,
        title_yanchor="top",
        title_pad=dict(t=10),
        barmode="group",
        bargap=0.15,
        height=max(220, 110 + _ROW_PX * len(rows)),
        margin=dict(l=10, r=10, t=80, b=20),
        legend=dict(y=1, yanchor="top"),
    )
    # The axis above and below: a task of 105 labels is taller than a screen.
    figure.add_trace(go.Scatter(x=[None], y=ticks[:1], xaxis="x2", showlegend=False, hoverinfo="skip"))
    figure.update_layout(
        xaxis=dict(range=[0, 1], side="top", ticks="outside"),
        xaxis2=dict(range=[0, 1], side="bottom", overlaying="x", matches="x", ticks="outside"),
    )
    # Top row first; an explicit range, as the axis trace would pad an automatic one.
    figure.update_yaxes(range=[len(rows) - 0.5, -0.5], automargin=True, tickfont=dict(size=11))
    return figure


def _distribution_figure(stats: LabelStats, top: Sequence[int], names: Dict[int, str]):
    import plotly.graph_objects as go

    figure = go.Figure(
        go.Bar(
            orientation="h",
            y=[names[k] for k in top],
            x=[int(stats.counts[k - 1]) for k in top],
            marker_color="#8172b2",
            hovertemplate="%{y}: %{x} examples<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"Label distribution ({stats.examples} examples)",
        height=120 + 16 * len(top),
        margin=dict(l=10, r=10, t=60, b=40),
    )
    figure.update_xaxes(title="examples carrying the label", side="top")
    figure.update_yaxes(autorange="reversed", automargin=True, tickfont=dict(size=11))
    return figure


def _cooccurrence_figure(stats: LabelStats, ids: Sequence[int], names: Dict[int, str]):
    import plotly.graph_objects as go

    index = np.asarray(ids) - 1
    # P(b | a): how often label b comes with label a (a the row).
    conditional = stats.cooccurrence[np.ix_(index, index)] / np.maximum(stats.counts[index], 1)[:, None]
    np.fill_diagonal(conditional, np.nan)  # always 1: it would take the colour scale's top
    labels = [names[k] for k in ids]
    figure = go.Figure(
        go.Heatmap(
            z=np.where(np.isnan(conditional), None, conditional),
            x=labels,
            y=labels,
            colorscale="Blues",
            zmin=0,
            hovertemplate="P(%{x} | %{y}) = %{z:.2f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"Co-occurrence: P(column | row), the {len(ids)} most frequent labels (diagonal left out)",
        height=200 + 18 * len(ids),
        width=300 + 18 * len(ids),
        margin=dict(t=60),
    )
    figure.update_yaxes(autorange="reversed", automargin=True)
    figure.update_xaxes(automargin=True, tickangle=-60)
    return figure


def _span_figure(rows: Sequence[dict], ids: Sequence[int], names: Dict[int, str]):
    """Grouped horizontal bars: per label (most changed first), its share of each span's train images."""
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    drawn = [r for r in rows if r["train_images"]]
    shares = span_stats.shares_by_span(drawn)
    # Older spans lighter, the newest darkest.
    colors = sample_colorscale("Blues", [0.35 + 0.65 * i / max(len(drawn) - 1, 1) for i in range(len(drawn))])
    figure = go.Figure()
    for row, color in zip(drawn, colors):
        span = row["span"]
        figure.add_trace(
            go.Bar(
                name=f"span {span} ({row['train_images']} images)",
                orientation="h",
                y=[names[k] for k in ids],
                x=[shares[span].get(k, 0.0) for k in ids],
                customdata=[row["label_counts"].get(k, 0) for k in ids],
                marker_color=color,
                hovertemplate=f"%{{y}}, span {span}: %{{x:.1%}} of its train images (%{{customdata}})<extra></extra>",
            )
        )
    per_label = min(16 + 6 * len(drawn), 60)
    which = (
        f"the {len(ids)} labels whose share changed most between spans"
        if len(ids) == span_stats.TOP_LABELS
        else f"its {len(ids)} labels, the most changed between spans first"
    )
    figure.update_layout(
        title=f"Label distribution per span: {which}",
        title_y=1,
        title_yanchor="top",
        title_pad=dict(t=10),
        barmode="group",
        bargap=0.2,
        height=190 + per_label * len(ids),
        margin=dict(l=10, r=10, t=110, b=20),
        legend=dict(traceorder="normal"),
    )
    figure.update_xaxes(title="share of the span's train images carrying the label", tickformat=".0%", side="top")
    figure.update_yaxes(autorange="reversed", automargin=True, tickfont=dict(size=11))
    return figure


def _spans_table(rows: Sequence[dict]) -> str:
    """One row per span: images, the train window, each drift distance (above its threshold: red), the gate."""
    features = span_stats.drift_features(rows)
    head = [("span", "n"), ("train images", "n"), ("trained on spans", "s"), ("previous span", "n")]
    head += [(f"drift: {feature}", "n") for feature in features] + [("gate", "s"), ("newest run", "s")]
    cells = []
    for r in rows:
        previous = "" if r["previous_span"] is None else str(r["previous_span"])
        images = "" if r["train_images"] is None else str(r["train_images"])
        window = ",".join(str(s) for s in r["train_spans"])
        row = [
            f'<td class="n" data-v="{r["span"]}">{r["span"]}</td>',
            f'<td class="n" data-v="{images}">{images or "-"}</td>',
            f'<td data-v="{window}">{window}</td>',
            f'<td class="n" data-v="{previous}">{previous or "-"}</td>',
        ]
        for feature in features:
            value = r["drift"].get(feature)
            if value is None:
                row.append('<td class="n" data-v="">-</td>')
                continue
            threshold = r["thresholds"].get(feature)
            above = threshold is not None and value > threshold
            title = f"threshold {threshold:g}" if threshold is not None else "no threshold in the schema"
            mark = "*" if r["drift_source"] == "statistics" else ""
            row.append(
                f'<td class="n{" above" if above else ""}" data-v="{value}" title="{title}">{value:.4f}{mark}</td>'
            )
        gate = html.escape(span_stats.gate_text(r))
        row.append(f'<td data-v="{gate}">{gate}</td>')
        row.append(f'<td data-v="{html.escape(r["run"])}">{html.escape(r["run"])}</td>')
        cells.append("<tr>" + "".join(row) + "</tr>")
    header = "".join(f'<th data-kind="{kind}">{html.escape(name)}</th>' for name, kind in head)
    return f'<table class="sortable" id="spans"><thead><tr>{header}</tr></thead><tbody>{"".join(cells)}</tbody></table>'


def spans_section(rows: Sequence[dict], label_map: Optional[LabelMap], include_plotlyjs: bool) -> str:
    """The "Spans" section: the table of spans and the label distribution per span ("" without spans).

    Args:
      rows: ``span_stats.span_rows``.
      label_map: names, or None (ids are shown).
      include_plotlyjs: whether the chart inlines plotly.js (no figure before it on the page).
    """
    if not rows:
        return ""
    body = [
        "<h2>Spans</h2><p>One row per span the runs read (a span read by several runs: its newest run). "
        "<b>train images</b>: the span's own train folder; <b>trained on spans</b>: the window that run's "
        "train split read; <b>drift</b>: distance of the span's train folder from the previous span's, as the "
        "ValidationGate measured it (labels: L-infinity, the largest change in one label's share of the "
        "label occurrences; image properties: Jensen-Shannon divergence), in red above the schema's "
        "threshold (hover a value for it), * measured again from the run's statistics where the gate "
        "stopped the run; <b>gate</b>: whether the ValidationGate let the run go on to Transform.</p>",
        _spans_table(rows),
    ]
    shares = span_stats.shares_by_span(rows)
    ids = span_stats.most_changed(shares)
    if ids:
        known = {label.label_id for label in label_map.labels} if label_map else set()
        names = _unique_names(label_map, sorted(known | set(ids)))
        body.append(_figure_html(_span_figure(rows, ids, names), first=include_plotlyjs))
    return "".join(body)


def _cell(row, field: str, kind: str) -> str:
    value = getattr(row, field)
    if kind == "s":
        return f'<td data-v="{html.escape(str(value))}">{html.escape(str(value))}</td>'
    if isinstance(value, float) and math.isnan(value):
        return '<td class="n" data-v="">-</td>'
    shown = f"{value:.3f}" if isinstance(value, float) else str(value)
    return f'<td class="n" data-v="{value}">{shown}</td>'


def slice_table(rows: Sequence) -> str:
    """The per-label table: each label's slice (images carrying it) beside its own metrics; sortable."""
    head = "".join(f'<th data-kind="{kind}">{html.escape(header)}</th>' for header, _, kind in TABLE_COLUMNS)
    body = "".join("<tr>" + "".join(_cell(r, field, kind) for _, field, kind in TABLE_COLUMNS) + "</tr>" for r in rows)
    return f'<table class="sortable" id="label-slices"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_html(
    path: str,
    rows: Sequence,
    headline: str,
    stats: Optional[LabelStats],
    label_map: Optional[LabelMap],
    groups: Dict[str, List],
    max_heatmap_labels: int = 40,
    rule_lines: Sequence[str] = (),
    spans: Sequence[dict] = (),
) -> None:
    """Writes the page: rules, per-task bar charts, the slice table, the label distribution, co-occurrence,
    and with spans the "Spans" section.

    Args:
      path: the file to write.
      rows: ``report.LabelRow`` per label, in the table's initial order.
      headline: the gated micro-F1 line.
      stats: label counts of a split, or None.
      label_map: names, or None (ids are shown).
      groups: the rows by task, each in chart order (``report.by_task``).
      max_heatmap_labels: the co-occurrence map shows this many most frequent labels.
      rule_lines: the decision rules' lines, shown as text.
      spans: ``span_stats.span_rows``; none: no "Spans" section.
    """
    all_ids = sorted({r.label_id for r in rows} | set(range(1, len(stats.counts) + 1) if stats else set()))
    names = _unique_names(label_map, all_ids)
    body = [
        f"<h1>imat report</h1><p>{html.escape(headline)}</p>",
        f"<pre>{html.escape(chr(10).join(rule_lines))}</pre>" if rule_lines else "",
    ]
    figures = [_task_figure(task, group, names) for task, group in groups.items()]
    body.append(
        "<h2>Per-label metrics by task</h2><p>Sorted by support n (eval images carrying the label); "
        "hover a bar for its values; an undefined value has no bar.</p>"
    )
    body += [_figure_html(figure, first=i == 0) for i, figure in enumerate(figures)]
    body.append(
        "<h2>Label slices</h2><p><b>images</b>: eval images carrying the label; <b>micro-F1 / recall on "
        "them</b>: of all the served decisions on those images (TFMA's <code>classId:k</code> "
        "<code>label_slice_*</code> metrics); then the label's own precision, recall and F1 at its served "
        "threshold and its AUC. Click a column header to sort; '-': undefined.</p>"
    )
    body.append(slice_table(rows))
    extra = []
    if stats is not None and stats.examples:
        top = [int(k) + 1 for k in np.argsort(-stats.counts, kind="stable") if stats.counts[k] > 0]
        extra = [_distribution_figure(stats, top, names), _cooccurrence_figure(stats, top[:max_heatmap_labels], names)]
        body += [_figure_html(figure, first=not figures and i == 0) for i, figure in enumerate(extra)]
    body.append(spans_section(spans, label_map, include_plotlyjs=not figures and not extra))
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            f"<!doctype html><html><head><meta charset='utf-8'><title>imat report</title><style>{_STYLE}"
            f"</style></head><body>{''.join(body)}<script>{_SORT_JS}</script></body></html>"
        )
