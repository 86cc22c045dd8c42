"""``report.html``: one self-contained page per run - the headline numbers, the plots and a
browsable, filterable list of questions (image, question, prediction, references, verdict and
the retrieved passages with their images). Every image is an embedded base64 thumbnail and the
script and style are inline, so the file can be mailed or attached as it is."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rag_vqa.kb import PassageStore
from retriever.fileio import atomic_write_text
from retriever.images import load_image

from .datasets import DatasetError, ImageLocator
from .report_md import METRICS, cell

__all__ = ["write_html", "verdict", "MAX_QUESTIONS", "PASSAGES_SHOWN"]

logger = logging.getLogger(__name__)

MAX_QUESTIONS = 500       # questions listed (failures kept first): the page stays a few MB
PASSAGES_SHOWN = 5
_THUMB, _PASSAGE_THUMB = 144, 64
_SHORT = {"recall": "R", "pseudo_recall": "PR", "entity_recall": "ER"}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
.plots img{max-width:48%;margin:4px;border:1px solid #eee}
.q{border:1px solid #ddd;border-radius:6px;padding:10px;margin:10px 0;display:flex;gap:12px}
.q>img{width:144px;height:auto;object-fit:contain;align-self:flex-start}
.v{font-weight:600;padding:1px 6px;border-radius:4px}.correct,.hit{background:#d7f5dd}
.wrong,.miss{background:#fde2e1}.failed{background:#f6d6f6}.unscored{background:#eee}
.p{display:flex;gap:8px;margin:4px 0;font-size:12.5px}.p img{width:72px;height:auto}
.pos{outline:2px solid #2a2}.muted{color:#666}#bar{position:sticky;top:0;background:#fff;
padding:6px 0;border-bottom:1px solid #ddd}button.on{background:#333;color:#fff}
"""
_SCRIPT = """
function show(kind){document.querySelectorAll('#bar button').forEach(b=>b.classList.toggle('on',
b.dataset.kind===kind));filter(kind);}
function filter(kind){kind=kind||document.querySelector('#bar button.on').dataset.kind;
const text=document.getElementById('find').value.toLowerCase();let n=0;
document.querySelectorAll('.q').forEach(q=>{const ok=(kind==='all'||q.dataset.fail==='1')&&
(!text||q.textContent.toLowerCase().includes(text));q.style.display=ok?'':'none';n+=ok;});
document.getElementById('shown').textContent=n;}
"""


def _thumbnail(path: Path | None, size: int) -> str | None:
    """A data: URI of a JPEG thumbnail of the image at ``path``; None when it cannot be read."""
    if path is None:
        return None
    try:
        image = load_image(path)
    except Exception as exc:  # noqa: BLE001 - a page without one picture is still a page
        logger.info("report.html: no thumbnail for %s (%s)", path, exc)
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=72)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def verdict(row: Mapping[str, Any], k: int) -> str:
    """correct / wrong (answers scored), hit / miss at ``k`` (retrieval only), failed or
    unscored."""
    if row.get("status") == "failed":
        return "failed"
    if row.get("correct") is not None:
        return "correct" if row["correct"] else "wrong"
    ranks = row.get("ranks") or {}
    for metric in METRICS:
        if metric in ranks:
            return "hit" if ranks[metric] is not None and ranks[metric] <= k else "miss"
    return "unscored"


def _headline(report: Mapping[str, Any]) -> str:
    parts = []
    retrieval = report.get("retrieval")
    if retrieval:
        ks = retrieval["ks"]
        rows = "".join(f"<tr><td>{m}</td>" + "".join(
            f"<td>{cell(retrieval[m][f'@{k}'])}</td>" for k in ks) + "</tr>"
            for m in METRICS if retrieval.get(m))
        parts.append("<h2>Retrieval (%)</h2><table><tr><th>metric</th>"
                     + "".join(f"<th>@{k}</th>" for k in ks) + f"</tr>{rows}</table>")
    qa = report.get("qa") or {}
    lines = []
    if "infoseek" in qa:
        s = qa["infoseek"]
        lines += [("final score (harmonic mean)", s["final_score"]),
                  ("overall accuracy", s["overall_accuracy"])]
        lines += [(f"{split}", s[split]["score"]) for split in ("unseen_question",
                                                                 "unseen_entity")]
    if "evqa" in qa:
        s = qa["evqa"]
        lines += [(f"single-hop ({s['method']})", s["single_hop"]["accuracy"]),
                  (f"all ({s['method']})", s["all"]["accuracy"])]
    if "exact_match" in qa:
        lines.append((qa["exact_match"]["method"], qa["exact_match"]["accuracy"]))
    if lines:
        parts.append("<h2>Answers (%)</h2><table>" + "".join(
            f"<tr><td>{html.escape(name)}</td><td>{cell(value)}</td></tr>"
            for name, value in lines) + "</table>")
    return "".join(parts)


def _plots(report: Mapping[str, Any], run_dir: Path) -> str:
    images = []
    for name in report.get("plots") or []:
        data = base64.b64encode((run_dir / name).read_bytes()).decode("ascii")
        images.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
    return f'<h2>Plots</h2><div class="plots">{"".join(images)}</div>' if images else ""


def _locator(report: Mapping[str, Any]) -> ImageLocator | None:
    run = report.get("run") or {}
    try:
        return ImageLocator(run["dataset"], run["images"], run.get("image_map")) \
            if run.get("images") else None
    except DatasetError as exc:
        logger.info("report.html: question images not shown (%s)", exc)
        return None


