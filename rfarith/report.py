"""The layer-by-layer report: a DataFrame for code, a torchinfo-like text table for people."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from functools import cached_property

import pandas as pd

from .errors import NotComputed, UnknownNode
from .field import ReceptiveField
from .walk import Row


def format_number(value: int | float | Fraction) -> str:
    """5 -> '5', 5.5 -> '5.5', Fraction(1, 2) -> '1/2', NaN -> '--'."""
    if isinstance(value, Fraction):
        return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    if isinstance(value, float):
        if math.isnan(value):
            return "--"
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def per_axis_text(values: Sequence) -> str:
    """One number when every axis agrees, else 'h×w'."""
    texts = [format_number(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "×".join(texts)


def field_columns(rf: ReceptiveField) -> dict[str, object]:
    """The per-axis columns of one row: n_<a>, j_<a>, r_<a>, start_<a> for every axis."""
    row: dict[str, object] = {}
    for i, a in enumerate(rf.axes):
        row[f"n_{a}"] = rf.n[i]
        row[f"j_{a}"] = rf.j[i]
        row[f"r_{a}"] = rf.r[i]
        row[f"start_{a}"] = rf.start[i]
    return row


class Report:
    """Receptive fields of every feature map of a model, in graph order (input first).

    >>> import torch.nn as nn, rfarith
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
    >>> rep = rfarith.analyze(net, (1, 3, 32, 32))
    >>> rep.table[["op", "n_h", "j_h", "r_h", "start_h"]].to_string()  # doctest: +NORMALIZE_WHITESPACE
    '         op  n_h  j_h  r_h  start_h\\nx     input   32    1    1      0.5\\n0    Conv2d   30    1    3      1.5\\n1      ReLU   30    1    3      1.5\\n2 MaxPool2d   15    2    4      2.0'
    >>> rep["2"].r
    (4, 4)
    """

    def __init__(
        self,
        rows: list[Row],
        outputs: dict[str, str],
        input_shape: tuple[int, ...],
        title: str = "",
        traced: bool = True,
        front_end: str = "symbolic",
    ) -> None:
        self.rows = rows
        self.traced = traced  # False: torch.fx could not trace the model; every row was measured
        self.front_end = front_end  # "symbolic" torch.fx, or "shapes": traced with concrete sizes
        self.input_shape = input_shape
        self.title = title
        self._by_name = {row.name: row for row in rows}
        self._outputs = outputs

    # ---- lookup ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [row.name for row in self.rows]

    @property
    def axes(self) -> tuple[str, ...]:
        return self.rows[0].field.axes

    def __getitem__(self, name: str) -> ReceptiveField:
        row = self._by_name.get(name)
        if row is None:
            raise UnknownNode(name, self.names)
        if row.field is None:
            raise NotComputed(f"the field of '{name}' could not be computed: {row.reason}")
        return row.field

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[ReceptiveField]:
        """The computed fields, in graph order (rows without one: see :attr:`missing`)."""
        return (row.field for row in self.rows if row.field is not None)

    @property
    def missing(self) -> dict[str, str]:
        """Rows whose field could not be computed, with the reason (empty: the report is complete)."""
        return {row.name: row.reason for row in self.rows if row.field is None}

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, name: str) -> Row:
        self[name]
        return self._by_name[name]

    @property
    def outputs(self) -> dict[str, ReceptiveField]:
        """Every model output that depends on the input, by key ('output', index or dict key)."""
        return {key: self[name] for key, name in self._outputs.items()}

    @property
    def output_names(self) -> dict[str, str]:
        """The node name of every model output, by key ('output', index or dict key)."""
        return dict(self._outputs)

    @property
    def output(self) -> ReceptiveField:
        """The field of the model output (for several outputs, see :attr:`outputs`)."""
        if len(self._outputs) == 1:
            return self[next(iter(self._outputs.values()))]
        if not self._outputs:
            more = ", ..." if len(self.names) > 8 else ""
            raise ValueError(
                "the model output is not a tensor that depends on its input; pick a feature map "
                f"with rep[name] (rep.names: {', '.join(self.names[:8])}{more})"
            )
        raise ValueError(
            f"the model has {len(self._outputs)} outputs ({', '.join(self._outputs)}); "
            "pick one with rep.outputs[key]"
        )

    # ---- table -------------------------------------------------------------------------------
    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per feature map: op, shape, n/j/r/start per axis, flags (and phases if any)."""
        records = []
        fields = list(self)
        periodic = any(p > 1 for rf in fields for p in rf.phases)
        measured = any(row.source != "rule" for row in self.rows)
        for row in self.rows:
            record: dict[str, object] = {"node": row.name, "op": row.op, "shape": row.shape}
            if row.field is None:
                record.update({f"{q}_{a}": math.nan for a in self.axes for q in ("n", "j", "r", "start")})
                record.update({f"phases_{a}": math.nan for a in self.axes} if periodic else {})
                record["flags"] = ""
            else:
                record.update(field_columns(row.field))
                if periodic:
                    for a, p in zip(row.field.axes, row.field.phases):
                        record[f"phases_{a}"] = p
                record["flags"] = row.field.describe_flags()
            if measured:
                record["source"] = row.source
            if self.missing:
                record["reason"] = row.reason
            records.append(record)
        return pd.DataFrame.from_records(records).set_index("node")

    # ---- text --------------------------------------------------------------------------------
    def render(self) -> str:
        """A torchinfo-like text table (what ``rfcheck report`` prints)."""
        periodic = any(p > 1 for rf in self for p in rf.phases)
        measured = any(row.source != "rule" for row in self.rows)
        headers = ["Node", "Op", "Output shape", "n", "j", "r", "start"]
        headers += ["phases"] if periodic else []
        headers += ["from"] if measured else []
        headers += ["Flags"]
        rows = []
        for row in self.rows:
            if row.field is None:
                cells = [row.name, row.op, "×".join(str(s) for s in row.shape), "--", "--", "--", "--"]
                cells += ["--"] if periodic else []
                cells += [row.source] if measured else []
                rows.append([*cells, f"NOT COMPUTED: {row.reason}"])
                continue
            cells = [
                row.name,
                row.op,
                "×".join(str(s) for s in row.shape),
                per_axis_text(row.field.n),
                per_axis_text(row.field.j),
                per_axis_text(row.field.r),
                per_axis_text(row.field.start),
            ]
            cells += [per_axis_text(row.field.phases)] if periodic else []
            cells += [row.source] if measured else []
            cells += [row.field.describe_flags() or "--"]
            rows.append(cells)
        return render_table(self.title, self.input_shape, self.axes, headers, rows, self._footer())

    def _footer(self) -> list[str]:
        lines = []
        for key, name in self._outputs.items():
            label = "output" if key == "output" else f"output {key}"
            if name in self.missing:
                lines.append(f"{label} '{name}': NOT COMPUTED ({self.missing[name]})")
                continue
            rf = self[name]
            lines.append(
                f"{label} '{name}': r {per_axis_text(rf.r)}, j {per_axis_text(rf.j)}, "
                f"start {per_axis_text(rf.start)}"
                + (f", {rf.describe_flags()}" if rf.flags else "")
            )
        if not self._outputs:
            lines.append("output: NOT COMPUTED (the model output is not a tensor that depends on its input)")
        count = f"{len(self.rows)} feature maps"
        if self.front_end == "shapes":
            count += "; traced with concrete sizes (symbolic torch.fx could not follow its code): the graph holds this input's sizes"
        if self.missing:
            count += f"; INCOMPLETE: {len(self.missing)} not computed ({', '.join(self.missing)})"
        lines.append(count)
        return lines

    @property
    def complete(self) -> bool:
        """Every row has its field and the model output is among them."""
        return not self.missing and bool(self._outputs)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"<rfarith.Report {self.title or 'model'} input={self.input_shape} rows={len(self.rows)}>"

    def _repr_html_(self) -> str:
        return self.table._repr_html_()


LEFT_ALIGNED = {"Node", "Op", "Output shape", "from", "Flags"}


def render_table(
    title: str,
    input_shape: tuple[int, ...],
    axes: tuple[str, ...],
    headers: list[str],
    rows: list[list[str]],
    footer: list[str],
) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line_width = sum(widths) + 2 * (len(widths) - 1)

    def fmt(cells: list[str]) -> str:
        parts = [c.ljust(w) if h in LEFT_ALIGNED else c.rjust(w) for h, c, w in zip(headers, cells, widths)]
        return "  ".join(parts).rstrip()

    head = f"Receptive fields{': ' + title if title else ''}  (input {'×'.join(map(str, input_shape))}, axes {', '.join(axes)})"
    note = "n, j, r, start per axis (one number when all axes agree); pixel i spans [i, i+1)"
    out = [head, note, "=" * line_width, fmt(headers), "-" * line_width]
    out += [fmt(r) for r in rows]
    out += ["=" * line_width, *footer]
    return "\n".join(out) + "\n"
