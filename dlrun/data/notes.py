"""What loading and preprocessing did to a table, in words for ``summary.md``.

``Table.notes`` (the loader's) and ``Splits.notes`` (those plus the preprocessing's) are
JSON-ready dicts; :func:`summary_lines` turns the keys it knows into markdown bullets,
every number taken from the notes, and skips what did not happen. The keys:

- ``file``, ``delimiter``, ``delimiter_detected``, ``encoding``, ``rows_loaded``,
  ``decimal_comma_columns``: how the file was read.
- ``rows_dropped_missing_target``: rows without a target (never imputed).
- ``rows_dropped_missing``: all rows dropped for missing cells, targets included
  (the rest under ``dataset.missing=drop``).
- ``dropped_identifier_columns`` and ``identifier_columns`` (``{column: {"distinct", "rows"}}``);
  ``dropped_empty_columns``.
- ``missing`` (the policy) and ``missing_cells`` (``{column: cells}``, the whole table).
- ``imputed_cells`` (``{"train", "val", "test"}``), ``missing_indicator_columns``.
- ``one_hot`` (``max_categories``, ``min_frequency``), ``infrequent_categories``
  (``{column: categories merged}``), ``encoded_width``, ``source_columns``.
- ``images`` (``{"streamed", "skipped_files"}``): how an image folder was read.
"""

from __future__ import annotations

from typing import Any

_PART_WORDS = {"train": "train", "val": "validation", "test": "test"}


def _n(value: int) -> str:
    return f"{value:,}"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{_n(count)} {word if count == 1 else plural or word + 's'}"


def _names(columns: list[str]) -> str:
    return ", ".join(f"`{c}`" for c in columns)


def _reading(notes: dict[str, Any]) -> list[str]:
    if "delimiter" not in notes:
        return []
    sep = "tab" if notes["delimiter"] == "\t" else f"`{notes['delimiter']}`"
    how = "detected" if notes.get("delimiter_detected") else "as set by `dataset.sep`"
    rows = f"{_plural(notes['rows_loaded'], 'row')}, " if "rows_loaded" in notes else ""
    lines = [f"- read `{notes.get('file', 'the file')}`: {rows}{sep}-separated ({how}), "
             f"{notes.get('encoding', 'utf-8')} text"]
    decimal = notes.get("decimal_comma_columns", [])
    if decimal:
        lines.append(f"- read {_names(decimal)} as numbers written with a decimal comma")
    return lines


def _dropped(notes: dict[str, Any]) -> list[str]:
    lines = []
    targets = notes.get("rows_dropped_missing_target", 0)
    if targets:
        lines.append(f"- dropped {_plural(targets, 'row')} whose target is missing (a target is never imputed)")
    incomplete = notes.get("rows_dropped_missing", 0) - targets
    if incomplete:
        lines.append(f"- dropped {_plural(incomplete, 'row')} with missing cells (`dataset.missing=drop`)")
    for column, count in notes.get("identifier_columns", {}).items():
        lines.append(f"- dropped identifier-like column `{column}` ({_n(count['distinct'])} distinct values "
                     f"in {_plural(count['rows'], 'row')})")
    for column in notes.get("dropped_empty_columns", []):
        lines.append(f"- dropped empty column `{column}` (no cell holds a value)")
    return lines


def _missing(notes: dict[str, Any]) -> list[str]:
    cells = notes.get("missing_cells", {})
    lines = []
    if cells:
        each = ", ".join(f"`{c}` {_n(n)}" for c, n in sorted(cells.items(), key=lambda kv: -kv[1]))
        lines.append(f"- found {_plural(sum(cells.values()), 'missing cell')} in "
                     f"{_plural(len(cells), 'column')}: {each}")
    imputed = notes.get("imputed_cells", {})
    total = sum(imputed.values())
    if total:
        per_part = ", ".join(f"{_PART_WORDS.get(p, p)} {_n(n)}" for p, n in imputed.items())
        indicators = len(notes.get("missing_indicator_columns", []))
        added = f"; {_plural(indicators, 'indicator column')} added" if indicators else ""
        lines.append(f"- filled {_plural(total, 'missing cell')} ({per_part}) with the median / most frequent "
                     f"value, fitted on the training split{added}")
    return lines


def _encoding(notes: dict[str, Any]) -> list[str]:
    lines = []
    merged = notes.get("infrequent_categories", {})
    if merged:
        cap = notes.get("one_hot", {})
        rule = []
        if cap.get("min_frequency") not in (None, 1):
            rule.append(f"seen in fewer than {_n(cap['min_frequency'])} training rows")
        if cap.get("max_categories") is not None:
            rule.append(f"beyond {_n(cap['max_categories'] - 1)} per column")
        why = f" ({' or '.join(rule)})" if rule else ""
        each = ", ".join(f"`{c}` {_n(n)}" for c, n in merged.items())
        lines.append(f"- merged rare categories{why} into one infrequent column in "
                     f"{_plural(len(merged), 'text column')}: {each}")
    if "encoded_width" in notes:
        source = notes.get("source_columns")
        of = f" from {_plural(source, 'column')}" if source is not None else ""
        lines.append(f"- the model sees {_plural(notes['encoded_width'], 'input')}{of}")
    return lines


def _images(notes: dict[str, Any]) -> list[str]:
    images = notes.get("images")
    if not images:
        return []
    lines = []
    if images.get("streamed"):
        lines.append("- images streamed from disk: decoded once into a uint8 cache file "
                     "(`dataset.cache_dir`), read a chunk of rows at a time")
    if images.get("skipped_files"):
        lines.append(f"- skipped {_plural(images['skipped_files'], 'unreadable image file')} (named in run.log)")
    return lines


def summary_lines(notes: dict[str, Any]) -> list[str]:
    """Markdown bullet lines saying what loading and preprocessing did, from ``notes``.

    Args:
        notes: ``Table.notes`` or ``Splits.notes``; unknown keys are ignored.

    Returns:
        One ``- ...`` line per thing that happened, in the order it happened; empty
        when the notes are.
    """
    return [*_reading(notes), *_images(notes), *_dropped(notes), *_missing(notes), *_encoding(notes)]