def _passages(row: Mapping[str, Any], store: PassageStore | None, positives: set[str],
              cache: dict[Path, str | None]) -> str:
    hits = row.get("retrieved", [])[:PASSAGES_SHOWN]
    if not hits:
        return ""
    found = {}
    if store is not None:
        try:
            found = {p.passage_id: p for p in store.get_many([h["passage_id"] for h in hits])}
        except KeyError:
            found = {}
    out = []
    for rank, hit in enumerate(hits, start=1):
        passage = found.get(hit["passage_id"])
        picture = ""
        if passage is not None:
            try:
                path = store.resolve_image(passage)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - an unsafe or missing image is simply not shown
                path = None
            if path is not None and path not in cache:
                cache[path] = _thumbnail(path, _PASSAGE_THUMB)
            if path is not None and cache.get(path):
                picture = f'<img alt="" src="{cache[path]}">'
        title = html.escape(passage.title or "") if passage is not None else ""
        text = (passage.text if passage is not None else "(not in the knowledge base)") or ""
        text = html.escape(text if len(text) <= 320 else text[:317] + "...")
        mark = ' class="p pos"' if hit["passage_id"] in positives else ' class="p"'
        out.append(f"<div{mark}>{picture}<div><b>{rank}.</b> <code>"
                   f"{html.escape(hit['passage_id'])}</code> <span class=muted>"
                   f"{hit['score']:.3f}</span> <b>{title}</b><br>{text}</div></div>")
    return "".join(out)


def _question(row: Mapping[str, Any], k: int, locator: ImageLocator | None,
              store: PassageStore | None, positives: set[str],
              cache: dict[Path, str | None]) -> str:
    kind = verdict(row, k)
    picture = ""
    if locator is not None and row.get("image"):
        try:
            picture = _thumbnail(locator.find(row["image"]), _THUMB) or ""
        except Exception:  # noqa: BLE001
            picture = ""
    image = f'<img alt="" src="{picture}">' if picture else ""
    ranks = ", ".join(f"{_SHORT[m]} {r if r is not None else '-'}"
                      for m, r in (row.get("ranks") or {}).items())
    ranks = f"&middot; first hit: {ranks}" if ranks else ""
    where = " / ".join(html.escape(str(x)) for x in (row.get("split"), row.get("type")) if x)
    where = f"{where} " if where else ""
    prediction = row.get("prediction")
    answer = "" if prediction is None else \
        f"<div>prediction: <b>{html.escape(prediction or '(empty)')}</b></div>"
    error = f"<div class=muted>error: {html.escape(row['error'])}</div>" \
        if row.get("error") else ""
    return (f'<div class="q" data-fail="{int(kind in ("wrong", "miss", "failed"))}">{image}'
            f'<div><div><span class="v {kind}">{kind}</span> <code>'
            f"{html.escape(row['data_id'])}</code> <span class=muted>{where}{ranks}</span>"
            f"</div><div>{html.escape(row.get('question') or '(no question text)')}</div>"
            f"{answer}<div class=muted>references: "
            f"{html.escape(' | '.join(map(str, row.get('answers') or [])) or '-')}</div>"
            f"{error}{_passages(row, store, positives, cache)}</div></div>")


def write_html(report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
               store: PassageStore | None, run_dir: Path) -> Path:
    """Write ``run_dir/report.html``; returns its path."""
    k = int((report.get("run") or {}).get("k") or 5)
    failing = [r for r in rows if verdict(r, k) in ("wrong", "miss", "failed")]
    shown = list(rows)
    if len(rows) > MAX_QUESTIONS:  # failures fill up to half the page; file order kept
        keep = {r["data_id"] for r in failing[:MAX_QUESTIONS // 2]}
        for r in rows:
            if len(keep) >= MAX_QUESTIONS:
                break
            keep.add(r["data_id"])
        shown = [r for r in rows if r["data_id"] in keep]
    locator = _locator(report)
    cache: dict[Path, str | None] = {}
    cards = "".join(_question(r, k, locator, store, set(r.get("positives") or []), cache)
                    for r in shown)
    cov = report["coverage"]
    models = report.get("models") or {}
    listed = f"{len(shown)} of {len(rows)} questions listed" if len(shown) < len(rows) else \
        f"{len(rows)} questions"
    summary = json.dumps(report.get("summary"), default=str).replace("</", "<\\/")
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>rag-vqa evaluation: {html.escape(report['run']['dataset'])}</title>
<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>
<h1>Evaluation: {html.escape(report['run']['dataset'])}</h1>
<p>Retriever <code>{html.escape(str(models.get('retriever')))}</code>, generator
<code>{html.escape(str(models.get('generator')))}</code>; {cov['done']} of {cov['selected']}
questions done, {cov['failed']} failed. Scores are percentages; n/a: no question in that
category.</p>
{_headline(report)}{_plots(report, run_dir)}
<h2>Questions</h2><div id="bar">{listed}: <button data-kind="all" class="on"
onclick="show('all')">all</button> <button data-kind="fail" onclick="show('fail')">failures
({len(failing)})</button> <input id="find" placeholder="search" oninput="filter()">
<span class=muted><span id="shown">{len(shown)}</span> shown; verdicts at k={k}</span></div>
{cards}
<script>const REPORT_SUMMARY={summary};</script>
</body></html>"""
    path = run_dir / "report.html"
    atomic_write_text(path, page)
    return path
