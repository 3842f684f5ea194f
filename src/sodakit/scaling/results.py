"""Reading an IsoFLOP results table (CSV) into validated arrays for the fitters.

Input columns (names configurable with `Columns`):

    flops            required  training FLOPs the run used, in the study's FLOP convention
    params           required  N, model parameters (total by default; or non-embedding, see params_kind)
    loss             required  final validation loss (nats per token), > 0 and finite
    tokens           optional  D, training tokens; when absent D = flops / (6 * params) (with a warning)
    budget           optional  the nominal budget the run belongs to; when absent runs are grouped by
                               clustering their flops (within 5% of each other)
    flop_convention  optional  must be one value for the whole table (mixing conventions is an error)
    run_id           optional  named in error messages

Every problem is reported with the file, the row number (1 = first data row) and the column: a
non-numeric, NaN, infinite, zero or negative value is an error unless `drop_invalid` is set, in which
case the row is dropped and a warning says so.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sodakit.model.config import FLOP_CONVENTIONS

# Runs whose flops are within this factor of each other form one budget when no budget column exists.
# The planner keeps runs within 1% of their budget, and SODA's budgets are >= 1.67x apart.
CLUSTER_RATIO = 1.05


class ResultsError(ValueError):
    """A results table that cannot be fitted as it is."""


@dataclass
class Columns:
    flops: str = "flops"
    params: str = "params"
    tokens: str = "tokens"
    loss: str = "loss"
    budget: str = "budget"
    flop_convention: str = "flop_convention"
    run_id: str = "run_id"


@dataclass
class Observations:
    """One row per run; `budget` is the group label each run belongs to."""

    flops: np.ndarray
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    budget: np.ndarray
    run_ids: list[str]
    flop_convention: str
    source: str = ""
    sha256: str = ""
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def budgets(self) -> list[float]:
        return sorted({float(b) for b in self.budget})

    def subset(self, idx: np.ndarray) -> Observations:
        return Observations(
            flops=self.flops[idx], params=self.params[idx], tokens=self.tokens[idx], loss=self.loss[idx],
            budget=self.budget[idx], run_ids=[self.run_ids[i] for i in idx],
            flop_convention=self.flop_convention, source=self.source, sha256=self.sha256,
            warnings=list(self.warnings),
        )


def cluster_budgets(flops: np.ndarray, ratio: float = CLUSTER_RATIO) -> np.ndarray:
    """Group runs whose flops lie within `ratio` of their neighbour; label = geometric mean of the group."""
    order = np.argsort(flops)
    labels = np.empty(len(flops))
    start = 0
    logs = np.log(flops[order])
    for i in range(1, len(order) + 1):
        if i == len(order) or logs[i] - logs[i - 1] > math.log(ratio):
            group = order[start:i]
            labels[group] = float(np.exp(np.mean(np.log(flops[group]))))
            start = i
    return labels


def observations_from_arrays(
    flops, params, loss, tokens=None, budget=None, flop_convention: str = "soda", run_ids=None, source: str = "arrays"
) -> Observations:
    """Build validated observations from arrays (used by tests and by callers with in-memory results)."""
    n = len(loss)
    rows = []
    for i in range(n):
        rows.append({
            "flops": repr(float(flops[i])), "params": repr(float(params[i])), "loss": repr(float(loss[i])),
            **({"tokens": repr(float(tokens[i]))} if tokens is not None else {}),
            **({"budget": repr(float(budget[i]))} if budget is not None else {}),
            **({"run_id": str(run_ids[i])} if run_ids is not None else {}),
        })
    return _build(rows, Columns(), source, "", flop_convention, drop_invalid=False)


def read_results(
    path: str | Path,
    columns: Columns | None = None,
    flop_convention: str | None = None,
    drop_invalid: bool = False,
) -> Observations:
    """Read and validate a results CSV. `flop_convention`, when given, must match the table's column."""
    path = Path(path)
    columns = columns or Columns()
    if not path.is_file():
        raise ResultsError(f"results file {path} does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ResultsError(f"results file {path}: not UTF-8 text ({e})") from e
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [c for c in (columns.flops, columns.params, columns.loss) if c not in header]
    if missing:
        raise ResultsError(
            f"results file {path}: missing required column(s) {missing}; found {header}. "
            "Name other columns with --flops-col/--params-col/--loss-col."
        )
    rows = list(reader)
    return _build(rows, columns, str(path), hashlib.sha256(raw).hexdigest(), flop_convention, drop_invalid)


def _parse_positive(value: str | None) -> tuple[float | None, str]:
    if value is None or str(value).strip() == "":
        return None, "empty"
    try:
        x = float(value)
    except ValueError:
        return None, f"not a number ({value!r})"
    if math.isnan(x):
        return None, "NaN"
    if math.isinf(x):
        return None, "infinite"
    if x <= 0:
        return None, f"not positive ({x:g})"
    return x, ""


def _table_convention(rows: list[dict], columns: Columns, where: str, flop_convention: str | None,
                      warnings: list[str]) -> str:
    """The table's FLOP convention: one value for the table, and the one the caller expects."""
    table_conv = None
    if columns.flop_convention in rows[0]:
        seen = sorted({(r.get(columns.flop_convention) or "").strip() for r in rows})
        if len(seen) > 1:
            raise ResultsError(
                f"{where}: column {columns.flop_convention!r} mixes FLOP conventions {seen}; "
                "FLOPs counted differently cannot share one fit (recompute them in one convention)"
            )
        table_conv = seen[0]
        if table_conv not in FLOP_CONVENTIONS:
            raise ResultsError(f"{where}: unknown FLOP convention {table_conv!r}; expected one of {FLOP_CONVENTIONS}")
    if flop_convention is not None and flop_convention not in FLOP_CONVENTIONS:
        raise ResultsError(f"unknown FLOP convention {flop_convention!r}; expected one of {FLOP_CONVENTIONS}")
    if table_conv and flop_convention and table_conv != flop_convention:
        raise ResultsError(
            f"{where}: table says FLOP convention {table_conv!r} but {flop_convention!r} was requested"
        )
    convention = table_conv or flop_convention
    if convention is None:
        convention = "soda"
        warnings.append(
            f"{where}: no {columns.flop_convention!r} column and no convention given; assuming 'soda' "
            "(3 x forward FLOPs per token)"
        )
    return convention


def _valid_rows(rows: list[dict], columns: Columns, where: str, has_tokens: bool, has_budget: bool,
                drop_invalid: bool, warnings: list[str]) -> tuple[dict[str, list[float]], list[str]]:
    """({quantity: values}, run ids) of the rows whose numbers are finite and positive; invalid rows are
    an error, or dropped with a warning when `drop_invalid`."""
    keep: list[int] = []
    values: dict[str, list[float]] = {k: [] for k in ("flops", "params", "tokens", "loss", "budget")}
    run_ids: list[str] = []
    problems: list[str] = []
    wanted = [("flops", columns.flops), ("params", columns.params), ("loss", columns.loss)]
    if has_tokens:
        wanted.append(("tokens", columns.tokens))
    if has_budget:
        wanted.append(("budget", columns.budget))
    for i, row in enumerate(rows, start=1):
        rid = (row.get(columns.run_id) or "").strip() or f"row {i}"
        parsed: dict[str, float] = {}
        bad = []
        for key, col in wanted:
            x, why = _parse_positive(row.get(col))
            if x is None:
                bad.append(f"{col} {why}")
            else:
                parsed[key] = x
        if bad:
            problems.append(f"row {i} ({rid}): " + ", ".join(bad))
            continue
        keep.append(i)
        run_ids.append(rid)
        for key in values:
            if key in parsed:
                values[key].append(parsed[key])
    if problems:
        listing = "; ".join(problems[:10]) + (f"; ... ({len(problems)} rows)" if len(problems) > 10 else "")
        if not drop_invalid:
            raise ResultsError(
                f"{where}: invalid values (need finite, positive numbers): {listing}. "
                "Fix the table or pass --drop-invalid to drop these rows."
            )
        warnings.append(f"{where}: dropped {len(problems)} invalid row(s): {listing}")
    if not keep:
        raise ResultsError(f"{where}: no valid rows left")
    return values, run_ids


def _build(
    rows: list[dict], columns: Columns, source: str, sha: str, flop_convention: str | None, drop_invalid: bool
) -> Observations:
    warnings: list[str] = []
    where = f"results {source}"
    if not rows:
        raise ResultsError(f"{where}: no data rows")
    has_tokens = columns.tokens in rows[0]
    has_budget = columns.budget in rows[0]
    convention = _table_convention(rows, columns, where, flop_convention, warnings)
    values, run_ids = _valid_rows(rows, columns, where, has_tokens, has_budget, drop_invalid, warnings)
    flops = np.asarray(values["flops"])
    params = np.asarray(values["params"])
    loss = np.asarray(values["loss"])
    if has_tokens:
        tokens = np.asarray(values["tokens"])
    else:
        tokens = flops / (6.0 * params)
        warnings.append(f"{where}: no {columns.tokens!r} column; using tokens = flops / (6 * params)")
    if has_budget:
        budget = np.asarray(values["budget"])
        off = np.abs(flops / budget - 1.0)
        if np.any(off > 0.05):
            i = int(np.argmax(off))
            warnings.append(
                f"{where}: {run_ids[i]} used {flops[i]:.3e} FLOPs, {off[i]:.0%} away from its budget "
                f"{budget[i]:.3e}; IsoFLOP profiles assume equal compute within a budget"
            )
    else:
        budget = cluster_budgets(flops)
    return Observations(
        flops=flops, params=params, tokens=tokens, loss=loss, budget=budget, run_ids=run_ids,
        flop_convention=convention, source=source, sha256=sha, warnings=warnings,
    )
