"""``report.html`` for ``imat report``: plotly charts and a sortable per-label slice table in one file.

The page opens offline: plotly.js is inlined once (most of the page's size; measured: docs/benchmarks.md,
"Report page size"), and the table sorts with a few lines of inline JavaScript. Charts give values on
hover and have axes; per-label bars are drawn one figure per task, tall enough for a task's labels (the
competition's largest task has 105).
"""

import html
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

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
) -> None:
    """Writes the page: rules, per-task bar charts, the slice table, the label distribution, co-occurrence.

    Args:
      path: the file to write.
      rows: ``report.LabelRow`` per label, in the table's initial order.
      headline: the gated micro-F1 line.
      stats: label counts of a split, or None.
      label_map: names, or None (ids are shown).
      groups: the rows by task, each in chart order (``report.by_task``).
      max_heatmap_labels: the co-occurrence map shows this many most frequent labels.
      rule_lines: the decision rules' lines, shown as text.
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
    if stats is not None and stats.examples:
        top = [int(k) + 1 for k in np.argsort(-stats.counts, kind="stable") if stats.counts[k] > 0]
        extra = [_distribution_figure(stats, top, names), _cooccurrence_figure(stats, top[:max_heatmap_labels], names)]
        body += [_figure_html(figure, first=not figures and i == 0) for i, figure in enumerate(extra)]
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            f"<!doctype html><html><head><meta charset='utf-8'><title>imat report</title><style>{_STYLE}"
            f"</style></head><body>{''.join(body)}<script>{_SORT_JS}</script></body></html>"
        )
